//! Matrix arithmetic inside an answer (`A + B`, `2M`, `M N`, `M^2`), evaluated entry by entry
//! into one matrix, as Math-Verify (sympy) does before comparing.

use crate::ast::{Answer, Expr};
use crate::lexer::Tok;
use crate::parse::Parser;

/// Largest power of a matrix expanded.
const MAX_POWER: i64 = 8;
/// Largest side of a matrix multiplied (entries grow as sums of products).
const MAX_SIDE: usize = 8;

type M = Vec<Vec<Expr>>;

impl Parser {
    /// `k? M (·? N)* (^n)? ((+|-) …)*` starting at a `\begin{…matrix}`; `scale` is a scalar
    /// already read in front (`2 \begin{pmatrix}…`).
    pub(crate) fn matrix_expr(&mut self, scale: Option<Expr>) -> Option<Answer> {
        let mut acc = self.matrix_term()?;
        if let Some(k) = scale {
            acc = scaled(&k, &acc);
        }
        loop {
            let neg = match self.peek() {
                Some(Tok::Plus) => false,
                Some(Tok::Minus) => true,
                _ => break,
            };
            self.pos += 1;
            let k = self.scalar_prefix();
            let mut t = self.matrix_term()?;
            if let Some(k) = k {
                t = scaled(&k, &t);
            }
            if neg {
                t = scaled(&Expr::int(-1), &t);
            }
            acc = add(&acc, &t)?;
        }
        Some(Answer::Matrix(acc))
    }

    /// A number in front of a matrix after `+`/`-` (`+ 2\begin{pmatrix}…`).
    fn scalar_prefix(&mut self) -> Option<Expr> {
        if let Some(Tok::Num(n)) = self.peek() {
            let n = n.clone();
            if matches!(self.peek_at(1), Some(Tok::Cmd(c)) if c == "begin") {
                self.pos += 1;
                return crate::parse_expr::number(&n);
            }
        }
        None
    }

    /// Matrices multiplied by juxtaposition or `\cdot`, with an optional integer power.
    fn matrix_term(&mut self) -> Option<M> {
        let mut acc = self.matrix_atom()?;
        loop {
            let star = self.peek() == Some(&Tok::Star)
                && matches!(self.peek_at(1), Some(Tok::Cmd(c)) if c == "begin");
            if star {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(Tok::Cmd(c)) if c == "begin") {
                break;
            }
            let rhs = self.matrix_atom()?;
            acc = mul(&acc, &rhs)?;
        }
        Some(acc)
    }

    fn matrix_atom(&mut self) -> Option<M> {
        if !matches!(self.peek(), Some(Tok::Cmd(c)) if c == "begin") {
            return None;
        }
        let Answer::Matrix(m) = self.matrix()? else {
            return None;
        };
        if self.eat(&Tok::Caret) {
            let k = match self.peek()?.clone() {
                Tok::Num(n) => {
                    self.pos += 1;
                    n.parse::<i64>().ok()?
                }
                Tok::LBrace => {
                    self.pos += 1;
                    let Tok::Num(n) = self.peek()?.clone() else {
                        return None;
                    };
                    self.pos += 1;
                    if !self.eat(&Tok::RBrace) {
                        return None;
                    }
                    n.parse::<i64>().ok()?
                }
                _ => return None,
            };
            if !(1..=MAX_POWER).contains(&k) {
                return None;
            }
            let mut acc = m.clone();
            for _ in 1..k {
                acc = mul(&acc, &m)?;
            }
            return Some(acc);
        }
        Some(m)
    }
}

fn scaled(k: &Expr, m: &M) -> M {
    m.iter()
        .map(|r| {
            r.iter()
                .map(|x| Expr::Mul(vec![k.clone(), x.clone()]))
                .collect()
        })
        .collect()
}

fn add(a: &M, b: &M) -> Option<M> {
    if a.len() != b.len() || a.iter().zip(b).any(|(r, s)| r.len() != s.len()) {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .map(|(r, s)| {
                r.iter()
                    .zip(s)
                    .map(|(x, y)| Expr::Add(vec![x.clone(), y.clone()]))
                    .collect()
            })
            .collect(),
    )
}

fn mul(a: &M, b: &M) -> Option<M> {
    let inner = a.first()?.len();
    let cols = b.first()?.len();
    if inner != b.len() || a.len() > MAX_SIDE || cols > MAX_SIDE || inner > MAX_SIDE {
        return None;
    }
    Some(
        a.iter()
            .map(|row| {
                (0..cols)
                    .map(|j| {
                        Expr::Add(
                            (0..inner)
                                .map(|k| Expr::Mul(vec![row[k].clone(), b[k][j].clone()]))
                                .collect(),
                        )
                    })
                    .collect()
            })
            .collect(),
    )
}
