//! Evaluation of expressions: exactly over the rationals where possible, otherwise numerically
//! over the complex numbers (so `\sqrt{-4}` and `3+4i` work). All work is bounded.

use crate::ast::{Const, Expr};
use num_bigint::BigInt;
use num_integer_free::{is_perfect_power, small_int};
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// Largest size (bits) an exact intermediate may reach. Beyond it the value is not evaluated
/// exactly, and the float fallback cannot tell `2^{70000}` from `2^{70001}` either, so such
/// comparisons end as "cannot decide → not equal" (see `compare`). 2^16 bits keeps every
/// operation well under a millisecond.
pub(crate) const MAX_EXACT_BITS: u64 = 1 << 16;

/// Exact rational value of `e`, or `None` when it is irrational, symbolic, or too large.
pub(crate) fn exact(e: &Expr) -> Option<BigRational> {
    let v = match e {
        Expr::Num { value, .. } => value.clone(),
        Expr::Const(_) | Expr::Var(_) | Expr::PlusMinus(..) => return None,
        Expr::Add(v) => {
            let mut acc = BigRational::zero();
            for x in v {
                acc += exact(x)?;
                if bits(&acc) > MAX_EXACT_BITS {
                    return None;
                }
            }
            acc
        }
        Expr::Mul(v) => {
            let mut acc = BigRational::one();
            for x in v {
                acc *= exact(x)?;
                if bits(&acc) > MAX_EXACT_BITS {
                    return None;
                }
            }
            acc
        }
        Expr::Neg(a) => -exact(a)?,
        Expr::Percent(a) => exact(a)? / BigRational::from_integer(BigInt::from(100)),
        Expr::Div(a, b) => {
            let b = exact(b)?;
            if b.is_zero() {
                return None;
            }
            exact(a)? / b
        }
        Expr::Pow(a, b) => {
            let base = exact(a)?;
            let exp = exact(b)?;
            exact_pow(&base, &exp)?
        }
        Expr::Func(name, args) => exact_func(name, args)?,
    };
    if bits(&v) > MAX_EXACT_BITS {
        return None;
    }
    Some(v)
}

fn bits(v: &BigRational) -> u64 {
    v.numer().bits() + v.denom().bits()
}

fn exact_pow(base: &BigRational, exp: &BigRational) -> Option<BigRational> {
    if exp.is_integer() {
        let k = exp.to_integer().to_i64()?;
        // `bits(base) - 1` because the denominator 1 of an integer base costs one bit.
        let size = bits(base).saturating_sub(1).max(1);
        if k.unsigned_abs() > MAX_EXACT_BITS
            || size.saturating_mul(k.unsigned_abs()) > MAX_EXACT_BITS
        {
            return None;
        }
        if k < 0 && base.is_zero() {
            return None;
        }
        return Some(num_traits::pow::Pow::pow(base, k as i32));
    }
    // Rational exponent p/q: exact only for perfect q-th powers (`8^{2/3}`, `4^{1/2}`).
    let q = small_int(exp.denom())?;
    let p = exp.numer().to_i64()?;
    if !(2..=12).contains(&q) || p.unsigned_abs() > 64 || base.is_negative() {
        return None;
    }
    let root = BigRational::new(
        is_perfect_power(base.numer(), q as u32)?,
        is_perfect_power(base.denom(), q as u32)?,
    );
    exact_pow(&root, &BigRational::from_integer(BigInt::from(p)))
}

fn exact_func(name: &str, args: &[Expr]) -> Option<BigRational> {
    let one = |k: usize| args.get(k).and_then(exact);
    match name {
        "sqrt" => exact_pow(&one(0)?, &BigRational::new(1.into(), 2.into())),
        "root" => {
            let n = one(1)?;
            if n.is_zero() {
                return None;
            }
            exact_pow(&one(0)?, &n.recip())
        }
        "abs" => Some(one(0)?.abs()),
        "floor" => Some(one(0)?.floor()),
        "ceil" => Some(one(0)?.ceil()),
        "fact" => {
            let n = one(0)?;
            if !n.is_integer() {
                return None;
            }
            let n = n.to_integer().to_u64()?;
            if n > 3000 {
                return None;
            }
            let mut acc = BigInt::one();
            for k in 2..=n {
                acc *= k;
            }
            Some(BigRational::from_integer(acc))
        }
        "binom" => {
            let (n, k) = (one(0)?, one(1)?);
            if !n.is_integer() || !k.is_integer() {
                return None;
            }
            let (n, k) = (n.to_integer().to_i64()?, k.to_integer().to_i64()?);
            if k < 0 || n < 0 || k > n {
                return Some(BigRational::zero());
            }
            let k = k.min(n - k);
            if k > 3000 {
                return None;
            }
            let mut acc = BigInt::one();
            for j in 0..k {
                acc = acc * (n - j) / (j + 1);
            }
            Some(BigRational::from_integer(acc))
        }
        _ => None,
    }
}

/// Helpers on integers kept local (no extra dependency).
mod num_integer_free {
    use num_bigint::BigInt;
    use num_traits::{Signed, ToPrimitive};

    /// The exact q-th root of `n` when `n` is a perfect q-th power.
    pub(crate) fn is_perfect_power(n: &BigInt, q: u32) -> Option<BigInt> {
        if n.is_negative() {
            return None;
        }
        let r = n.nth_root(q);
        if num_traits::pow(r.clone(), q as usize) == *n {
            Some(r)
        } else {
            None
        }
    }

    pub(crate) fn small_int(n: &BigInt) -> Option<i64> {
        n.to_i64()
    }
}

/// A complex number for numeric evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct C {
    pub re: f64,
    pub im: f64,
}

const NAN: C = C {
    re: f64::NAN,
    im: 0.0,
};

impl C {
    pub(crate) fn real(re: f64) -> C {
        C { re, im: 0.0 }
    }
    pub(crate) fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
    fn add(self, o: C) -> C {
        C {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn mul(self, o: C) -> C {
        if self.im == 0.0 && o.im == 0.0 {
            return C::real(self.re * o.re);
        }
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn div(self, o: C) -> C {
        if self.im == 0.0 && o.im == 0.0 {
            return if o.re == 0.0 {
                NAN
            } else {
                C::real(self.re / o.re)
            };
        }
        let d = o.re * o.re + o.im * o.im;
        if d == 0.0 {
            return NAN;
        }
        C {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }
    fn neg(self) -> C {
        C {
            re: -self.re,
            im: -self.im,
        }
    }
    pub(crate) fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn ln(self) -> C {
        C {
            re: self.abs().ln(),
            im: self.im.atan2(self.re),
        }
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        if self.im == 0.0 {
            return C::real(m);
        }
        C {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }
    fn pow(self, e: C) -> C {
        if e.im == 0.0 && e.re.fract() == 0.0 && e.re.abs() <= 64.0 {
            let k = e.re as i32;
            if self.im == 0.0 {
                return C::real(self.re.powi(k));
            }
            let mut acc = C::real(1.0);
            for _ in 0..k.unsigned_abs() {
                acc = acc.mul(self);
            }
            return if k < 0 { C::real(1.0).div(acc) } else { acc };
        }
        if self.im == 0.0 && e.im == 0.0 && self.re >= 0.0 {
            return C::real(self.re.powf(e.re));
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re > 0.0 { C::real(0.0) } else { NAN };
        }
        e.mul(self.ln()).exp()
    }
    fn sqrt(self) -> C {
        if self.im == 0.0 && self.re >= 0.0 {
            return C::real(self.re.sqrt());
        }
        self.pow(C::real(0.5))
    }
}

/// Numeric value of `e` with variables bound by `env`; NaN when undefined.
pub(crate) fn numeric(e: &Expr, env: &[(String, C)]) -> C {
    match e {
        Expr::Num { value, .. } => C::real(value.to_f64().unwrap_or(f64::NAN)),
        Expr::Const(Const::Pi) => C::real(std::f64::consts::PI),
        Expr::Const(Const::E) => C::real(std::f64::consts::E),
        Expr::Const(Const::I) => C { re: 0.0, im: 1.0 },
        Expr::Const(Const::Inf) => C::real(f64::INFINITY),
        Expr::Var(v) => env.iter().find(|(n, _)| n == v).map_or(NAN, |(_, x)| *x),
        Expr::Add(v) => v
            .iter()
            .fold(C::real(0.0), |acc, x| acc.add(numeric(x, env))),
        Expr::Mul(v) => v
            .iter()
            .fold(C::real(1.0), |acc, x| acc.mul(numeric(x, env))),
        Expr::Neg(a) => numeric(a, env).neg(),
        Expr::Percent(a) => numeric(a, env).div(C::real(100.0)),
        Expr::Div(a, b) => numeric(a, env).div(numeric(b, env)),
        Expr::Pow(a, b) => {
            let base = numeric(a, env);
            // Real odd roots of negative reals (`(-8)^{1/3} = -2`), matching `\sqrt[3]{-8}`.
            if base.im == 0.0 && base.re < 0.0 {
                if let Some(q) = exact(b) {
                    if let (Some(p), Some(d)) = (q.numer().to_i64(), q.denom().to_i64()) {
                        if d % 2 == 1 && d > 1 {
                            let m = (-base.re).powf(p as f64 / d as f64);
                            return C::real(if p % 2 == 0 { m } else { -m });
                        }
                    }
                }
            }
            base.pow(numeric(b, env))
        }
        Expr::PlusMinus(..) => NAN,
        Expr::Func(name, args) => {
            let vals: Vec<C> = args.iter().map(|a| numeric(a, env)).collect();
            func(name, &vals)
        }
    }
}

fn func(name: &str, a: &[C]) -> C {
    let Some(&x) = a.first() else {
        return NAN;
    };
    let real = |f: fn(f64) -> f64| if x.im == 0.0 { C::real(f(x.re)) } else { NAN };
    match name {
        "sqrt" => x.sqrt(),
        "root" => {
            let n = a.get(1).copied().unwrap_or(NAN);
            if x.im == 0.0
                && n.im == 0.0
                && x.re < 0.0
                && n.re.fract() == 0.0
                && n.re as i64 % 2 != 0
            {
                C::real(-(-x.re).powf(1.0 / n.re))
            } else {
                x.pow(C::real(1.0).div(n))
            }
        }
        "sin" => real(f64::sin),
        "cos" => real(f64::cos),
        "tan" => real(f64::tan),
        "sec" => real(|v| 1.0 / v.cos()),
        "csc" => real(|v| 1.0 / v.sin()),
        "cot" => real(|v| 1.0 / v.tan()),
        "arcsin" => real(f64::asin),
        "arccos" => real(f64::acos),
        "arctan" => real(f64::atan),
        "sinh" => real(f64::sinh),
        "cosh" => real(f64::cosh),
        "tanh" => real(f64::tanh),
        "exp" => x.exp(),
        "ln" | "log" => x.ln(),
        "logb" => x.ln().div(a.get(1).copied().unwrap_or(NAN).ln()),
        "abs" => C::real(x.abs()),
        "floor" => real(f64::floor),
        "ceil" => real(f64::ceil),
        "fact" => real(|v| {
            if v.fract() != 0.0 || !(0.0..=170.0).contains(&v) {
                return f64::NAN;
            }
            (1..=v as u64).fold(1.0, |acc, k| acc * k as f64)
        }),
        "binom" => {
            let k = a.get(1).copied().unwrap_or(NAN);
            if x.im != 0.0 || k.im != 0.0 || k.re.fract() != 0.0 || k.re < 0.0 || k.re > 1000.0 {
                return NAN;
            }
            let mut acc = 1.0;
            for j in 0..k.re as u64 {
                acc = acc * (x.re - j as f64) / (j as f64 + 1.0);
            }
            C::real(acc)
        }
        "max" | "min" => {
            if a.iter().any(|v| v.im != 0.0) {
                return NAN;
            }
            let it = a.iter().map(|v| v.re);
            C::real(if name == "max" {
                it.fold(f64::MIN, f64::max)
            } else {
                it.fold(f64::MAX, f64::min)
            })
        }
        _ => NAN,
    }
}
