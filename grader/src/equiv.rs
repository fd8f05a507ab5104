//! Equivalence of answers (placeholder normaliser; replaced by the expression engine).

use crate::{extract, Grade, Verdict};

fn norm(s: &str) -> String {
    extract::strip_math_delims(s).chars().filter(|c| !c.is_whitespace()).collect()
}

/// Grades a bare answer against a gold answer.
pub fn grade_answer(gold: &str, answer: &str) -> Verdict {
    if norm(gold).is_empty() {
        return Verdict::UnparseableGold;
    }
    if answers_equivalent(gold, answer) {
        Verdict::Correct
    } else {
        Verdict::Incorrect
    }
}

/// True when two answers denote the same mathematical object.
pub fn answers_equivalent(a: &str, b: &str) -> bool {
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && a == b
}

/// Equivalence-class id per answer (`None` for missing answers), classes numbered by first
/// appearance, for cons@k majority voting.
pub fn cluster_answers(answers: &[Option<String>]) -> Vec<Option<usize>> {
    let mut reps: Vec<&str> = Vec::new();
    answers
        .iter()
        .map(|a| {
            let a = a.as_deref()?;
            if let Some(i) = reps.iter().position(|r| answers_equivalent(r, a)) {
                return Some(i);
            }
            reps.push(a);
            Some(reps.len() - 1)
        })
        .collect()
}

pub(crate) fn grade_response(gold: &str, response: &str) -> Grade {
    let extracted = extract::extract_answer(response);
    let verdict = match &extracted {
        Some(a) => grade_answer(gold, a),
        None if norm(gold).is_empty() => Verdict::UnparseableGold,
        None => Verdict::Incorrect,
    };
    Grade { verdict, extracted }
}
