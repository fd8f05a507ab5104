//! The small algebra an answer is parsed into.

use num_bigint::BigInt;
use num_rational::BigRational;

/// Named constants that cannot be exact rationals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Const {
    Pi,
    E,
    I,
    Inf,
}

/// A scalar expression. Numbers are exact rationals; `decimal` marks literals written with a
/// decimal point, which Math-Verify compares to 6 decimal places rather than exactly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Num {
        value: BigRational,
        decimal: bool,
    },
    Const(Const),
    Var(String),
    Add(Vec<Expr>),
    Mul(Vec<Expr>),
    Neg(Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    /// Built-in function (`sqrt`, `root`, `sin`, `log`, `abs`, `fact`, `binom`, …).
    Func(String, Vec<Expr>),
    /// `a ± b`; expanded into a two-element set before comparison.
    PlusMinus(Box<Expr>, Box<Expr>),
    /// `x\%`: equal to both `x` and `x/100`, as in Math-Verify.
    Percent(Box<Expr>),
}

impl Expr {
    pub(crate) fn int(v: i64) -> Expr {
        Expr::Num {
            value: BigRational::from_integer(BigInt::from(v)),
            decimal: false,
        }
    }

    /// True when the expression contains a `±` somewhere.
    pub(crate) fn has_plus_minus(&self) -> bool {
        match self {
            Expr::PlusMinus(..) => true,
            Expr::Num { .. } | Expr::Const(_) | Expr::Var(_) => false,
            Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => v.iter().any(Expr::has_plus_minus),
            Expr::Neg(a) | Expr::Percent(a) => a.has_plus_minus(),
            Expr::Div(a, b) | Expr::Pow(a, b) => a.has_plus_minus() || b.has_plus_minus(),
        }
    }

    /// The two readings of the first `±` (first with `+`, then with `-`).
    pub(crate) fn expand_plus_minus(&self) -> Vec<Expr> {
        fn go(e: &Expr, sign: bool, done: &mut bool) -> Expr {
            if *done {
                return e.clone();
            }
            match e {
                Expr::PlusMinus(a, b) => {
                    *done = true;
                    let b = if sign {
                        (**b).clone()
                    } else {
                        Expr::Neg(b.clone())
                    };
                    Expr::Add(vec![(**a).clone(), b])
                }
                Expr::Num { .. } | Expr::Const(_) | Expr::Var(_) => e.clone(),
                Expr::Add(v) => Expr::Add(v.iter().map(|x| go(x, sign, done)).collect()),
                Expr::Mul(v) => Expr::Mul(v.iter().map(|x| go(x, sign, done)).collect()),
                Expr::Func(n, v) => {
                    Expr::Func(n.clone(), v.iter().map(|x| go(x, sign, done)).collect())
                }
                Expr::Neg(a) => Expr::Neg(Box::new(go(a, sign, done))),
                Expr::Percent(a) => Expr::Percent(Box::new(go(a, sign, done))),
                Expr::Div(a, b) => {
                    let a = go(a, sign, done);
                    Expr::Div(Box::new(a), Box::new(go(b, sign, done)))
                }
                Expr::Pow(a, b) => {
                    let a = go(a, sign, done);
                    Expr::Pow(Box::new(a), Box::new(go(b, sign, done)))
                }
            }
        }
        let mut d1 = false;
        let mut d2 = false;
        vec![go(self, true, &mut d1), go(self, false, &mut d2)]
    }

    /// Free variables, sorted and deduplicated.
    pub(crate) fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Var(v) => {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Expr::Num { .. } | Expr::Const(_) => {}
            Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => v.iter().for_each(|x| x.vars(out)),
            Expr::Neg(a) | Expr::Percent(a) => a.vars(out),
            Expr::Div(a, b) | Expr::Pow(a, b) | Expr::PlusMinus(a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }

    /// Renames every variable (Math-Verify's real and complex symbols are distinct names).
    pub(crate) fn rename_vars(&mut self, f: &dyn Fn(&str) -> String) {
        match self {
            Expr::Var(v) => *v = f(v),
            Expr::Num { .. } | Expr::Const(_) => {}
            Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => {
                v.iter_mut().for_each(|x| x.rename_vars(f));
            }
            Expr::Neg(a) | Expr::Percent(a) => a.rename_vars(f),
            Expr::Div(a, b) | Expr::Pow(a, b) | Expr::PlusMinus(a, b) => {
                a.rename_vars(f);
                b.rename_vars(f);
            }
        }
    }

    /// True when `\infty` occurs: only then may an infinite float be a real infinity rather
    /// than an overflow (`2^{2000}` overflows f64 but is a finite number).
    pub(crate) fn has_inf(&self) -> bool {
        match self {
            Expr::Const(Const::Inf) => true,
            Expr::Num { .. } | Expr::Const(_) | Expr::Var(_) => false,
            Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => v.iter().any(Expr::has_inf),
            Expr::Neg(a) | Expr::Percent(a) => a.has_inf(),
            Expr::Div(a, b) | Expr::Pow(a, b) | Expr::PlusMinus(a, b) => a.has_inf() || b.has_inf(),
        }
    }

    /// True when a decimal literal occurs (then comparison rounds to 6 places).
    pub(crate) fn has_decimal(&self) -> bool {
        match self {
            Expr::Num { decimal, .. } => *decimal,
            Expr::Const(_) | Expr::Var(_) => false,
            Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => v.iter().any(Expr::has_decimal),
            Expr::Neg(a) | Expr::Percent(a) => a.has_decimal(),
            Expr::Div(a, b) | Expr::Pow(a, b) | Expr::PlusMinus(a, b) => {
                a.has_decimal() || b.has_decimal()
            }
        }
    }
}

/// Relation symbols in equations and inequalities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A whole answer: a scalar, a collection, an interval, a relation or a matrix (word answers
/// are compared by their text key instead).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Expr(Expr),
    /// Bare comma-separated values (`1, 2`): a set, but ordered against a tuple.
    List(Vec<Answer>),
    /// `\{…\}`.
    Set(Vec<Answer>),
    /// `(a, b, …)` — a two-element tuple also reads as an open interval.
    Tuple(Vec<Answer>),
    Interval {
        lo: Expr,
        hi: Expr,
        lo_closed: bool,
        hi_closed: bool,
    },
    Union(Vec<Answer>),
    Matrix(Vec<Vec<Expr>>),
    /// A chain `e0 op0 e1 op1 e2 …`.
    Rel(Vec<Expr>, Vec<RelOp>),
}

impl Answer {
    /// Renames every variable of every expression in the answer.
    pub(crate) fn rename_vars(&mut self, f: &dyn Fn(&str) -> String) {
        match self {
            Answer::Expr(e) => e.rename_vars(f),
            Answer::List(v) | Answer::Set(v) | Answer::Tuple(v) | Answer::Union(v) => {
                v.iter_mut().for_each(|x| x.rename_vars(f));
            }
            Answer::Interval { lo, hi, .. } => {
                lo.rename_vars(f);
                hi.rename_vars(f);
            }
            Answer::Matrix(rows) => rows
                .iter_mut()
                .flat_map(|r| r.iter_mut())
                .for_each(|x| x.rename_vars(f)),
            Answer::Rel(es, _) => es.iter_mut().for_each(|x| x.rename_vars(f)),
        }
    }
}
