//! Rule-based rewards: accuracy by the grader against the reference answer (1/0), an optional
//! format reward (a closed `<think>…</think>` block followed by a `\boxed{}` answer), and DAPO's
//! soft overlong penalty.

/// 1.0 when the grader judges `completion` correct against `gold`, else 0.0.
pub fn accuracy(gold: &str, completion: &str) -> f64 {
    if grader::grade(gold, completion).verdict.is_correct() {
        1.0
    } else {
        0.0
    }
}

/// 1.0 when the completion closes its reasoning (`</think>`, with any `<think>` before it: R1
/// chat templates open the block in the prompt) and then gives a `\boxed{…}` answer.
pub fn format(completion: &str) -> f64 {
    let Some(end) = completion.find("</think>") else {
        return 0.0;
    };
    let (thought, answer) = (&completion[..end], &completion[end + "</think>".len()..]);
    let opens = thought.matches("<think>").count();
    let ok = opens <= 1 && !answer.contains("<think>") && !answer.contains("</think>") && answer.contains("\\boxed{");
    if ok {
        1.0
    } else {
        0.0
    }
}

/// DAPO's soft overlong penalty: 0 up to `max_len − buffer` tokens, then linearly down to
/// `−penalty` at `max_len` (0 when `buffer` is 0).
pub fn overlong_penalty(len: usize, max_len: usize, buffer: usize, penalty: f64) -> f64 {
    if buffer == 0 {
        return 0.0;
    }
    let expected = max_len.saturating_sub(buffer);
    if len <= expected {
        return 0.0;
    }
    -(((len - expected) as f64 / buffer as f64).min(1.0)) * penalty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards() {
        assert_eq!(accuracy("42", "so \\boxed{42}"), 1.0);
        assert_eq!(accuracy("42", "so \\boxed{41}"), 0.0);
        assert_eq!(format("a b</think>\nThe answer is \\boxed{4}."), 1.0);
        assert_eq!(format("<think>a</think> \\boxed{4}"), 1.0);
        assert_eq!(format("\\boxed{4}"), 0.0);
        assert_eq!(format("a</think> 4"), 0.0);
        assert_eq!(overlong_penalty(10, 20, 5, 1.0), 0.0);
        assert_eq!(overlong_penalty(17, 20, 5, 1.0), -0.4);
        assert_eq!(overlong_penalty(25, 20, 5, 0.5), -0.5);
    }
}
