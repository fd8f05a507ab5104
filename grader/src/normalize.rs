//! String-level clean-up before lexing: delimiters, spacing macros, thousands separators,
//! degrees, currency and trailing units — the textual noise Math-Verify also discards.

/// Longest answer (in characters) that is graded; a longer one (a box of thousands of terms)
/// is still the answer, but graded wrong rather than parsed.
pub(crate) const MAX_ANSWER_CHARS: usize = 8000;

/// Cleans an answer string; returns `None` when it is too long to be an answer.
pub(crate) fn normalize(s: &str) -> Option<String> {
    if s.chars().count() > MAX_ANSWER_CHARS {
        return None;
    }
    let mut t = crate::extract::strip_math_delims(s.trim()).to_string();
    // `\\frac` written with a doubled backslash (outside matrices, where `\\` is a row break).
    if t.contains("\\\\") && !t.contains("matrix") && !t.contains("array") {
        t = fix_doubled_backslashes(&t);
    }
    // Answer boxes inside the answer (`\boxed{5}` as a bare answer).
    if let Some(inner) = crate::extract::extract_answer_boxes_only(&t) {
        t = inner;
    }
    for (from, to) in [
        (",\\! ", ","),
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("{,}", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("^{\\prime}", ""),
        ("\\circ", ""),
        ("\\degree", ""),
        ("°", ""),
        ("\\$", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("\\displaystyle", ""),
        ("\\mathrm{th}", ""),
        ("\\%", "%"),
        ("\\mathbb{R}", "(-\\infty,\\infty)"),
        ("\\mathbb R", "(-\\infty,\\infty)"),
        ("ℝ", "(-\\infty,\\infty)"),
        ("€", ""),
        ("£", ""),
        ("¥", ""),
        ("²", "^2"),
        ("³", "^3"),
        ("\\le ", "\\le "),
        ("\u{a0}", " "),
    ] {
        if t.contains(from) {
            t = t.replace(from, to);
        }
    }
    t = brace_commas(&t);
    // `x = 1/3 \approx 0.33`: the exact value before the approximation is the answer.
    // `x \approx 11`: with only a name before it, the value after is the answer.
    if let Some(p) = t.find("\\approx") {
        let head = t[..p].trim();
        if head.chars().all(|c| c.is_ascii_alphabetic()) && !head.is_empty() {
            t = t[p + "\\approx".len()..].to_string();
        } else if !head.is_empty() {
            t.truncate(p);
        }
    }
    t = percent_words(&t);
    t = t
        .trim()
        .trim_start_matches('$')
        .trim_end_matches('$')
        .to_string();
    // Math-Verify's order: "and"/"or" become commas before trailing `\text{…}` units go.
    t = words_to_commas(&t);
    t = crate::units::strip_units(&t);
    t = remove_comma_thousands(&t);
    t = strip_leading_words(&t);
    let t = t.trim().trim_end_matches(['.', ';']).trim();
    let t = t.strip_prefix('$').unwrap_or(t);
    Some(t.trim().to_string())
}

/// `1 and 3`, `(1,2)or(2,1)` → `1, 3`, `(1,2),(2,1)`: "and"/"or" not part of a longer word
/// separate list items (also inside `\text{}`).
fn words_to_commas(s: &str) -> String {
    if !s.contains("and") && !s.contains("or") {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let word_len = if chars[i..].starts_with(&['a', 'n', 'd']) {
            3
        } else if chars[i..].starts_with(&['o', 'r']) {
            2
        } else {
            0
        };
        let before_ok = i == 0 || !chars[i - 1].is_alphabetic() && chars[i - 1] != '\\';
        let after_ok = chars.get(i + word_len).is_none_or(|c| !c.is_alphabetic());
        if word_len > 0 && before_ok && after_ok {
            out.push(',');
            i += word_len;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out.replace("\\text{,}", ",").replace("\\text{ , }", ",")
}

/// `\\\\frac` → `\\frac` (a doubled backslash before a command name).
fn fix_doubled_backslashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\'
            && chars.get(i + 1) == Some(&'\\')
            && chars.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic())
        {
            i += 1;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// `28 percent`, `28 pct`, `28 percentage` → `28%`.
fn percent_words(s: &str) -> String {
    let t = s.trim_end();
    // `\text{ percent}` is not here: Math-Verify turns its inner ` percent` into `\%` and then
    // drops the whole trailing `\text{…}` as a unit, so `64 \text{ percent}` is 64.
    if t.ends_with("\\text{ percent}") || t.ends_with("\\text{ percentage}") {
        return s.to_string();
    }
    for w in [
        "\\text{percentage}",
        "\\text{percent}",
        "\\text{pct}",
        "percentage",
        "percent",
        "pct",
    ] {
        if let Some(head) = t.strip_suffix(w) {
            if head.ends_with(|c: char| c.is_ascii_digit() || c == ' ' || c == '$' || c == '}') {
                return format!("{}%", head.trim_end().trim_end_matches('$'));
            }
        }
    }
    s.to_string()
}

/// `1,234,567` → `1234567` when the commas group digits by three. Bare lists like `1,2,3` are
/// left alone, and so is anything that is not a single number.
fn remove_comma_thousands(s: &str) -> String {
    let t = s.trim();
    let body = t.strip_prefix('-').unwrap_or(t);
    let (int_part, frac) = match body.find('.') {
        Some(p) => (&body[..p], &body[p..]),
        None => (body, ""),
    };
    let groups: Vec<&str> = int_part.split(',').collect();
    let ok = groups.len() > 1
        && !groups[0].is_empty()
        && groups[0].len() <= 3
        && groups[0].bytes().all(|b| b.is_ascii_digit())
        && groups[1..]
            .iter()
            .all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
        && frac.bytes().skip(1).all(|b| b.is_ascii_digit());
    if ok {
        t.replace(',', "")
    } else {
        s.to_string()
    }
}

/// Drops a leading "x =" style label only when followed by nothing mathematical before it —
/// kept minimal: removes leading `\text{...}:`-style captions such as `\text{Answer:}`.
fn strip_leading_words(s: &str) -> String {
    let t = s.trim_start();
    for p in ["\\text{Answer:}", "Answer:", "answer:"] {
        if let Some(r) = t.strip_prefix(p) {
            return r.trim_start().to_string();
        }
    }
    s.to_string()
}

/// Lower-cased letters and digits of a text answer (`\text{East}` → `east`), used to compare
/// word answers; `None` for answers that are math rather than words.
pub(crate) fn text_key(s: &str) -> Option<String> {
    let mut t = s.to_string();
    // Longest names first, so `\textbf` is not read as `\text` + `bf`.
    for cmd in [
        "\\operatorname",
        "\\textnormal",
        "\\textbf",
        "\\textit",
        "\\textrm",
        "\\mathrm",
        "\\mathbf",
        "\\mathit",
        "\\text",
        "\\mbox",
    ] {
        if t.contains(cmd) {
            t = t.replace(cmd, "");
        }
    }
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    if letters < 2 || t.contains('\\') {
        // A single letter in parentheses is a multiple-choice option: `(C)` ↔ `C`.
        let core: String = t.chars().filter(|c| !"(){} .".contains(*c)).collect();
        if core.chars().count() == 1 && core.chars().all(|c| c.is_ascii_uppercase()) {
            return Some(core.to_ascii_lowercase());
        }
        return None;
    }
    if t.chars().any(|c| "=+*/^<>_|".contains(c)) {
        return None;
    }
    let key: String = t
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ',')
        .flat_map(char::to_lowercase)
        .collect();
    if key.is_empty() {
        None
    } else {
        Some(key)
    }
}

/// Math-Verify's `should_treat_as_complex`: a standalone `i` (`6 - 5 i`, `1+i`, but not `5i`),
/// `\mathbb{C}`, `\det`, real/imaginary parts. Its symbols are then complex rather than real,
/// so `6-5i` and `6-5 i` are different answers there; distill mirrors that by naming the
/// variables of such answers apart.
pub(crate) fn treated_as_complex(s: &str) -> bool {
    const MARKERS: [&str; 15] = [
        "\\mathbb{C}",
        "\\text{i}",
        "\\mathrm{i}",
        "\\det",
        "\\operatorname{tr}",
        "\\operatorname{rank}",
        "\\text{rank}",
        "\\arg{",
        "\\Re{",
        "\\Im{",
        "\\operatorname{Re}",
        "\\operatorname{Im}",
        "\\text{Re}",
        "\\text{Im}",
        "\\imath",
    ];
    if MARKERS.iter().any(|m| s.contains(m)) {
        return true;
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().any(|(k, &c)| {
        c == 'i' && !word(k.checked_sub(1).map(|j| chars[j])) && !word(chars.get(k + 1).copied())
    })
}

/// `14 {, }916` → `14,916`: Math-Verify's `\s*\{\s*,\s*\}` → `,`.
fn brace_commas(s: &str) -> String {
    if !s.contains('{') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('{') {
        let inner = rest[p + 1..].trim_start();
        if let Some(after) = inner.strip_prefix(',').map(str::trim_start) {
            if let Some(tail) = after.strip_prefix('}') {
                out.push_str(rest[..p].trim_end());
                out.push(',');
                rest = tail;
                continue;
            }
        }
        out.push_str(&rest[..=p]);
        rest = &rest[p + 1..];
    }
    out.push_str(rest);
    out
}
