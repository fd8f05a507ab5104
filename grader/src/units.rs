//! Unit removal as Math-Verify 0.8 (latex2sympy2_extended) does it: a trailing
//! `\text{…}`/`\mbox{…}` (with an optional `^2`) is dropped, then — twice — a unit word from its
//! list (plus `s`/`es`) at the very end, after a digit, `}` or a space. The list is Math-Verify's
//! own, odd entries included (`t`, `h`, `ab`): both sides of a comparison are cleaned alike, and
//! matching its verdicts is the point.

/// Math-Verify's unit words, in its order (case-sensitive).
const UNITS: [&str; 140] = [
    "integerpoint",
    "feet",
    "sue",
    "digit",
    "pound",
    "meal",
    "edge",
    "student",
    "children ticket",
    "multiple",
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m square",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "cent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
];

/// Drops trailing units the way Math-Verify does (see the module doc).
pub(crate) fn strip_units(s: &str) -> String {
    let mut t = strip_trailing_text(s).trim().to_string();
    for _ in 0..2 {
        match strip_unit_word(&t) {
            Some(u) if !u.is_empty() => t = u,
            _ => break,
        }
    }
    t
}

/// `5\text{ km/h}`, `36\mbox{ cm}^2` → `5`, `36`: from the first `\text{`/`\mbox{` whose
/// remainder ends the string (`}` plus an optional `^d`/`{^d}`), unless nothing would be left.
fn strip_trailing_text(s: &str) -> String {
    let t = s.trim_end();
    // An optional `^d` or `{^d}` (any digit) after the unit.
    let b = t.as_bytes();
    let n = b.len();
    let core = if n >= 2 && b[n - 2] == b'^' && b[n - 1].is_ascii_digit() {
        &t[..n - 2]
    } else if n >= 4
        && t.ends_with('}')
        && b[n - 4] == b'{'
        && b[n - 3] == b'^'
        && b[n - 2].is_ascii_digit()
    {
        &t[..n - 4]
    } else {
        t
    };
    if !core.ends_with('}') {
        return s.to_string();
    }
    // Math-Verify first renames `\mathrm`/`\mathbf`/`\mathit`/`\textbf`/… to `\text`.
    let first = [
        "\\text{",
        "\\mbox{",
        "\\textbf{",
        "\\textit{",
        "\\textrm{",
        "\\textnormal{",
        "\\mathrm{",
        "\\mathbf{",
        "\\mathit{",
    ]
    .iter()
    .filter_map(|c| core.find(c))
    .min();
    match first {
        Some(p) if !core[..p].trim().is_empty() => core[..p].trim_end().to_string(),
        _ => s.to_string(),
    }
}

/// One pass of the unit-word rule; `None` when no unit ends the string.
fn strip_unit_word(t: &str) -> Option<String> {
    let body = t.trim_end();
    // Every unit ends in a letter, `.`, `2`, `³` or `™`: most answers end otherwise.
    let last = body.chars().next_back()?;
    if !(last.is_alphabetic() || matches!(last, '.' | '2' | '³' | '™')) {
        return None;
    }
    let mut best: Option<usize> = None;
    for u in UNITS {
        // Cheap filter before the suffix comparisons: the unit (or its plural) must end here.
        if !(u.ends_with(last) || last == 's') {
            continue;
        }
        for suffix in ["", "s", "es"] {
            let Some(head) = body.strip_suffix(suffix).and_then(|h| h.strip_suffix(u)) else {
                continue;
            };
            // `(\d|\}|\s)\s*` before the unit: keep that character.
            let trimmed = head.trim_end();
            let keep = if trimmed.len() < head.len() {
                // At least one space: the space itself qualifies; keep up to the last
                // non-space (a digit/`}` there is kept too).
                Some(trimmed.len())
            } else {
                head.chars()
                    .next_back()
                    .filter(|c| c.is_ascii_digit() || *c == '}')
                    .map(|_| head.len())
            };
            if let Some(k) = keep {
                if best.is_none_or(|b| k < b) {
                    best = Some(k);
                }
            }
        }
    }
    best.map(|k| body[..k].trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_go_like_math_verify() {
        assert_eq!(strip_units("120\\text{ km/h}"), "120");
        assert_eq!(strip_units("36 \\mbox{ cm}^2"), "36");
        assert_eq!(strip_units("12 inches"), "12");
        assert_eq!(strip_units("5 sq m"), "5");
        assert_eq!(strip_units("5 dollars"), "5 dollars");
        assert_eq!(strip_units("\\text{even}"), "\\text{even}");
        assert_eq!(strip_units("x"), "x");
        assert_eq!(strip_units("3t"), "3");
    }
}
