//! String-level clean-up before lexing: delimiters, spacing macros, thousands separators,
//! degrees, currency and trailing units — the textual noise Math-Verify also discards.

/// Longest answer (in characters) that is graded; longer text is not a final answer.
pub(crate) const MAX_ANSWER_CHARS: usize = 2000;

/// Unit words dropped when they trail a value (`5 cm`, `12\text{ inches}`).
const UNITS: [&str; 70] = [
    "cm",
    "mm",
    "km",
    "m",
    "meter",
    "meters",
    "metre",
    "metres",
    "centimeter",
    "centimeters",
    "kilometer",
    "kilometers",
    "in",
    "inch",
    "inches",
    "ft",
    "feet",
    "foot",
    "yard",
    "yards",
    "mile",
    "miles",
    "mph",
    "kmh",
    "units",
    "unit",
    "sq",
    "square",
    "cubic",
    "degree",
    "degrees",
    "deg",
    "radian",
    "radians",
    "rad",
    "dollar",
    "dollars",
    "cent",
    "cents",
    "hour",
    "hours",
    "hr",
    "hrs",
    "minute",
    "minutes",
    "min",
    "mins",
    "second",
    "seconds",
    "sec",
    "s",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "kg",
    "g",
    "gram",
    "grams",
    "lb",
    "lbs",
    "pound",
    "pounds",
    "liter",
    "liters",
    "l",
];

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
        ("{, }", ""),
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
    t = strip_trailing_units(&t);
    t = remove_thin_space_thousands(&t);
    t = words_to_commas(&t);
    t = remove_comma_thousands(&t);
    t = strip_leading_words(&t);
    let t = t.trim().trim_end_matches(['.', ';']).trim();
    let t = t.strip_prefix('$').unwrap_or(t);
    Some(t.trim().to_string())
}

/// `1\,000` and `1\ 000` → `1000` (a thin space between digit groups).
fn remove_thin_space_thousands(s: &str) -> String {
    let mut out = s.to_string();
    for sep in ["\\,", "\\ ", "\\;", "\\:"] {
        let mut res = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(p) = rest.find(sep) {
            let before = &rest[..p];
            let after = &rest[p + sep.len()..];
            res.push_str(before);
            if res.ends_with('\\') {
                // Part of a `\\` row separator, not a spacing macro.
                res.push_str(sep);
                rest = after;
                continue;
            }
            let digit_before = res.chars().last().is_some_and(|c| c.is_ascii_digit());
            let three_after = after.len() >= 3
                && after.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                && !after.as_bytes().get(3).is_some_and(u8::is_ascii_digit);
            if !(digit_before && three_after) {
                res.push(' ');
            }
            rest = after;
        }
        res.push_str(rest);
        out = res;
    }
    out
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
    for w in [
        "percentage",
        "percent",
        "pct",
        "\\text{percent}",
        "\\text{ percent}",
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

/// Drops a trailing `\text{…}` unit or a known unit word after a value (`5\text{ cm}^2`).
fn strip_trailing_units(s: &str) -> String {
    let mut t = s.trim().to_string();
    for _ in 0..3 {
        let before = t.clone();
        // `^2`/`^3` after a unit.
        let core = t.trim_end();
        let core = core
            .strip_suffix("^2")
            .or_else(|| core.strip_suffix("^3"))
            .or_else(|| core.strip_suffix("^{2}"))
            .or_else(|| core.strip_suffix("^{3}"))
            .unwrap_or(core);
        if let Some(stripped) = strip_trailing_text_command(core) {
            if !stripped.trim().is_empty() {
                t = stripped;
            }
        } else {
            let words_end = core.trim_end();
            let start = words_end
                .char_indices()
                .rev()
                .find(|(_, c)| !c.is_ascii_alphabetic())
                .map_or(0, |(p, c)| p + c.len_utf8());
            let word = &words_end[start..];
            if !word.is_empty() && UNITS.contains(&word.to_ascii_lowercase().as_str()) {
                let head = &words_end[..start];
                let prev = head.chars().last();
                let after_value = prev.is_some_and(|c| c == ' ' || c.is_ascii_digit() || c == '}');
                // Avoid stripping a variable glued to a coefficient without space (`2m` is
                // stripped only when it is a unit word of 2+ letters).
                let glued_single = prev.is_some_and(|c| c.is_ascii_digit()) && word.len() == 1;
                if after_value && !glued_single && has_value_char(head) {
                    t = head.trim_end().to_string();
                }
            }
        }
        if t == before {
            break;
        }
    }
    t
}

fn has_value_char(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_ascii_digit() || c == '}' || c == ')')
}

/// If `s` ends with `\text{…}` (or `\mbox`, `\mathrm`) whose body is a unit phrase, returns `s`
/// without it.
fn strip_trailing_text_command(s: &str) -> Option<String> {
    let s = s.trim_end();
    if !s.ends_with('}') {
        return None;
    }
    for cmd in [
        "\\text",
        "\\mbox",
        "\\mathrm",
        "\\textrm",
        "\\textnormal",
        "\\textbf",
        "\\textit",
        "\\mathbf",
    ] {
        if let Some(p) = s.rfind(cmd) {
            let rest = s[p + cmd.len()..].trim_start();
            if let Some(body) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                if body.contains(['{', '}']) {
                    continue;
                }
                let words: Vec<&str> = body.split_whitespace().collect();
                let is_unit = !words.is_empty()
                    && words.iter().all(|w| {
                        let w = w.trim_matches(|c: char| !c.is_ascii_alphabetic());
                        w.is_empty() || w.chars().all(|c| c.is_ascii_alphabetic())
                    });
                if is_unit {
                    return Some(s[..p].trim_end().to_string());
                }
            }
        }
    }
    None
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
