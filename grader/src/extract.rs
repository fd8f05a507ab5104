//! Pulling the final answer out of a free-form model response.

/// Longest response considered; longer ones are cut from the front (the answer is at the end).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Returns the final answer of a response, or `None` when it has none.
///
/// Only the text after the last `</think>` counts (a response with an unclosed `<think>` was
/// truncated mid-reasoning and has no answer). Then Math-Verify 0.8's order: "final answer is
/// X. I hope"; "final answer … is X" or the last run of `\boxed{…}`; "answer: X"; "answer … X";
/// any math segment, arithmetic or number — within each step the match that ends last and
/// parses wins (see `candidates`).
pub fn extract_answer(response: &str) -> Option<String> {
    extract_candidate(response).map(|c| c.text())
}

/// [`extract_answer`] keeping what kind of match the answer was.
pub(crate) fn extract_candidate(response: &str) -> Option<crate::candidates::Cand> {
    extract_candidate_with(response, &crate::equiv::parses)
}

/// [`extract_candidate`] with the caller's "does this parse" test (which may keep its work).
pub(crate) fn extract_candidate_with(
    response: &str,
    parses: &dyn Fn(&str) -> bool,
) -> Option<crate::candidates::Cand> {
    let text = final_region(response)?;
    crate::candidates::extract(text, parses)
}

/// All distinct boxed answers in the final-answer region, in order of appearance, so a grader
/// can treat `\boxed{1}, \boxed{2}` as the set `{1, 2}`.
///
/// Like Math-Verify, only the last run of boxes counts: going backwards from the last box, an
/// earlier box joins when fewer than 10 characters separate them, or fewer than 70 that
/// include a separator (`,`, `;`, "and", "or") and the two boxes differ.
pub fn extract_final_boxes(response: &str) -> Vec<String> {
    let Some(text) = final_region(response) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for b in group_of_last_boxes(text)
        .map(|(_, v)| v)
        .unwrap_or_default()
    {
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// The last run of boxes (as above) with the byte offset just past the last one.
pub(crate) fn group_of_last_boxes(text: &str) -> Option<(usize, Vec<String>)> {
    let spans = box_spans(text);
    let last_end = spans.last()?.1;
    let mut group: Vec<&(usize, usize, String)> = Vec::new();
    for span in spans.iter().rev() {
        if let Some(next) = group.last() {
            // Text between the earlier box's closing brace and the later box's command.
            let between = &text[span.1.min(next.0)..next.0];
            let separated = ["and", "or", ",", ";"].iter().any(|w| between.contains(w));
            let len = between.chars().count();
            if !(len < 10 || (len < 70 && separated && span.2 != next.2)) {
                break;
            }
        }
        group.push(span);
    }
    Some((
        last_end,
        group.into_iter().rev().map(|(_, _, b)| b.clone()).collect(),
    ))
}

/// The last box of a bare answer that itself contains `\boxed{…}`.
pub(crate) fn extract_answer_boxes_only(answer: &str) -> Option<String> {
    if !answer.contains("\\boxed") && !answer.contains("\\fbox") {
        return None;
    }
    last_box(answer)
}

/// The part of a response that may hold the final answer.
fn final_region(response: &str) -> Option<&str> {
    let mut text = response;
    if text.len() > MAX_RESPONSE_BYTES {
        let mut start = text.len() - MAX_RESPONSE_BYTES;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text = &text[start..];
    }
    if let Some(pos) = text.rfind("</think>") {
        return Some(&text[pos + "</think>".len()..]);
    }
    if text.contains("<think>") {
        return None;
    }
    Some(text)
}

const BOX_COMMANDS: [&str; 2] = ["\\boxed", "\\fbox"];

/// Contents of every box in `text`, in order (Math-Verify's `boxed="all"`).
pub(crate) fn box_contents(text: &str) -> Vec<String> {
    all_boxes(text)
}

/// Every `\boxed`/`\fbox` argument in `text`, in order. Braces are matched once for the whole
/// text, so adversarial input (thousands of unclosed boxes) stays linear.
fn all_boxes(text: &str) -> Vec<String> {
    box_spans(text).into_iter().map(|(_, _, b)| b).collect()
}

/// Every box as (start of the command, end of the argument, argument).
fn box_spans(text: &str) -> Vec<(usize, usize, String)> {
    if !text.contains("\\boxed") && !text.contains("\\fbox") {
        return Vec::new();
    }
    let bytes = text.as_bytes();
    let closes = brace_partners(bytes);
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(cmd) = BOX_COMMANDS.iter().find(|c| text[i..].starts_with(**c)) {
                let after = i + cmd.len();
                // `\boxedx` is another command, not a box.
                if after < bytes.len() && bytes[after].is_ascii_alphabetic() {
                    i = after;
                    continue;
                }
                if let Some((arg, end)) = box_argument(text, after, &closes) {
                    let arg = arg.trim();
                    // A box of any length is the answer: one too long to grade is graded
                    // wrong later, never skipped in favour of an earlier number.
                    if !arg.is_empty() {
                        out.push((i, end, arg.to_string()));
                    }
                    i = end;
                    continue;
                }
                i = after;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// For every `{` byte, the index of its matching `}` (escaped `\{`/`\}` ignored).
fn brace_partners(bytes: &[u8]) -> std::collections::HashMap<usize, usize> {
    let mut stack = Vec::new();
    let mut map = std::collections::HashMap::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => stack.push(i),
            b'}' => {
                if let Some(open) = stack.pop() {
                    map.insert(open, i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    map
}

fn last_box(text: &str) -> Option<String> {
    all_boxes(text).pop()
}

/// Argument of a box command starting at byte `start`: `{…}` brace-matched or, after spaces,
/// one token (`\boxed 5`). Returns the argument and the byte just after it.
fn box_argument<'a>(
    text: &'a str,
    start: usize,
    closes: &std::collections::HashMap<usize, usize>,
) -> Option<(&'a str, usize)> {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    if i >= bytes.len() {
        return None;
    }
    if bytes[i] == b'{' {
        let close = *closes.get(&i)?;
        return Some((&text[i + 1..close], close + 1));
    }
    if i == start {
        return None;
    }
    let end = text[i..]
        .find(|c: char| c.is_whitespace() || c == '$' || c == '}')
        .map_or(text.len(), |e| i + e);
    let tok = text[i..end].trim_end_matches(['.', ',', ';']);
    if tok.is_empty() {
        None
    } else {
        Some((tok, end))
    }
}

/// "final answer is X" / "answer: X" (last occurrence, case-insensitive), up to the end of the
/// line or sentence.
/// Removes one layer of enclosing math delimiters.
pub(crate) fn strip_math_delims(s: &str) -> &str {
    let s = s.trim();
    for (open, close) in [("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")] {
        if s.len() >= open.len() + close.len()
            && s.starts_with(open)
            && s.ends_with(close)
            && !(close == "$" && s.ends_with("\\$"))
        {
            return s[open.len()..s.len() - close.len()].trim();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_nested_and_bare() {
        assert_eq!(
            extract_answer("so \\boxed{\\frac{1}{2}}.").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(extract_answer("\\boxed 5 done").as_deref(), Some("5"));
        // Boxes fewer than 10 characters apart form one answer (Math-Verify's grouping).
        assert_eq!(
            extract_answer("\\boxed{1} then \\fbox{2}").as_deref(),
            Some("1,2")
        );
        assert_eq!(
            extract_answer("$\\boxed{16}$. Correcting the sign error gives $\\boxed{12}$.")
                .as_deref(),
            Some("12")
        );
        assert_eq!(
            extract_answer("<think>\\boxed{1}</think> \\boxed{3}").as_deref(),
            Some("3")
        );
        assert_eq!(extract_answer("<think>\\boxed{1} and more"), None);
    }

    #[test]
    fn phrases_and_numbers() {
        assert_eq!(
            extract_answer("The final answer is $42$. Thanks").as_deref(),
            Some("42")
        );
        assert_eq!(
            extract_answer("Answer: 7\nmore text here").as_deref(),
            Some("7")
        );
        assert_eq!(
            extract_answer("we tried many things and eventually got 1,234 apples").as_deref(),
            Some("1234")
        );
    }
}
