//! The public grading entry points: normalise, parse, compare.

use crate::ast::Answer;
use crate::candidates::Cand;
use crate::normalize::{normalize, text_key, treated_as_complex};
use crate::{compare, extract, lexer, parse, Grade, Verdict};

/// An answer prepared for comparison: its cleaned text, word key and parse (any may be absent).
pub(crate) struct Prepared {
    norm: String,
    text: Option<String>,
    parsed: Option<Answer>,
    /// Math-Verify would read this answer's symbols as complex (see `treated_as_complex`).
    complex: bool,
}

impl Prepared {
    /// Gold answers must yield something comparable; otherwise the gold is unparseable.
    fn usable(&self) -> bool {
        !self.norm.is_empty() && (self.parsed.is_some() || self.text.is_some())
    }
}

pub(crate) fn prepare(s: &str) -> Prepared {
    let Some(norm) = normalize(s) else {
        return Prepared {
            norm: String::new(),
            text: None,
            parsed: None,
            complex: false,
        };
    };
    let text = text_key(&norm);
    let complex = treated_as_complex(&norm);
    let mut parsed = parse_str(&norm);
    if complex {
        if let Some(p) = parsed.as_mut() {
            p.rename_vars(&|v| format!("{v}\u{2102}"));
        }
    }
    Prepared {
        norm,
        text,
        parsed,
        complex,
    }
}

/// A gold answer: a bare answer, or a text holding one (several boxes form a list, as in
/// `\boxed{1} and \boxed{2}`; otherwise the answer is extracted like a response's).
pub(crate) fn prepare_gold(s: &str) -> Prepared {
    // A gold written with math delimiters or boxes (a whole reference solution) is read the way
    // Math-Verify reads it: its extracted answer. A bare gold is the answer itself.
    if has_math_delimiters(s) {
        if let Some(c) = extract::extract_candidate(s) {
            let q = prepare(&c.text());
            if q.usable() {
                return q;
            }
        }
    }
    let boxes = extract::extract_final_boxes(s);
    if boxes.len() > 1 {
        let joined = prepare(&boxes.join(", "));
        if joined.usable() {
            return joined;
        }
    }
    // Only prose ("The answer is 5") is searched for an answer; a broken bare gold (`1+`)
    // stays unparseable rather than being read as the number inside it.
    let words = s
        .split_whitespace()
        .filter(|w| w.len() >= 2 && w.chars().all(char::is_alphabetic))
        .count();
    if words >= 3 {
        prepare_lenient(s)
    } else {
        prepare(s)
    }
}

/// `$…$` (an unescaped dollar), `\(`, `\[` or a box.
fn has_math_delimiters(s: &str) -> bool {
    s.contains("\\(")
        || s.contains("\\[")
        || s.contains("\\boxed")
        || s.char_indices()
            .any(|(i, c)| c == '$' && (i == 0 || s.as_bytes()[i - 1] != b'\\'))
}

/// True when `s` is an answer the grader can compare (Math-Verify skips candidates that do not
/// parse, so extraction asks this of each).
pub(crate) fn parses(s: &str) -> bool {
    // A box too long to grade is still the answer (graded wrong), never skipped in favour of
    // an earlier number.
    s.chars().count() > crate::normalize::MAX_ANSWER_CHARS || prepare(s).usable()
}

/// `prepare`, falling back to the extracted answer when the text is not one itself.
fn prepare_lenient(s: &str) -> Prepared {
    let p = prepare(s);
    if p.usable() {
        return p;
    }
    match extract::extract_answer(s) {
        Some(a) if a.trim() != s.trim() => {
            let q = prepare(&a);
            if q.usable() {
                q
            } else {
                p
            }
        }
        _ => p,
    }
}

/// Lex and parse; on failure retry with only the part after the last `=` (Math-Verify's
/// fallback for `a = b = c` chains it cannot read).
fn parse_str(s: &str) -> Option<Answer> {
    let parsed = lexer::lex(s).and_then(parse::parse_answer);
    if parsed.is_some() {
        return parsed;
    }
    if !s.contains([',', ';']) {
        if let Some(p) = s.rfind('=') {
            let tail = &s[p + 1..];
            return lexer::lex(tail).and_then(parse::parse_answer);
        }
    }
    None
}

fn prepared_eq(g: &Prepared, p: &Prepared) -> bool {
    if p.norm.is_empty() {
        return false;
    }
    // Identical strings are equal (Math-Verify's string fallback: `$D = (0, 1)$` vs itself),
    // but only identical ones — `2 000` is not `2000`.
    if g.complex == p.complex && g.norm.trim() == p.norm.trim() {
        return true;
    }
    if let (Some(a), Some(b)) = (&g.text, &p.text) {
        if a == b {
            return true;
        }
    }
    match (&g.parsed, &p.parsed) {
        (Some(a), Some(b)) => compare::answers_eq(a, b),
        _ => false,
    }
}

/// Grades a bare answer (already extracted) against a gold answer.
pub fn grade_answer(gold: &str, answer: &str) -> Verdict {
    let g = prepare_gold(gold);
    if !g.usable() {
        tracing::debug!(gold, "unparseable gold answer");
        return Verdict::UnparseableGold;
    }
    if prepared_eq(&g, &prepare_lenient(answer)) {
        Verdict::Correct
    } else {
        Verdict::Incorrect
    }
}

/// True when two answers denote the same mathematical object (symmetric use for voting; an
/// unparseable or empty answer equals nothing).
pub fn answers_equivalent(a: &str, b: &str) -> bool {
    let (pa, pb) = (prepare(a), prepare(b));
    pa.usable() && pb.usable() && (prepared_eq(&pa, &pb) || prepared_eq(&pb, &pa))
}

/// Equivalence-class id per answer (`None` for missing answers), classes numbered by first
/// appearance, for cons@k majority voting. Each answer is parsed once.
pub fn cluster_answers(answers: &[Option<String>]) -> Vec<Option<usize>> {
    let mut reps: Vec<Prepared> = Vec::new();
    answers
        .iter()
        .map(|a| {
            let p = prepare(a.as_deref()?);
            if !p.usable() {
                // Unreadable answers still vote as themselves (by exact text).
                if let Some(i) = reps
                    .iter()
                    .position(|r| !r.norm.is_empty() && r.norm == p.norm)
                {
                    return Some(i);
                }
                if p.norm.is_empty() {
                    return None;
                }
            } else if let Some(i) = reps
                .iter()
                .position(|r| r.usable() && (prepared_eq(r, &p) || prepared_eq(&p, r)))
            {
                return Some(i);
            }
            reps.push(p);
            Some(reps.len() - 1)
        })
        .collect()
}

pub(crate) fn grade_response(gold: &str, response: &str) -> Grade {
    grade_prepared(&prepare_gold(gold), response)
}

/// A gold answer parsed once and reused for many responses (k samples per problem).
pub struct GoldAnswer {
    prepared: Prepared,
}

impl GoldAnswer {
    /// Parses `gold`; an unparseable gold grades every response as `UnparseableGold`.
    pub fn new(gold: &str) -> GoldAnswer {
        let prepared = prepare_gold(gold);
        if !prepared.usable() {
            tracing::debug!(gold, "unparseable gold answer");
        }
        GoldAnswer { prepared }
    }

    /// False when the gold could not be understood.
    pub fn is_parseable(&self) -> bool {
        self.prepared.usable()
    }

    /// Same as [`crate::grade`] with this gold, without re-parsing it.
    pub fn grade(&self, response: &str) -> Grade {
        grade_prepared(&self.prepared, response)
    }

    /// Same as [`grade_answer`] with this gold, for an already extracted answer.
    pub fn grade_answer(&self, answer: &str) -> Verdict {
        if !self.prepared.usable() {
            Verdict::UnparseableGold
        } else if prepared_eq(&self.prepared, &prepare_lenient(answer)) {
            Verdict::Correct
        } else {
            Verdict::Incorrect
        }
    }
}

fn grade_prepared(g: &Prepared, response: &str) -> Grade {
    // The answer that parsed during extraction is kept, not prepared a second time.
    let last: std::cell::RefCell<Option<(String, Prepared)>> = std::cell::RefCell::new(None);
    let parses_keep = |s: &str| {
        if s.chars().count() > crate::normalize::MAX_ANSWER_CHARS {
            return true;
        }
        let p = prepare(s);
        let ok = p.usable();
        if ok {
            *last.borrow_mut() = Some((s.to_string(), p));
        }
        ok
    };
    let cand = extract::extract_candidate_with(response, &parses_keep);
    let extracted = cand.as_ref().map(Cand::text);
    if !g.usable() {
        return Grade {
            verdict: Verdict::UnparseableGold,
            extracted,
        };
    }
    let Some(answer) = extracted else {
        return Grade {
            verdict: Verdict::Incorrect,
            extracted: None,
        };
    };
    // Math-Verify also compares the number's text without its percent sign: a plain `23%`
    // matches a gold `23` that way (a LaTeX `23\%` does not).
    let percent_text = match &cand {
        Some(Cand::Number(n)) => n.strip_suffix('%').is_some_and(|t| t == g.norm.trim()),
        // `$\boxed{10}$ percent`: Math-Verify's string form of the segment is `10`.
        Some(Cand::Latex(v)) if v.len() == 1 => v[0]
            .strip_suffix(" percent")
            .and_then(normalize)
            .is_some_and(|t| t == g.norm.trim()),
        _ => false,
    };
    let prepared = match last.into_inner() {
        Some((s, p)) if s == answer => p,
        _ => prepare(&answer),
    };
    let verdict = if percent_text || prepared_eq(g, &prepared) {
        Verdict::Correct
    } else {
        Verdict::Incorrect
    };
    Grade {
        verdict,
        extracted: Some(answer),
    }
}
