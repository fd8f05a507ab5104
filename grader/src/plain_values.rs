//! Plain-text values as Math-Verify's expression patterns find them: arithmetic such as
//! `3 + 4` or `1/2`, and numbers (`1,234.5`, `1 234`, a decimal comma `2,5`, `.5`, `$12`,
//! `40%`), each after an anchor (the start, whitespace or `=`).

use crate::candidates::Cand;

/// An expression, else a number, whose anchor (start, whitespace or `=`) is at `j`.
pub(crate) fn expr_or_number_at(text: &str, j: usize) -> Option<(usize, usize, Cand)> {
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
pub(crate) fn expr_with_anchor(text: &str, j: usize) -> Option<(usize, usize, Cand)> {
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
pub(crate) fn number_with_anchor(text: &str, j: usize) -> Option<(usize, usize, Cand)> {
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
