//! Generation of the arithmetic-chain problems and their step-by-step traces.

use super::{SyntheticConfig, SyntheticExample, SyntheticSplits};
use crate::problems::Problem;
use crate::DatasetError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// An expression: first operand, then (operator, operand) pairs applied left to right.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Chain {
    first: i64,
    rest: Vec<(char, i64)>,
}

fn apply(a: i64, op: char, b: i64) -> i64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        _ => unreachable!("operators are validated"),
    }
}

fn render(first: i64, rest: &[(char, i64)]) -> String {
    let mut s = first.to_string();
    for (op, b) in rest {
        s.push_str(&format!(" {op} {b}"));
    }
    s
}

/// The gold completion for `expression` ("7 + 5 - 3"): one rewrite per line, then the boxed
/// answer. Returns `None` when the text is not a chain of integers and `+ - *`.
pub fn trace_for(expression: &str) -> Option<(String, i64)> {
    let chain = parse(expression)?;
    Some(trace_of(&chain))
}

fn parse(expression: &str) -> Option<Chain> {
    let mut toks = expression.split_whitespace();
    let first = toks.next()?.parse().ok()?;
    let mut rest = Vec::new();
    while let Some(op) = toks.next() {
        let op = op.chars().next().filter(|c| "+-*".contains(*c))?;
        rest.push((op, toks.next()?.parse().ok()?));
    }
    Some(Chain { first, rest })
}

fn trace_of(chain: &Chain) -> (String, i64) {
    let mut lines = vec![render(chain.first, &chain.rest)];
    let mut acc = chain.first;
    for (i, (op, b)) in chain.rest.iter().enumerate() {
        acc = apply(acc, *op, *b);
        lines.push(format!("= {}", render(acc, &chain.rest[i + 1..])));
    }
    let trace = format!(
        "<think>\n{}\n</think>\n\nThe answer is \\boxed{{{acc}}}.",
        lines.join("\n")
    );
    (trace, acc)
}

fn validate(cfg: &SyntheticConfig) -> Result<Vec<char>, DatasetError> {
    let ops: Vec<char> = cfg.operators.chars().collect();
    if ops.is_empty() || ops.iter().any(|c| !"+-*".contains(*c)) {
        return Err(DatasetError::Invalid(format!(
            "synthetic.operators = {:?}: use a non-empty subset of \"+-*\"",
            cfg.operators
        )));
    }
    if cfg.min_ops == 0 || cfg.min_ops > cfg.max_ops {
        return Err(DatasetError::Invalid(format!(
            "synthetic: need 1 <= min_ops ({}) <= max_ops ({})",
            cfg.min_ops, cfg.max_ops
        )));
    }
    if cfg.max_operand == 0 || cfg.max_value < cfg.max_operand {
        return Err(DatasetError::Invalid(format!(
            "synthetic: need 1 <= max_operand ({}) <= max_value ({})",
            cfg.max_operand, cfg.max_value
        )));
    }
    Ok(ops)
}

/// Draw one chain whose intermediate values all stay in 0..=max_value, or `None` after a dead
/// end (the caller redraws).
fn draw(rng: &mut ChaCha8Rng, cfg: &SyntheticConfig, ops: &[char]) -> Option<Chain> {
    let n_ops = rng.random_range(cfg.min_ops..=cfg.max_ops);
    let max_operand = i64::from(cfg.max_operand);
    let max_value = i64::from(cfg.max_value);
    let first = rng.random_range(1..=max_operand);
    let mut acc = first;
    let mut rest = Vec::with_capacity(n_ops);
    for _ in 0..n_ops {
        let mut ok = false;
        for _ in 0..16 {
            let op = ops[rng.random_range(0..ops.len())];
            let b = rng.random_range(1..=max_operand);
            let v = apply(acc, op, b);
            if (0..=max_value).contains(&v) {
                rest.push((op, b));
                acc = v;
                ok = true;
                break;
            }
        }
        if !ok {
            return None;
        }
    }
    Some(Chain { first, rest })
}

fn example(chain: &Chain, split: &str, index: usize, source: &str) -> SyntheticExample {
    let (trace, answer) = trace_of(chain);
    SyntheticExample {
        problem: Problem {
            id: format!("arith-{split}-{index:05}"),
            problem: format!("Compute {}.", render(chain.first, &chain.rest)),
            answer: answer.to_string(),
            source: Some(source.to_string()),
            extra: Default::default(),
        },
        trace,
    }
}

/// Generate the train and test splits from `cfg.seed`. Test problems are drawn first and never
/// appear in train; no expression appears twice. Errors when the configured space is too small
/// for the requested number of distinct problems.
pub fn generate(cfg: &SyntheticConfig) -> Result<SyntheticSplits, DatasetError> {
    let ops = validate(cfg)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut seen: HashSet<Chain> = HashSet::new();
    let want = cfg.n_test + cfg.n_train;
    let mut chains = Vec::with_capacity(want);
    let max_attempts = 50 * want + 1000;
    let mut attempts = 0;
    while chains.len() < want {
        attempts += 1;
        if attempts > max_attempts {
            return Err(DatasetError::Invalid(format!(
                "synthetic: only {} distinct problems found for n_train + n_test = {want}; \
                 widen max_ops/max_operand/operators",
                chains.len()
            )));
        }
        if let Some(c) = draw(&mut rng, cfg, &ops) {
            if seen.insert(c.clone()) {
                chains.push(c);
            }
        }
    }
    let test = chains[..cfg.n_test]
        .iter()
        .enumerate()
        .map(|(i, c)| example(c, "test", i, &cfg.source))
        .collect();
    let train = chains[cfg.n_test..]
        .iter()
        .enumerate()
        .map(|(i, c)| example(c, "train", i, &cfg.source))
        .collect();
    Ok(SyntheticSplits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_layout_is_exact() {
        let (trace, ans) = trace_for("7 + 5 - 3 + 8").unwrap();
        assert_eq!(ans, 17);
        assert_eq!(
            trace,
            "<think>\n7 + 5 - 3 + 8\n= 12 - 3 + 8\n= 9 + 8\n= 17\n</think>\n\nThe answer is \\boxed{17}."
        );
        assert_eq!(trace_for("2 * 3 + 1").unwrap().1, 7);
        assert!(trace_for("2 / 3").is_none());
    }

    #[test]
    fn bad_configs_are_rejected() {
        let mut c = SyntheticConfig {
            operators: "+/".into(),
            ..Default::default()
        };
        assert!(generate(&c).is_err());
        c.operators = "+".into();
        c.min_ops = 4;
        c.max_ops = 2;
        assert!(generate(&c).is_err());
        let tiny = SyntheticConfig {
            n_train: 1000,
            n_test: 10,
            min_ops: 1,
            max_ops: 1,
            max_operand: 2,
            ..Default::default()
        };
        let err = generate(&tiny).unwrap_err().to_string();
        assert!(err.contains("distinct"), "{err}");
    }
}
