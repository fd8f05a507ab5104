//! Full-response grading: which part of a response counts as its final answer.

use grader::{extract_answer, extract_final_boxes, grade, Verdict};

#[test]
fn last_box_after_think_wins() {
    let r = "<think>\nmaybe \\boxed{4}? no.\n</think>\nThe area is $\\boxed{\\frac{3}{2}}$.";
    assert_eq!(extract_answer(r).as_deref(), Some("\\frac{3}{2}"));
    assert_eq!(grade("1.5", r).verdict, Verdict::Correct);
    assert_eq!(grade("4", r).verdict, Verdict::Incorrect);
}

#[test]
fn truncated_thinking_has_no_answer() {
    let r = "<think>\nlong reasoning \\boxed{4} and then the budget ran out";
    assert_eq!(extract_answer(r), None);
    let g = grade("4", r);
    assert_eq!((g.verdict, g.extracted), (Verdict::Incorrect, None));
}

#[test]
fn nested_and_bare_boxes() {
    assert_eq!(
        extract_answer("\\boxed{\\frac{\\sqrt{3}}{2}}").as_deref(),
        Some("\\frac{\\sqrt{3}}{2}")
    );
    assert_eq!(extract_answer("so \\boxed 7.").as_deref(), Some("7"));
    // Math-Verify anchors box extraction on `\boxed{`; a lone `\fbox` outside math is not an
    // answer, inside a math segment it is.
    assert_eq!(extract_answer("\\fbox{12} end"), None);
    assert_eq!(
        extract_answer("$\\fbox{12}$ end").as_deref(),
        Some("\\fbox{12}")
    );
    assert_eq!(grade("12", "$\\fbox{12}$ end").verdict, Verdict::Correct);
    assert_eq!(
        extract_answer("\\boxed{\\{1,2\\}}").as_deref(),
        Some("\\{1,2\\}")
    );
    assert_eq!(grade("1", "\\boxed{1").verdict, Verdict::Incorrect);
}

#[test]
fn phrases_then_last_number() {
    assert_eq!(
        extract_answer("Thus, the final answer is $\\frac{1}{4}$. I hope it is correct.")
            .as_deref(),
        Some("\\frac{1}{4}")
    );
    assert_eq!(extract_answer("Answer: 12\n").as_deref(), Some("12"));
    assert_eq!(
        extract_answer("We computed it to be\n$$x = 17$$").as_deref(),
        Some("x = 17")
    );
    assert_eq!(
        grade("17", "We computed it to be\n$$x = 17$$").verdict,
        Verdict::Correct
    );
    assert_eq!(
        extract_answer("there were 3 cats and after that there were 45 dogs left over").as_deref(),
        Some("45")
    );
    assert_eq!(
        extract_answer("Answer: $\\$32,\\!348$").as_deref(),
        Some("\\$32,\\!348")
    );
    assert_eq!(
        grade("\\$32,\\!348", "Answer: $\\$32,\\!348$").verdict,
        Verdict::Correct
    );
}

#[test]
fn joined_math_segments_form_a_list() {
    let r = "The solutions are $x = 1$ and $x = 2$.";
    assert_eq!(extract_answer(r).as_deref(), Some("x = 1, x = 2"));
    assert_eq!(grade("1, 2", r).verdict, Verdict::Correct);
    assert_eq!(
        extract_answer("Answer: $3$, $5$ or $7$. Then more text.").as_deref(),
        Some("3, 5, 7")
    );
    assert_eq!(extract_answer("So $a$ is $5$.").as_deref(), Some("5"));
}

#[test]
fn bare_answers_are_taken_whole() {
    for (gold, pred) in [
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        ("(1,2)", "$(1, 2)$"),
        ("x=3", "3"),
        ("\\sqrt{2}", "$\\sqrt2$"),
    ] {
        assert_eq!(
            grade(gold, pred).verdict,
            Verdict::Correct,
            "{gold} vs {pred}"
        );
    }
}

#[test]
fn joined_boxes_form_a_set() {
    let r = "The solutions are $\\boxed{2}$ and $\\boxed{-3}$.";
    assert_eq!(
        extract_final_boxes(r),
        vec!["2".to_string(), "-3".to_string()]
    );
    let g = grade("-3, 2", r);
    assert_eq!(g.verdict, Verdict::Correct);
    assert_eq!(g.extracted.as_deref(), Some("2, -3"));
    assert_eq!(grade("\\{2,-3\\}", r).verdict, Verdict::Correct);
    // Math-Verify reads "$\boxed{2}$ and $\boxed{-3}$" as the set {2, -3}: a scalar gold is
    // not it.
    assert_eq!(grade("2", r).verdict, Verdict::Incorrect);
    assert_eq!(grade("-3", r).verdict, Verdict::Incorrect);
    // Boxes in separate sentences are not joined: the last one is the answer.
    let r = "First $\\boxed{41}$ was wrong. Correcting the sign gives $\\boxed{42}$.";
    assert_eq!(grade("42", r).verdict, Verdict::Correct);
}

#[test]
fn prepared_gold_grades_like_grade() {
    let gold = grader::GoldAnswer::new("\\frac{1}{2}");
    assert!(gold.is_parseable());
    for r in [
        "\\boxed{0.5}",
        "The answer is $1/2$.",
        "\\boxed{2}",
        "<think>\\boxed{0.5}",
    ] {
        assert_eq!(gold.grade(r), grade("\\frac{1}{2}", r), "{r}");
    }
    assert_eq!(gold.grade_answer("2/4"), Verdict::Correct);
    let bad = grader::GoldAnswer::new("\\frac{1}{");
    assert!(!bad.is_parseable());
    assert_eq!(bad.grade("\\boxed{1}").verdict, Verdict::UnparseableGold);
}

#[test]
fn unparseable_gold_is_never_correct() {
    for gold in ["", "  ", "\\frac{1}{", "((("] {
        let g = grade(gold, "\\boxed{1}");
        assert_eq!(g.verdict, Verdict::UnparseableGold, "gold {gold:?}");
    }
    assert_eq!(
        serde_json::to_string(&Verdict::UnparseableGold).unwrap(),
        "\"unparseable_gold\""
    );
    assert_eq!(Verdict::Correct.as_str(), "correct");
}
