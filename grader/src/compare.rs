//! Structural comparison of parsed answers: scalars by value, collections by their rules
//! (sets unordered, tuples ordered, intervals by ends), relations by their content.

use crate::ast::{Answer, Const, Expr, RelOp};
use crate::eval::{exact, numeric, C};
use num_rational::BigRational;

/// Points at which expressions with variables are compared.
const SAMPLE_POINTS: usize = 8;
/// Largest collection compared element by element.
const MAX_ELEMENTS: usize = 64;

/// True when `gold` and `pred` denote the same thing.
pub(crate) fn answers_eq(gold: &Answer, pred: &Answer) -> bool {
    let gold = expand(gold);
    let pred = expand(pred);
    eq(&gold, &pred, 0)
}

/// Rewrites `a ± b` into the set `{a + b, a - b}`.
fn expand(a: &Answer) -> Answer {
    match a {
        Answer::Expr(e) if e.has_plus_minus() => {
            let mut out = vec![e.clone()];
            for _ in 0..3 {
                if !out.iter().any(Expr::has_plus_minus) {
                    break;
                }
                out = out
                    .iter()
                    .flat_map(|x| {
                        if x.has_plus_minus() {
                            x.expand_plus_minus()
                        } else {
                            vec![x.clone()]
                        }
                    })
                    .collect();
            }
            Answer::Set(out.into_iter().map(Answer::Expr).collect())
        }
        Answer::List(v)
            if v.iter()
                .any(|x| matches!(x, Answer::Expr(e) if e.has_plus_minus())) =>
        {
            let mut items = Vec::new();
            for x in v {
                match expand(x) {
                    Answer::Set(s) if matches!(x, Answer::Expr(_)) => items.extend(s),
                    other => items.push(other),
                }
            }
            Answer::List(items)
        }
        _ => a.clone(),
    }
}

fn eq(g: &Answer, p: &Answer, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    if g == p {
        return true;
    }
    use Answer as A;
    match (g, p) {
        (A::Expr(a), A::Expr(b)) => exprs_eq(a, b),
        (A::Rel(ge, gops), A::Rel(pe, pops)) => rels_eq(ge, gops, pe, pops),
        (A::Rel(ge, gops), other) if is_set_like(other) => {
            // Math-Verify turns a gold relation into a set only when the prediction is one.
            rel_to_set(ge, gops).is_some_and(|s| eq(&s, other, depth + 1))
        }
        (A::Rel(ge, gops), other) if !matches!(other, A::Rel(..)) => {
            // `x = 3` ↔ `3`: an assignment's value is its last right-hand side (`7 = 11a + c`
            // is an equation, not an assignment, and has no single value).
            gops.iter().all(|o| *o == RelOp::Eq)
                && ge.len() >= 2
                && only_symbols(&ge[0])
                && eq(
                    &expand(&A::Expr(ge[ge.len() - 1].clone())),
                    other,
                    depth + 1,
                )
        }
        (other, A::Rel(pe, pops)) if !matches!(other, A::Rel(..)) && !is_set_like(other) => {
            pops.iter().all(|o| *o == RelOp::Eq)
                && pe.len() >= 2
                && eq(
                    other,
                    &expand(&A::Expr(pe[pe.len() - 1].clone())),
                    depth + 1,
                )
        }
        (
            A::Interval {
                lo: a,
                hi: b,
                lo_closed: ac,
                hi_closed: bc,
            },
            A::Interval {
                lo: c,
                hi: d,
                lo_closed: cc,
                hi_closed: dc,
            },
        ) => ac == cc && bc == dc && exprs_eq(a, c) && exprs_eq(b, d),
        (
            A::Tuple(t),
            A::Interval {
                lo,
                hi,
                lo_closed: false,
                hi_closed: false,
            },
        )
        | (
            A::Interval {
                lo,
                hi,
                lo_closed: false,
                hi_closed: false,
            },
            A::Tuple(t),
        ) => {
            t.len() == 2
                && eq(&t[0], &A::Expr(lo.clone()), depth + 1)
                && eq(&t[1], &A::Expr(hi.clone()), depth + 1)
        }
        (A::Matrix(a), A::Matrix(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(r, s)| {
                    r.len() == s.len() && r.iter().zip(s).all(|(x, y)| exprs_eq(x, y))
                })
        }
        (A::Tuple(a), A::Tuple(b) | A::List(b) | A::Set(b)) => ordered_eq(a, b, depth),
        (A::Set(a) | A::List(a), A::Set(b) | A::List(b) | A::Tuple(b)) => unordered_eq(a, b, depth),
        (A::Union(a), A::Union(b)) => unordered_eq(a, b, depth),
        // A single value against a one-element collection.
        // (`8, 8` is the set {8}: duplicates do not count.)
        (A::Set(a) | A::List(a), single) | (single, A::Set(a) | A::List(a))
            if !is_collection(single) && a.len() <= MAX_ELEMENTS && dedup(a, depth).len() == 1 =>
        {
            eq(&a[0], single, depth + 1)
        }
        _ => false,
    }
}

/// `x`, `f(x)`, `x_1`, `ab`: a left side made of names only, as in an assignment.
fn only_symbols(e: &Expr) -> bool {
    match e {
        Expr::Var(_) => true,
        Expr::Mul(v) => v.iter().all(only_symbols),
        Expr::Func(_, v) => v.iter().all(only_symbols),
        // Ratios of names: `A:B = 1`, `\frac{NO}{BO} = …`.
        Expr::Div(a, b) => only_symbols(a) && only_symbols(b),
        _ => false,
    }
}

fn is_collection(a: &Answer) -> bool {
    matches!(
        a,
        Answer::Set(_) | Answer::List(_) | Answer::Tuple(_) | Answer::Union(_)
    )
}

fn is_set_like(a: &Answer) -> bool {
    matches!(
        a,
        Answer::Interval { .. } | Answer::Union(_) | Answer::Tuple(_)
    )
}

fn ordered_eq(a: &[Answer], b: &[Answer], depth: usize) -> bool {
    a.len() == b.len()
        && a.len() <= MAX_ELEMENTS
        && a.iter().zip(b).all(|(x, y)| eq(x, y, depth + 1))
}

fn unordered_eq(a: &[Answer], b: &[Answer], depth: usize) -> bool {
    // Duplicates do not change a set: `{1, 1, 2}` = `{1, 2}`.
    let a = dedup(a, depth);
    let b = dedup(b, depth);
    if a.len() != b.len() || a.len() > MAX_ELEMENTS {
        return false;
    }
    let mut used = vec![false; b.len()];
    'outer: for x in &a {
        for (j, y) in b.iter().enumerate() {
            if !used[j] && eq(x, y, depth + 1) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

fn dedup(v: &[Answer], depth: usize) -> Vec<&Answer> {
    let mut out: Vec<&Answer> = Vec::new();
    for x in v.iter().take(MAX_ELEMENTS + 1) {
        if !out.iter().any(|y| eq(y, x, depth + 1)) {
            out.push(x);
        }
    }
    out
}

/// `a < x < b`, `x ≥ 2`, … as an interval in the single variable.
fn rel_to_set(es: &[Expr], ops: &[RelOp]) -> Option<Answer> {
    let neg_inf = Expr::Neg(Box::new(Expr::Const(Const::Inf)));
    let pos_inf = Expr::Const(Const::Inf);
    let symbolic = |e: &Expr| {
        let mut v = Vec::new();
        e.vars(&mut v);
        !v.is_empty()
    };
    match (es, ops) {
        ([a, Expr::Func(f, x), b], [o1, o2])
            if f == "abs" && x.len() == 1 && symbolic(&x[0]) && !symbolic(a) && !symbolic(b) =>
        {
            abs_band(a, b, *o1, *o2)
        }
        ([a, mid, b], [o1, o2]) if symbolic(mid) && !symbolic(a) && !symbolic(b) => {
            let (lo, hi, lc, hc) = match (o1, o2) {
                (RelOp::Lt | RelOp::Le, RelOp::Lt | RelOp::Le) => {
                    (a, b, *o1 == RelOp::Le, *o2 == RelOp::Le)
                }
                (RelOp::Gt | RelOp::Ge, RelOp::Gt | RelOp::Ge) => {
                    (b, a, *o2 == RelOp::Ge, *o1 == RelOp::Ge)
                }
                _ => return None,
            };
            Some(Answer::Interval {
                lo: lo.clone(),
                hi: hi.clone(),
                lo_closed: lc,
                hi_closed: hc,
            })
        }
        ([Expr::Var(_), b], [op]) => Some(match op {
            RelOp::Lt | RelOp::Le => Answer::Interval {
                lo: neg_inf,
                hi: b.clone(),
                lo_closed: false,
                hi_closed: *op == RelOp::Le,
            },
            RelOp::Gt | RelOp::Ge => Answer::Interval {
                lo: b.clone(),
                hi: pos_inf,
                lo_closed: *op == RelOp::Ge,
                hi_closed: false,
            },
            _ => return None,
        }),
        ([a, Expr::Var(_)], [op]) => {
            let flipped = match op {
                RelOp::Lt => RelOp::Gt,
                RelOp::Le => RelOp::Ge,
                RelOp::Gt => RelOp::Lt,
                RelOp::Ge => RelOp::Le,
                _ => return None,
            };
            rel_to_set(&[Expr::Var(String::new()), a.clone()], &[flipped])
        }
        _ => None,
    }
}

/// `a ≤ |x| ≤ b` with `0 < a`: the union `[-b, -a] ∪ [a, b]` (ends as the relations say).
fn abs_band(a: &Expr, b: &Expr, o1: RelOp, o2: RelOp) -> Option<Answer> {
    let (lo, hi, lc, hc) = match (o1, o2) {
        (RelOp::Lt | RelOp::Le, RelOp::Lt | RelOp::Le) => (a, b, o1 == RelOp::Le, o2 == RelOp::Le),
        (RelOp::Gt | RelOp::Ge, RelOp::Gt | RelOp::Ge) => (b, a, o2 == RelOp::Ge, o1 == RelOp::Ge),
        _ => return None,
    };
    if exact(lo).is_none_or(|v| v <= BigRational::from_integer(0.into())) {
        return None;
    }
    let neg = |e: &Expr| Expr::Neg(Box::new(e.clone()));
    Some(Answer::Union(vec![
        Answer::Interval {
            lo: neg(hi),
            hi: neg(lo),
            lo_closed: hc,
            hi_closed: lc,
        },
        Answer::Interval {
            lo: lo.clone(),
            hi: hi.clone(),
            lo_closed: lc,
            hi_closed: hc,
        },
    ]))
}

fn rels_eq(ge: &[Expr], gops: &[RelOp], pe: &[Expr], pops: &[RelOp]) -> bool {
    let all_eq = |ops: &[RelOp]| ops.iter().all(|o| *o == RelOp::Eq);
    if all_eq(gops) && all_eq(pops) {
        // Compare first left side against last right side (`y = 2x = …`).
        let (gl, gr) = (&ge[0], &ge[ge.len() - 1]);
        let (pl, pr) = (&pe[0], &pe[pe.len() - 1]);
        if exprs_eq(gl, pl) && exprs_eq(gr, pr) {
            return true;
        }
        let gd = diff(gl, gr);
        let pd = diff(pl, pr);
        return proportional(&gd, &pd);
    }
    if gops.len() == 1 && pops.len() == 1 {
        let (g, p) = (gops[0], pops[0]);
        let gd = diff(&ge[0], &ge[1]);
        if g == p && exprs_eq(&gd, &diff(&pe[0], &pe[1])) {
            return true;
        }
        if flip(g) == Some(p) && exprs_eq(&gd, &diff(&pe[1], &pe[0])) {
            return true;
        }
    }
    if let (Some(a), Some(b)) = (rel_to_set(ge, gops), rel_to_set(pe, pops)) {
        return eq(&a, &b, 1);
    }
    gops == pops && ge.len() == pe.len() && ge.iter().zip(pe).all(|(a, b)| exprs_eq(a, b))
}

fn flip(o: RelOp) -> Option<RelOp> {
    Some(match o {
        RelOp::Lt => RelOp::Gt,
        RelOp::Le => RelOp::Ge,
        RelOp::Gt => RelOp::Lt,
        RelOp::Ge => RelOp::Le,
        RelOp::Eq => RelOp::Eq,
        RelOp::Ne => RelOp::Ne,
    })
}

fn diff(a: &Expr, b: &Expr) -> Expr {
    Expr::Add(vec![a.clone(), Expr::Neg(Box::new(b.clone()))])
}

/// True when `a = k·b` for one nonzero constant `k` at every sample point (same equation).
fn proportional(a: &Expr, b: &Expr) -> bool {
    let vars = vars_of(a, b);
    if vars.is_empty() {
        return false;
    }
    let mut ratio: Option<C> = None;
    let mut checked = 0;
    for k in 0..SAMPLE_POINTS {
        let env = sample_env(&vars, k);
        let (x, y) = (numeric(a, &env), numeric(b, &env));
        if !x.is_finite() || !y.is_finite() || y.abs() < 1e-12 {
            continue;
        }
        let q = div(x, y);
        match ratio {
            None => ratio = Some(q),
            Some(r0) => {
                if !close(r0, q, 1e-8) {
                    return false;
                }
            }
        }
        checked += 1;
    }
    checked >= 2 && ratio.is_some_and(|r| r.abs() > 1e-12)
}

fn div(x: C, y: C) -> C {
    let d = y.re * y.re + y.im * y.im;
    C {
        re: (x.re * y.re + x.im * y.im) / d,
        im: (x.im * y.re - x.re * y.im) / d,
    }
}

fn vars_of(a: &Expr, b: &Expr) -> Vec<String> {
    let mut v = Vec::new();
    a.vars(&mut v);
    b.vars(&mut v);
    v.sort();
    v
}

/// Deterministic pseudo-random values per (variable, point), of both signs and away from 0 and
/// ±1 so that coincidences like `x^2 = x` do not pass, and identities that hold only for
/// positive values (`\ln(x^2) = 2\ln x`, `\sqrt{x^2} = x`) fail as they do for real
/// variables in Math-Verify.
fn sample_env(vars: &[String], k: usize) -> Vec<(String, C)> {
    vars.iter()
        .enumerate()
        .map(|(j, name)| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in name.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 33;
            let u = (h >> 11) as f64 / (1u64 << 53) as f64;
            // Signs alternate over points and differ between variables, so every sign
            // combination of the first variables occurs.
            let negative = ((11 * k + 3) >> (j % 8)) & 1 == 1;
            let sign = if negative { -1.0 } else { 1.0 };
            (name.clone(), C::real(sign * (1.1 + 2.3 * u)))
        })
        .collect()
}

/// Relative closeness of two floats. A tolerance that could hide a difference of 1/4 means the
/// floats cannot decide (`\sqrt{2}\cdot 10^{20}` against the same plus one): not close.
fn close(a: C, b: C, rel: f64) -> bool {
    let scale = a.abs().max(b.abs()).max(1.0);
    if rel * scale >= 0.25 {
        return false;
    }
    (a.re - b.re).abs() <= rel * scale && (a.im - b.im).abs() <= rel * scale
}

/// Math-Verify rounds to 6 decimal places when a decimal literal is involved.
fn close_rounded(a: C, b: C) -> bool {
    let r = |v: f64| (v * 1e6).round();
    if a.re.abs() < 1e8 && a.im.abs() < 1e8 && b.re.abs() < 1e8 && b.im.abs() < 1e8 {
        (r(a.re) == r(b.re) && r(a.im) == r(b.im)) || close(a, b, 1e-12)
    } else {
        close(a, b, 1e-12)
    }
}

/// Both are the same infinity — only when both expressions contain `\infty`; an overflowed
/// float (`2^{1500}`) is a finite number the floats cannot compare.
fn both_infinite_same(a: C, b: C, ea: &Expr, eb: &Expr) -> bool {
    a.im == 0.0 && b.im == 0.0 && a.re.is_infinite() && a.re == b.re && ea.has_inf() && eb.has_inf()
}

/// Scalar equivalence: exact rationals first, then numeric evaluation (at sample points when
/// variables occur). Percentages match both readings (`50\%` = `50` = `0.5`).
pub(crate) fn exprs_eq(a: &Expr, b: &Expr) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Expr::Percent(x), Expr::Percent(y)) => return exprs_eq(x, y),
        (Expr::Percent(x), other) | (other, Expr::Percent(x)) => {
            // `50\%` is the number 0.5, never 50 (Math-Verify 0.8: `23\%` ≠ `23`).
            return scalar_eq(&Expr::Percent(x.clone()), other);
        }
        _ => {}
    }
    scalar_eq(a, b)
}

fn scalar_eq(a: &Expr, b: &Expr) -> bool {
    let decimal = a.has_decimal() || b.has_decimal();
    if let (Some(x), Some(y)) = (exact(a), exact(b)) {
        if x == y {
            return true;
        }
        if !decimal {
            return false;
        }
        // An exact integer is matched exactly, even by a decimal (`1` ≠ `1.0000001`), as in
        // Math-Verify; other values agree to 6 decimal places (`1/3` = `0.333333`).
        let exact_int = |v: &BigRational, e: &Expr| v.is_integer() && !e.has_decimal();
        if exact_int(&x, a) || exact_int(&y, b) {
            return false;
        }
        return rationals_round_eq(&x, &y);
    }
    let vars = vars_of(a, b);
    if vars.is_empty() {
        let (x, y) = (numeric(a, &[]), numeric(b, &[]));
        if both_infinite_same(x, y, a, b) {
            return true;
        }
        if !x.is_finite() || !y.is_finite() {
            return false;
        }
        return if decimal {
            close_rounded(x, y)
        } else {
            close(x, y, 1e-9)
        };
    }
    let mut checked = 0;
    for k in 0..SAMPLE_POINTS {
        let env = sample_env(&vars, k);
        let (x, y) = (numeric(a, &env), numeric(b, &env));
        if !x.is_finite() || !y.is_finite() {
            if x.is_finite() != y.is_finite() {
                return false;
            }
            continue;
        }
        if !close(x, y, 1e-8) {
            return false;
        }
        checked += 1;
    }
    // Nothing evaluable (symbolic sums, unknown functions): equal only in form, up to the
    // order of terms and factors (`\sum G_j G_{n-j}` = `\sum G_{n-j} G_j`).
    checked >= 2 || (checked == 0 && canonical(a) == canonical(b))
}

/// A printed form with the operands of sums and products sorted (commutativity only, so equal
/// forms are equal values).
fn canonical(e: &Expr) -> String {
    fn flat<'a>(e: &'a Expr, add: bool, out: &mut Vec<&'a Expr>) {
        match (e, add) {
            (Expr::Add(v), true) | (Expr::Mul(v), false) => {
                v.iter().for_each(|x| flat(x, add, out))
            }
            _ => out.push(e),
        }
    }
    match e {
        Expr::Add(_) | Expr::Mul(_) => {
            let add = matches!(e, Expr::Add(_));
            let mut parts = Vec::new();
            flat(e, add, &mut parts);
            let mut s: Vec<String> = parts.into_iter().map(canonical).collect();
            s.sort();
            format!("{}({})", if add { "+" } else { "*" }, s.join(","))
        }
        Expr::Num { value, .. } => value.to_string(),
        Expr::Const(c) => format!("{c:?}"),
        Expr::Var(v) => v.clone(),
        Expr::Neg(a) => format!("-({})", canonical(a)),
        Expr::Percent(a) => format!("%({})", canonical(a)),
        Expr::Div(a, b) => format!("/({},{})", canonical(a), canonical(b)),
        Expr::Pow(a, b) => format!("^({},{})", canonical(a), canonical(b)),
        Expr::PlusMinus(a, b) => format!("±({},{})", canonical(a), canonical(b)),
        Expr::Func(n, v) => format!(
            "{n}({})",
            v.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
    }
}

/// Equal after rounding both to 6 decimal places (exactly, in rationals).
fn rationals_round_eq(x: &BigRational, y: &BigRational) -> bool {
    let scale = BigRational::from_integer(1_000_000.into());
    let round = |v: &BigRational| (v * &scale).round();
    // Exact at every size: two values a whole unit apart never round alike.
    round(x) == round(y)
}
