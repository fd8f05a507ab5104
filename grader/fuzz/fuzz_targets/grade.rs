//! Fuzzes every public grader entry point: input bytes are split at the first NUL into a gold
//! answer and a response. The grader must never panic, hang, or call an unparseable gold
//! correct.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (gold, response) = text.split_once('\0').unwrap_or((&text, &text));
    let g = grader::grade(gold, response);
    if grader::grade_answer(gold, "0") == grader::Verdict::UnparseableGold {
        assert_ne!(g.verdict, grader::Verdict::Correct);
    }
    let _ = grader::extract_answer(response);
    let _ = grader::extract_final_boxes(response);
    let _ = grader::answers_equivalent(gold, response);
    let _ = grader::cluster_answers(&[Some(gold.to_string()), Some(response.to_string()), None]);
});
