//! Math segments as Math-Verify's patterns find them: `$$…$$`, `\\[…\\]`, `$…$` (one line, not
//! after a digit or backslash), `\\(…\\)`, ` […] `, and a bare `\\frac{1}{2}`; each with an
//! optional percent sign or word after it.

/// A math segment: byte span of the whole match (percent suffix included) and its body.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) body: String,
    /// A percent sign or word follows the segment (`$40$%`, `$\boxed{28}$ pct`).
    pub(crate) percent: bool,
    /// A bare `\frac{1}{2}` rather than a delimited segment (not a boxed context).
    pub(crate) bare_frac: bool,
}

impl Env {
    pub(crate) fn answer(&self) -> String {
        // A percent word (not `\%`): normalisation makes it a percent sign, and the grader can
        // still tell it came after the segment (Math-Verify's string form omits it).
        if self.percent {
            format!("{} percent", self.body)
        } else {
            self.body.clone()
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Every math segment left to right, non-overlapping (Python `finditer` order), a bare
/// `\frac{1}{2}` included.
pub(crate) fn latex_envs(text: &str) -> Vec<Env> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // Every delimiter is ASCII, so a segment never starts inside a character.
        if !b[i].is_ascii() {
            i += 1;
            continue;
        }
        match env_at(text, i) {
            Some((body_start, body_end, end)) => {
                let bare_frac = body_start == i;
                let (end, percent) = percent_suffix(text, end);
                out.push(Env {
                    start: i,
                    end,
                    body: text[body_start..body_end].to_string(),
                    percent,
                    bare_frac,
                });
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
    out
}

/// The segment starting exactly at `i`: (body start, body end, match end).
fn env_at(text: &str, i: usize) -> Option<(usize, usize, usize)> {
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
    {
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
