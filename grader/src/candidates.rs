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
use crate::plain_values::{expr_or_number_at, expr_with_anchor, number_with_anchor};
use crate::segments::{latex_envs, Env};

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
    let envs = latex_envs(text);
    let groups: [&dyn Fn() -> Vec<Found>; 5] = [
        &|| final_answer_hope(text, &lower, &envs),
        &|| {
            let mut v = final_answer_is(text, &lower, &envs);
            v.extend(boxed(text, &envs));
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
fn boxed(text: &str, all_envs: &[Env]) -> Vec<Found> {
    // Only `\boxed{` anchors this group (a lone `\fbox{…}` is found inside math segments).
    let Some(first) = text.find("\\boxed{") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let envs: Vec<Env> = all_envs
        .iter()
        .filter(|e| !e.bare_frac && e.body.contains("\\boxed{"))
        .cloned()
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
