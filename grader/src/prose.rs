//! Finding an answer in prose when there is no box: answer phrases, math segments, numbers.

/// Longest extracted answer kept; anything longer is not a final answer.
const MAX_ANSWER_CHARS: usize = 2000;

/// Phrases that announce the answer, most specific first (Math-Verify's priorities).
const PHRASES: [&str; 6] = [
    "final answer is",
    "final answer:",
    "the answer is",
    "answer is:",
    "answer:",
    "answer",
];

/// The answer announced by the last answer phrase, refined to its math part.
pub(crate) fn after_phrase(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    for pat in PHRASES {
        let Some(pos) = lower.rfind(pat) else {
            continue;
        };
        // A phrase inside braces (`\text{the answer is yes}`) is part of an answer, not prose.
        if brace_depth(&text[..pos]) > 0 {
            continue;
        }
        let rest = text[pos + pat.len()..].trim_start_matches([':', ' ', '\t', '*']);
        if pat == "answer" {
            // Bare "answer" only counts when math follows within a few words.
            let window: String = rest.chars().take(50).collect();
            if let Some((start, body)) = math_segments(rest).into_iter().next() {
                if start < window.len() {
                    return clean(body);
                }
            }
            continue;
        }
        if let Some(ans) = clip_sentence(rest) {
            return Some(ans);
        }
    }
    None
}

/// The answer at the start of `rest`: its leading math segment, else its first sentence —
/// reduced to the math or number inside when the sentence is prose.
fn clip_sentence(rest: &str) -> Option<String> {
    let rest = rest.trim_start();
    let segs = math_segments(rest);
    if segs.first().is_some_and(|(start, _)| *start == 0) {
        // `$x = 1$ and $x = 2$`: math segments joined by "and"/"or"/commas form a list.
        let mut end = 0;
        while end + 1 < segs.len() && end < 5 && joined(rest, &segs[end], &segs[end + 1]) {
            end += 1;
        }
        return join_bodies(&segs[..=end]);
    }
    let end = rest.find('\n').unwrap_or(rest.len());
    let mut line = &rest[..end];
    // A period followed by a space ends the sentence (but `3.5` does not).
    if let Some(p) = line.find(". ") {
        line = &line[..p];
    }
    let line = line.trim().trim_end_matches(['.', ',', ';', '!']).trim();
    if line.is_empty() {
        return None;
    }
    if is_bare_answer(line) {
        return clean(crate::extract::strip_math_delims(line));
    }
    rightmost_value(line)
}

/// The value that ends last in prose: the last math segment or the last number, whichever is
/// further right ("the volume of $ABCD$ is 120" → 120), as Math-Verify orders its matches.
pub(crate) fn rightmost_value(text: &str) -> Option<String> {
    let segs = math_segments(text);
    let num = last_number_span(text);
    let Some(last) = segs.last() else {
        return num.map(|(_, n)| n);
    };
    if num
        .as_ref()
        .is_some_and(|(num_end, _)| *num_end > segment_end(text, last))
    {
        return num.map(|(_, n)| n);
    }
    // Segments joined by "and"/"or"/commas before the last one belong to the same answer.
    let mut first = segs.len() - 1;
    while first > 0 && segs.len() - first < 6 && joined(text, &segs[first - 1], &segs[first]) {
        first -= 1;
    }
    join_bodies(&segs[first..])
}

/// Byte offset just past a segment's closing delimiter.
fn segment_end(text: &str, seg: &(usize, &str)) -> usize {
    let body_start = seg.1.as_ptr() as usize - text.as_ptr() as usize;
    let open_len = body_start - seg.0;
    body_start + seg.1.len() + open_len
}

/// True when only a list separator lies between two segments.
fn joined(text: &str, a: &(usize, &str), b: &(usize, &str)) -> bool {
    let end = segment_end(text, a);
    if end > b.0 {
        return false;
    }
    let between = text[end..b.0].trim().to_ascii_lowercase();
    matches!(
        between.as_str(),
        "," | ";" | "and" | "or" | ", and" | ", or"
    )
}

fn join_bodies(segs: &[(usize, &str)]) -> Option<String> {
    let parts: Vec<String> = segs.iter().filter_map(|(_, b)| clean(b)).collect();
    if parts.is_empty() {
        None
    } else {
        clean(&parts.join(", "))
    }
}

/// Unclosed `{` count of `s` (escaped braces ignored).
fn brace_depth(s: &str) -> i64 {
    let b = s.as_bytes();
    let mut depth = 0i64;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    depth
}

fn clean(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches(['.', ',', ';']).trim();
    if s.is_empty() || s.chars().count() > MAX_ANSWER_CHARS {
        None
    } else {
        Some(s.to_string())
    }
}

/// Byte offset of the first `pat` in `s` not escaped by a backslash (`\$` is a dollar sign).
pub(crate) fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
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

/// Math segments (`$$…$$`, `\[…\]`, `\(…\)`, `$…$`) left to right as (start, body). Inline
/// `$…$` does not span lines, and a `$` right after a digit is a currency sign.
pub(crate) fn math_segments(text: &str) -> Vec<(usize, &str)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let delims: [(&str, &str, bool); 4] = [
            ("$$", "$$", true),
            ("\\[", "\\]", true),
            ("\\(", "\\)", false),
            ("$", "$", false),
        ];
        let mut advanced = false;
        if b[i] == b'$' || b[i] == b'\\' {
            for (open, close, multiline) in delims {
                if !text[i..].starts_with(open) {
                    continue;
                }
                if open == "$" && i > 0 && (b[i - 1] == b'\\' || b[i - 1].is_ascii_digit()) {
                    break;
                }
                let start = i + open.len();
                let Some(len) = find_unescaped(&text[start..], close) else {
                    break;
                };
                let body = &text[start..start + len];
                if !multiline && body.contains('\n') {
                    break;
                }
                out.push((i, body));
                i = start + len + close.len();
                advanced = true;
                break;
            }
        }
        if !advanced {
            i += 1;
        }
    }
    out
}

/// True when the whole text is itself an answer: a single math segment, or a short line with
/// at most two prose words.
pub(crate) fn is_bare_answer(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 300 {
        return false;
    }
    let segs = math_segments(s);
    if !segs.is_empty() {
        return segs.len() == 1
            && segs[0].0 == 0
            && crate::extract::strip_math_delims(s).len() + 4 >= s.len();
    }
    if s.contains('\n') {
        return false;
    }
    // One `\text{…}` group is a word answer however many words it has.
    if let Some(body) = s.strip_prefix("\\text{").and_then(|r| r.strip_suffix('}')) {
        if brace_depth(body) == 0 && !body.contains('}') {
            return true;
        }
    }
    // Prose has several words; `12 inches`, `x = 3`, `no solution` do not.
    let mut words = 0;
    for w in s.split_whitespace() {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\\');
        if w.len() >= 2 && !w.starts_with('\\') && w.chars().all(|c| c.is_alphabetic()) {
            words += 1;
        }
    }
    words <= 2
}

/// The last number and the byte offset where it ends; a `%` right after it is kept.
fn last_number_span(text: &str) -> Option<(usize, String)> {
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
            let mut n = text[start..end].replace(',', "");
            let rest = text[end..].trim_start();
            if rest.starts_with('%') || rest.starts_with("\\%") {
                n.push('%');
            }
            return Some((end, n));
        }
    }
    None
}
