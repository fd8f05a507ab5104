//! Pulling the final answer out of a free-form model response.

/// Longest response considered; longer ones are cut from the front (the answer is at the end).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Longest extracted answer kept; anything longer is not a final answer.
const MAX_ANSWER_CHARS: usize = 2000;

/// Returns the final answer of a response, or `None` when it has none.
///
/// Order, mirroring the R1/Math-Verify protocol: only the text after the last `</think>` (a
/// response with an unclosed `<think>` was truncated mid-reasoning and has no answer); the last
/// `\boxed{…}`/`\fbox{…}` (brace-matched, also `\boxed 5`); "final answer is …"; "answer: …";
/// the whole text when it is itself a short bare answer; the last math segment; the last number.
pub fn extract_answer(response: &str) -> Option<String> {
    let text = final_region(response)?;
    if let Some(b) = last_box(text) {
        return Some(b);
    }
    if let Some(a) = after_phrase(text) {
        return Some(a);
    }
    let bare = strip_math_delims(text.trim());
    if looks_like_bare_answer(bare) {
        return Some(bare.trim().to_string());
    }
    if let Some(m) = last_math_segment(text) {
        return Some(m);
    }
    last_number(text)
}

/// All distinct boxed answers in the final-answer region, in order of appearance, so a grader
/// can treat `\boxed{1}, \boxed{2}` as the set `{1, 2}` when the gold is a set.
pub fn extract_final_boxes(response: &str) -> Vec<String> {
    let Some(text) = final_region(response) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for b in all_boxes(text) {
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
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

/// Every `\boxed`/`\fbox` argument in `text`, in order. Braces are matched once for the whole
/// text, so adversarial input (thousands of unclosed boxes) stays linear.
fn all_boxes(text: &str) -> Vec<String> {
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
                    if !arg.is_empty() && arg.chars().count() <= MAX_ANSWER_CHARS {
                        out.push(arg.to_string());
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
fn after_phrase(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let patterns = [
        "final answer is",
        "final answer:",
        "the answer is",
        "answer is:",
        "answer:",
    ];
    for pat in patterns {
        if let Some(pos) = lower.rfind(pat) {
            let rest = &text[pos + pat.len()..];
            let rest = rest.trim_start_matches([':', ' ', '\t']);
            if let Some(ans) = clip_sentence(rest) {
                return Some(ans);
            }
        }
    }
    None
}

/// First line of `rest`, with math delimiters and trailing sentence punctuation removed.
fn clip_sentence(rest: &str) -> Option<String> {
    let rest = rest.trim_start();
    let line = if let Some(inner) = leading_math(rest) {
        inner
    } else {
        let end = rest.find('\n').unwrap_or(rest.len());
        let mut line = &rest[..end];
        // A period followed by a space ends the sentence (but `3.5` does not).
        if let Some(p) = line.find(". ") {
            line = &line[..p];
        }
        line
    };
    let ans = strip_math_delims(line.trim())
        .trim()
        .trim_end_matches(['.', ',', ';', '!'])
        .trim();
    if ans.is_empty() || ans.chars().count() > MAX_ANSWER_CHARS {
        None
    } else {
        Some(ans.to_string())
    }
}

/// Content of a math segment that `s` starts with (`$…$`, `$$…$$`, `\(…\)`, `\[…\]`).
fn leading_math(s: &str) -> Option<&str> {
    for (open, close) in [("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")] {
        if let Some(body) = s.strip_prefix(open) {
            if let Some(end) = find_unescaped(body, close) {
                return Some(&body[..end]);
            }
        }
    }
    None
}

/// Byte offset of the first `pat` in `s` not preceded by a backslash (`\$` is a dollar sign,
/// not a math delimiter).
fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = s[from..].find(pat) {
        let at = from + p;
        if pat == "$" && at > 0 && s.as_bytes()[at - 1] == b'\\' {
            from = at + 1;
            continue;
        }
        return Some(at);
    }
    None
}

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

/// A whole response that is short, single-line and free of prose is itself the answer.
fn looks_like_bare_answer(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 200 || s.contains('\n') {
        return false;
    }
    // Prose has several multi-letter words outside LaTeX commands.
    let mut words = 0;
    for w in s.split_whitespace() {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\\');
        if w.len() > 3 && !w.starts_with('\\') && w.chars().all(|c| c.is_ascii_alphabetic()) {
            words += 1;
        }
    }
    words <= 2
}

/// Content of the last inline/display math segment.
fn last_math_segment(text: &str) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for (open, close) in [("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")] {
        let mut from = 0;
        let mut last = None;
        while let Some(o) = find_unescaped(&text[from..], open) {
            let start = from + o + open.len();
            let Some(c) = find_unescaped(&text[start..], close) else {
                break;
            };
            last = Some((from + o, &text[start..start + c]));
            from = start + c + close.len();
        }
        if let Some((pos, body)) = last {
            if best.is_none_or(|(b, _)| pos > b) {
                best = Some((pos, body));
            }
        }
    }
    let (_, body) = best?;
    let body = body.trim();
    // `x = 5` → the right-most side is the value.
    let body = body.rsplit('=').next().unwrap_or(body).trim();
    if body.is_empty() || body.chars().count() > MAX_ANSWER_CHARS {
        None
    } else {
        Some(body.trim_end_matches(['.', ',']).trim().to_string())
    }
}

/// The last number (optionally signed, with decimals or a `/` fraction) in `text`.
fn last_number(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = b.len();
    while i > 0 {
        i -= 1;
        if b[i].is_ascii_digit() {
            let end = i + 1;
            let mut start = i;
            while start > 0
                && (b[start - 1].is_ascii_digit()
                    || ((b[start - 1] == b'.' || b[start - 1] == b'/' || b[start - 1] == b',')
                        && start >= 2
                        && b[start - 2].is_ascii_digit()))
            {
                start -= 1;
            }
            if start > 0 && b[start - 1] == b'-' {
                start -= 1;
            }
            return Some(text[start..end].replace(',', ""));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_nested_and_bare() {
        assert_eq!(extract_answer("so \\boxed{\\frac{1}{2}}.").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(extract_answer("\\boxed 5 done").as_deref(), Some("5"));
        assert_eq!(extract_answer("\\boxed{1} then \\fbox{2}").as_deref(), Some("2"));
        assert_eq!(extract_answer("<think>\\boxed{1}</think> \\boxed{3}").as_deref(), Some("3"));
        assert_eq!(extract_answer("<think>\\boxed{1} and more"), None);
    }

    #[test]
    fn phrases_and_numbers() {
        assert_eq!(extract_answer("The final answer is $42$. Thanks").as_deref(), Some("42"));
        assert_eq!(extract_answer("Answer: 7\nmore text here").as_deref(), Some("7"));
        assert_eq!(
            extract_answer("we tried many things and eventually got 1,234 apples").as_deref(),
            Some("1234")
        );
    }
}
