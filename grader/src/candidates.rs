//! Math-Verify's extraction order, hand-written (no regex engine, linear-ish in the text).
//!
//! Math-Verify 0.8 tries anchored patterns in priority groups: (0) "final answer is X. I hope",
//! (50) "final answer … is X" and boxed answers, (100) "answer: … X", (200) "answer … X",
//! (300) any math segment, arithmetic expression or number. Within a group every match is a
//! candidate; the one that *ends* last is tried first, and the first that parses wins. The
//! candidates are math segments (`$…$`, `$$…$$`, `\[…\]`, `\(…\)`, ` […] `, a bare
//! `\frac{1}{2}`; up to six joined by "and"/"or"/","), plain arithmetic (`3 + 4`, `1/2`) and
//! numbers (`1,234.5`, `2,5` with a decimal comma, `.5`, `$12`, `40%`).

use crate::extract::{box_contents, group_of_last_boxes};

/// One extracted answer before normalisation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cand {
    /// LaTeX bodies of joined math segments (a list when several).
    Latex(Vec<String>),
    /// A plain number, already in canonical form (`1234.5`, `0.4%`).
    Number(String),
    /// Plain arithmetic such as `3 + 4` or `1/2`.
    Expr(String),
}

impl Cand {
    /// The answer text handed to the normaliser.
    pub(crate) fn text(&self) -> String {
        match self {
            Cand::Latex(v) => v.join(", "),
            Cand::Number(s) | Cand::Expr(s) => s.clone(),
        }
    }
}

struct Found {
    start: usize,
    end: usize,
    cand: Cand,
}

/// The answer Math-Verify would extract from `text`, given a predicate telling whether a
/// candidate parses (an unparseable candidate is skipped, as Math-Verify skips it).
pub(crate) fn extract(text: &str, parses: &dyn Fn(&str) -> bool) -> Option<Cand> {
    let lower = text.to_ascii_lowercase();
    let envs = latex_envs(text, true);
    let groups: [&dyn Fn() -> Vec<Found>; 5] = [
        &|| final_answer_hope(text, &lower, &envs),
        &|| {
            let mut v = final_answer_is(text, &lower, &envs);
            v.extend(boxed(text));
            v
        },
        &|| answer_word(text, &lower, &envs, true),
        &|| answer_word(text, &lower, &envs, false),
        &|| plain(text, &envs),
    ];
    // Math-Verify keeps the first match it tried even when nothing parses, and compares it
    // as a string (`\sum…` against the same `\sum…`).
    let mut fallback = None;
    for group in groups {
        let mut found = group();
        found.sort_by(|a, b| b.end.cmp(&a.end).then(a.start.cmp(&b.start)));
        for f in found {
            if fallback.is_none() {
                fallback = Some(f.cand.clone());
            }
            if let Some(c) = usable(f.cand, parses) {
                return Some(c);
            }
        }
    }
    fallback
}

/// The candidate as Math-Verify keeps it: joined segments form a list only when every one
/// parses, otherwise the first segment stands alone.
fn usable(c: Cand, parses: &dyn Fn(&str) -> bool) -> Option<Cand> {
    match c {
        Cand::Latex(bodies) => {
            if bodies.len() > 1 && bodies.iter().all(|b| parses(b)) {
                return Some(Cand::Latex(bodies));
            }
            let first = bodies.into_iter().next()?;
            parses(&first).then(|| Cand::Latex(vec![first]))
        }
        Cand::Expr(e) => parses(&e).then_some(Cand::Expr(e)),
        n @ Cand::Number(_) => Some(n),
    }
}

/// A math segment: byte span of the whole match (percent suffix included) and its body.
#[derive(Debug, Clone)]
struct Env {
    start: usize,
    end: usize,
    body: String,
    /// A percent sign or word follows the segment (`$40$%`, `$\boxed{28}$ pct`).
    percent: bool,
}

impl Env {
    fn answer(&self) -> String {
        if self.percent {
            format!("{}\\%", self.body)
        } else {
            self.body.clone()
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Every math segment left to right, non-overlapping (Python `finditer` order). `plain` also
/// admits a bare `\frac{1}{2}`.
fn latex_envs(text: &str, plain: bool) -> Vec<Env> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // Every delimiter is ASCII, so a segment never starts inside a character.
        if !b[i].is_ascii() {
            i += 1;
            continue;
        }
        match env_at(text, i, plain) {
            Some((body_start, body_end, end)) => {
                let (end, percent) = percent_suffix(text, end);
                out.push(Env {
                    start: i,
                    end,
                    body: text[body_start..body_end].to_string(),
                    percent,
                });
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
    out
}

/// The segment starting exactly at `i`: (body start, body end, match end).
fn env_at(text: &str, i: usize, plain: bool) -> Option<(usize, usize, usize)> {
    let b = text.as_bytes();
    let prev = if i > 0 { Some(b[i - 1]) } else { None };
    let rest = &text[i..];
    if rest.starts_with("$$") && prev != Some(b'\\') {
        // `$$…$$`: lazy body of at least one char, closing `$$` not escaped.
        let mut j = i + 3;
        while j + 1 < b.len() {
            if b[j] == b'$' && b[j + 1] == b'$' && b[j - 1] != b'\\' {
                return Some((i + 2, j, j + 2));
            }
            j += 1;
        }
    }
    if rest.starts_with("\\[") && prev != Some(b'\\') {
        let mut j = i + 3;
        while j + 1 < b.len() {
            if b[j] == b'\\' && b[j + 1] == b']' && b[j - 1] != b'\\' {
                return Some((i + 2, j, j + 2));
            }
            j += 1;
        }
    }
    if b[i] == b'$' && !matches!(prev, Some(b'\\' | b'0'..=b'9')) {
        // Inline `$…$`: no newline, `\$` allowed inside.
        let mut j = i + 1;
        let mut len = 0;
        while j < b.len() {
            match b[j] {
                b'\n' => break,
                b'$' if len > 0 && b[j - 1] != b'\\' => return Some((i + 1, j, j + 1)),
                b'$' => break,
                b'\\' if b.get(j + 1) == Some(&b'$') => {
                    j += 2;
                    len += 2;
                    continue;
                }
                _ => {}
            }
            j += 1;
            len += 1;
        }
    }
    if rest.starts_with("\\(") && prev != Some(b'\\') {
        let mut j = i + 3;
        while j + 1 < b.len() && b[j] != b'\n' {
            if b[j] == b'\\' && b[j + 1] == b')' && b[j - 1] != b'\\' {
                return Some((i + 2, j, j + 2));
            }
            if b[j] == b'\\' && b[j + 1] == b'\n' {
                break;
            }
            j += 1;
        }
    }
    if is_space(b[i]) && b.get(i + 1) == Some(&b'[') {
        let mut j = i + 2;
        while j < b.len() && !matches!(b[j], b'\n' | b'[' | b']') {
            j += 1;
        }
        if j > i + 2 && b.get(j) == Some(&b']') && b.get(j + 1).is_some_and(|c| is_space(*c)) {
            return Some((i + 2, j, j + 2));
        }
    }
    if plain {
        let neg = usize::from(b[i] == b'-');
        if text[i + neg..].starts_with("\\frac{") {
            let j = i + neg + 6;
            let (n1, j) = simple_number(b, j)?;
            if n1 && b.get(j) == Some(&b'}') && b.get(j + 1) == Some(&b'{') {
                let (n2, k) = simple_number(b, j + 2)?;
                if n2 && b.get(k) == Some(&b'}') {
                    return Some((i, k + 1, k + 1));
                }
            }
        }
    }
    None
}

/// `-?\d+(?:[.,]\d+)?` at `j`: (matched, end).
fn simple_number(b: &[u8], mut j: usize) -> Option<(bool, usize)> {
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    let s = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == s {
        return Some((false, j));
    }
    if matches!(b.get(j), Some(b'.' | b',')) && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    Some((true, j))
}

/// `\s*(\\?%|percent|percentage|pct)` after a segment or number: (new end, found).
fn percent_suffix(text: &str, end: usize) -> (usize, bool) {
    let b = text.as_bytes();
    let mut j = end;
    while j < b.len() && is_space(b[j]) {
        j += 1;
    }
    let rest = &text[j..];
    for w in [
        "\\%",
        "%",
        "Percentage",
        "percentage",
        "Percent",
        "percent",
        "Pct",
        "pct",
    ] {
        if rest.starts_with(w) {
            return (j + w.len(), true);
        }
    }
    (end, false)
}

/// The joined chain of segments starting with `envs[k]`: "$1$, $2$ and $3$" (up to six).
fn chain(text: &str, envs: &[Env], k: usize) -> (usize, Vec<String>) {
    let mut bodies = vec![envs[k].answer()];
    let mut end = envs[k].end;
    let mut j = k;
    while bodies.len() < 6 && j + 1 < envs.len() {
        let next = &envs[j + 1];
        if next.start < end || !is_separator(&text[end..next.start]) {
            break;
        }
        bodies.push(next.answer());
        end = next.end;
        j += 1;
    }
    (end, bodies)
}

/// `\s*(?:,?and|,?or|,)\s*` exactly.
fn is_separator(s: &str) -> bool {
    let t = s.trim_matches(|c: char| c.is_whitespace());
    matches!(t, "," | "and" | ",and" | "or" | ",or")
}

/// Chains whose first segment starts within `window` bytes after `from` (any characters in
/// between); the first such chain.
fn chain_within(text: &str, envs: &[Env], from: usize, window: usize) -> Option<Found> {
    let k = envs.partition_point(|e| e.start < from);
    if envs.get(k)?.start > from + window_bytes(text, from, window) {
        return None;
    }
    let (end, bodies) = chain(text, envs, k);
    Some(Found {
        start: from,
        end,
        cand: Cand::Latex(bodies),
    })
}

/// Index of the segment starting exactly at `pos` (segments are sorted by start).
fn env_at_pos(envs: &[Env], pos: usize) -> Option<usize> {
    let k = envs.partition_point(|e| e.start < pos);
    (envs.get(k)?.start == pos).then_some(k)
}

/// Bytes spanned by `chars` characters after `from`.
fn window_bytes(text: &str, from: usize, chars: usize) -> usize {
    text[from..]
        .char_indices()
        .nth(chars)
        .map_or(text.len() - from, |(p, _)| p)
}

/// Occurrences of an ASCII (lower-case) word in `lower`.
fn occurrences<'a>(lower: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    lower.match_indices(word).map(|(p, _)| p)
}

/// (0) `final answer is:? X.? ?I hope`.
fn final_answer_hope(text: &str, lower: &str, envs: &[Env]) -> Vec<Found> {
    let mut out = Vec::new();
    for p in occurrences(lower, "final answer is") {
        let mut j = p + "final answer is".len();
        if text[j..].starts_with(':') {
            j += 1;
        }
        let after_ws = j + text[j..].len() - text[j..].trim_start().len();
        let mut hits = Vec::new();
        if let Some(k) = env_at_pos(envs, after_ws) {
            let (end, bodies) = chain(text, envs, k);
            hits.push((end, Cand::Latex(bodies)));
        }
        if let Some((_, end, c)) = value_after_spaces(text, j) {
            hits.push((end, c));
        }
        for (end, c) in hits {
            let mut e = end;
            if text[e..].starts_with('.') {
                e += 1;
            }
            if text[e..].starts_with(|c: char| c.is_whitespace()) {
                e += text[e..].chars().next().map_or(0, char::len_utf8);
            }
            if text[e..].starts_with("I hope") {
                out.push(Found {
                    start: p,
                    end: e + "I hope".len(),
                    cand: c,
                });
            }
        }
    }
    out
}

/// `\s*` then a value whose anchor is the last of those spaces (or a `=`).
fn value_after_spaces(text: &str, j: usize) -> Option<(usize, usize, Cand)> {
    let ws = j + text[j..].len() - text[j..].trim_start().len();
    if ws > j {
        let last = text[..ws].char_indices().next_back().map_or(j, |(p, _)| p);
        expr_or_number_at(text, last)
    } else if text[ws..].starts_with('=') {
        expr_or_number_at(text, ws)
    } else {
        None
    }
}

/// (50) `final answer.{0,100}?\s+is:?` then a segment chain (any characters) or a number or
/// expression (the lazy gap on one line); each pattern takes the first ` is` that works.
fn final_answer_is(text: &str, lower: &str, envs: &[Env]) -> Vec<Found> {
    let mut out = Vec::new();
    for p in occurrences(lower, "final answer") {
        let from = p + "final answer".len();
        let limit = from + window_bytes(text, from, 100);
        let mut latex_done = false;
        let mut expr_done = false;
        for is_at in lower[from..].match_indices("is").map(|(q, _)| from + q) {
            if latex_done && expr_done {
                break;
            }
            // `\s+` before `is`, starting within the 100-character window.
            let ws_start = from + text[from..is_at].trim_end().len();
            if ws_start == is_at || ws_start > limit {
                if ws_start > limit {
                    break;
                }
                continue;
            }
            let mut j = is_at + 2;
            if text[j..].starts_with(':') {
                j += 1;
            }
            if !latex_done {
                let ws = j + text[j..].len() - text[j..].trim_start().len();
                if let Some(k) = env_at_pos(envs, ws) {
                    let (end, bodies) = chain(text, envs, k);
                    out.push(Found {
                        start: p,
                        end,
                        cand: Cand::Latex(bodies),
                    });
                    latex_done = true;
                }
            }
            if !expr_done && !text[from..ws_start].contains('\n') {
                if let Some((_, end, c)) = expr_or_number_at(text, j) {
                    out.push(Found {
                        start: p,
                        end,
                        cand: c,
                    });
                    expr_done = true;
                }
            }
        }
    }
    out
}

/// (50) Boxed answers: math segments holding a box (each reduced to its boxes, joined like
/// other segments), and the span from the first `\boxed{` to the last `}` read as its last run
/// of boxes (Math-Verify's `boxed="last"` grouping). The segment form ends one `$` later, so it
/// usually wins: `$\boxed{16}$ … $\boxed{12}$` is 12, `$\boxed{3}$, $\boxed{5}$` is {3, 5}.
fn boxed(text: &str) -> Vec<Found> {
    // Only `\boxed{` anchors this group (a lone `\fbox{…}` is found inside math segments).
    let Some(first) = text.find("\\boxed{") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let envs: Vec<Env> = latex_envs(text, false)
        .into_iter()
        .filter(|e| e.body.contains("\\boxed{"))
        .filter_map(|e| {
            let boxes = box_contents(&e.body);
            (!boxes.is_empty()).then(|| Env {
                body: boxes.join(","),
                ..e
            })
        })
        .collect();
    let mut k = 0;
    while k < envs.len() {
        let (end, bodies) = chain(text, &envs, k);
        let n = bodies.len();
        out.push(Found {
            start: envs[k].start,
            end,
            cand: Cand::Latex(bodies),
        });
        k += n;
    }
    if let Some(last) = text.rfind('}').filter(|&p| p > first) {
        let span = &text[first..=last];
        if let Some((_, boxes)) = group_of_last_boxes(span) {
            out.push(Found {
                start: first,
                end: last + 1,
                cand: Cand::Latex(vec![boxes.join(",")]),
            });
        }
    }
    out
}

/// (100/200) `answer:` / `answer`, then a segment chain within 50 characters, or on the same
/// line a value after the last `=` within 100 characters or the first within 50.
fn answer_word(text: &str, lower: &str, envs: &[Env], colon: bool) -> Vec<Found> {
    let word = if colon { "answer:" } else { "answer" };
    let mut out = Vec::new();
    let mut latex_next = 0;
    let mut expr_next = 0;
    for p in occurrences(lower, word) {
        let from = p + word.len();
        if p >= latex_next {
            if let Some(f) = chain_within(text, envs, from, 50) {
                latex_next = f.end;
                out.push(Found { start: p, ..f });
            }
        }
        if p >= expr_next {
            if let Some(f) = value_after_answer(text, from) {
                expr_next = f.end;
                out.push(Found { start: p, ..f });
            }
        }
    }
    out
}

/// `(?:.{0,100}=\s*|.{0,50}?)(expr|number)(?!\s*=)` on one line.
fn value_after_answer(text: &str, from: usize) -> Option<Found> {
    let line_end = text[from..].find('\n').map_or(text.len(), |e| from + e);
    let not_before_eq = |end: usize| !text[end..].trim_start().starts_with('=');
    // Greedy: the last `=` within 100 characters, then the value right after it.
    let w100 = from + window_bytes(text, from, 100).min(line_end - from);
    let mut eqs: Vec<usize> = text[from..w100.min(line_end)]
        .match_indices('=')
        .map(|(q, _)| from + q)
        .collect();
    eqs.reverse();
    for q in eqs {
        if let Some((_, end, c)) = value_after_spaces(text, q + 1) {
            if end <= line_end && not_before_eq(end) {
                return Some(Found {
                    start: from,
                    end,
                    cand: c,
                });
            }
        }
    }
    // Lazy: the first value starting within 50 characters.
    let w50 = from + window_bytes(text, from, 50).min(line_end - from);
    let mut j = from;
    while j <= w50 {
        if let Some((_, end, c)) = expr_or_number_at(text, j) {
            if end <= line_end && not_before_eq(end) {
                return Some(Found {
                    start: from,
                    end,
                    cand: c,
                });
            }
        }
        j += text[j..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// (300) Every segment chain, expression and number.
fn plain(text: &str, envs: &[Env]) -> Vec<Found> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < envs.len() {
        let (end, bodies) = chain(text, envs, k);
        let n = bodies.len();
        out.push(Found {
            start: envs[k].start,
            end,
            cand: Cand::Latex(bodies),
        });
        k += n;
    }
    // Expressions and numbers are two separate scans, each non-overlapping.
    for numbers_only in [false, true] {
        let mut j = 0;
        while j < text.len() {
            let hit = if numbers_only {
                number_with_anchor(text, j)
            } else {
                expr_with_anchor(text, j)
            };
            match hit {
                Some((start, end, c)) => {
                    out.push(Found {
                        start,
                        end,
                        cand: c,
                    });
                    j = end.max(j + 1);
                }
                None => j += text[j..].chars().next().map_or(1, char::len_utf8),
            }
            while !text.is_char_boundary(j) {
                j += 1;
            }
        }
    }
    out
}

/// An expression, else a number, whose anchor (start, whitespace or `=`) is at `j`.
fn expr_or_number_at(text: &str, j: usize) -> Option<(usize, usize, Cand)> {
    expr_with_anchor(text, j).or_else(|| number_with_anchor(text, j))
}

/// Length of the anchor at `j`: 0 at the start of the text, 1 for whitespace or `=`.
fn anchor(text: &str, j: usize) -> Option<usize> {
    if j == 0 {
        return Some(0);
    }
    let c = text[j..].chars().next()?;
    (c.is_whitespace() || c == '=').then(|| c.len_utf8())
}

/// Skips `**` and, for numbers, one currency sign.
fn skip_decor(text: &str, mut j: usize, currency: bool) -> usize {
    if text[j..].starts_with("**") {
        j += 2;
    }
    if currency {
        if let Some(c) = text[j..].chars().next() {
            if "$€£¥₹₽₪₩₫฿".contains(c) {
                j += c.len_utf8();
            }
        }
    }
    j
}

const EXPR_OPS: &str = "+-*×/^()÷";

fn expr_char(c: char) -> bool {
    c.is_ascii_digit() || c == '.' || c.is_whitespace() || EXPR_OPS.contains(c)
}

/// `-?\(?-?\d[chars]*[op][chars]+\)?` then `**`? and a stop (`.`, `,`, `:`, space, `)`, `$`,
/// end): plain arithmetic such as `3 + 4` or `1/2`.
fn expr_with_anchor(text: &str, j: usize) -> Option<(usize, usize, Cand)> {
    let a = anchor(text, j)?;
    let s = skip_decor(text, j + a, false);
    let mut d = s;
    for c in ['-', '(', '-'] {
        if text[d..].starts_with(c) {
            d += 1;
        }
    }
    if !text[d..].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let run: Vec<(usize, char)> = text[d..]
        .char_indices()
        .take_while(|(_, c)| expr_char(*c))
        .collect();
    // Longest prefix with an operator (after the first digit) followed by at least one more
    // character, then a stop.
    let first_op = run
        .iter()
        .skip(1)
        .position(|(_, c)| EXPR_OPS.contains(*c))?
        + 1;
    for len in (first_op + 2..=run.len()).rev() {
        let (p, c) = run[len - 1];
        let end = d + p + c.len_utf8();
        let mut stop = end;
        if text[stop..].starts_with("**") {
            stop += 2;
        }
        let next = text[stop..].chars().next();
        if next.is_none_or(|c| matches!(c, '.' | ',' | ':' | ')' | '$') || c.is_whitespace()) {
            // The stop character belongs to the match (it is not a lookahead).
            let match_end = stop + next.map_or(0, char::len_utf8);
            let expr = text[s..end].to_string();
            return Some((j, match_end, Cand::Expr(expr.replace('\n', " "))));
        }
    }
    None
}

/// A number with its anchor: thousands groups (`1,234`, `1 234`), a decimal point or comma,
/// a leading-dot decimal, an integer; an optional percent.
fn number_with_anchor(text: &str, j: usize) -> Option<(usize, usize, Cand)> {
    let a = anchor(text, j)?;
    let s = skip_decor(text, j + a, true);
    let b = text.as_bytes();
    if s > 0 && b[s - 1].is_ascii_digit() {
        return None;
    }
    let (int, dec, end) = number_body(b, s)?;
    let (end, percent) = percent_word(text, end);
    let int = int.trim_start_matches('-');
    let digits = int.trim_start_matches('0');
    let mut n = String::new();
    if b.get(s) == Some(&b'-') {
        n.push('-');
    }
    n.push_str(if digits.is_empty() { "0" } else { digits });
    n.push_str(&dec);
    if percent {
        n.push('%');
    }
    Some((j, end, Cand::Number(n)))
}

/// The alternatives of Math-Verify's number pattern, tried in order: (integer digits,
/// decimal part with `.`, end).
fn number_body(b: &[u8], s: usize) -> Option<(String, String, usize)> {
    let digits_from = |mut k: usize| {
        let st = k;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        (st, k)
    };
    let neg = usize::from(b.get(s) == Some(&b'-'));
    let d0 = s + neg;
    let frac = |k: usize| -> (String, usize) {
        if b.get(k) == Some(&b'.') && b.get(k + 1).is_some_and(u8::is_ascii_digit) {
            let (st, e) = digits_from(k + 1);
            (format!(".{}", ascii(&b[st..e])), e)
        } else {
            (String::new(), k)
        }
    };
    // 1: `[1-9]\d{0,2}(?:[ ,]\d{3})+(\.\d+)?` (longest first digit run that works).
    if b.get(d0).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        let (_, run_end) = digits_from(d0);
        for lead in (1..=3.min(run_end - d0)).rev() {
            let mut k = d0 + lead;
            let mut int = ascii(&b[d0..k]);
            let mut groups = 0;
            while k + 3 < b.len()
                && matches!(b[k], b' ' | b',')
                && b[k + 1..k + 4].iter().all(u8::is_ascii_digit)
            {
                int.push_str(&ascii(&b[k + 1..k + 4]));
                k += 4;
                groups += 1;
            }
            if groups > 0 {
                let (dec, e) = frac(k);
                return Some((int, dec, e));
            }
        }
    }
    // 2: `\d+[.,]\d+`; 4: `\d+`.
    let (st, e) = digits_from(d0);
    if e > st {
        if matches!(b.get(e), Some(b'.' | b',')) && b.get(e + 1).is_some_and(u8::is_ascii_digit) {
            let (fs, fe) = digits_from(e + 1);
            return Some((ascii(&b[st..e]), format!(".{}", ascii(&b[fs..fe])), fe));
        }
        return Some((ascii(&b[st..e]), String::new(), e));
    }
    // 3: `\.\d+` (no sign).
    if neg == 0 && b.get(s) == Some(&b'.') && b.get(s + 1).is_some_and(u8::is_ascii_digit) {
        let (fs, fe) = digits_from(s + 1);
        return Some(("0".into(), format!(".{}", ascii(&b[fs..fe])), fe));
    }
    None
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct)` after a number.
fn percent_word(text: &str, end: usize) -> (usize, bool) {
    let t = &text[end..];
    let skipped = t.len() - t.trim_start().len();
    let rest = &t[skipped..];
    for w in [
        "%",
        "Percentage",
        "percentage",
        "Percent",
        "percent",
        "Pct",
        "pct",
    ] {
        if rest.starts_with(w) {
            return (end + skipped + w.len(), true);
        }
    }
    (end, false)
}
