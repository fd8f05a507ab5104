//! Fuzz-style tests: random LaTeX, deep nesting and huge numbers never panic and each input
//! grades in under 10 ms of CPU time; and no expression the grader evaluates equals itself plus one (the
//! false positives of `2^{1500}` = `2^{1501}` and of overflowing floats).
//!
//! The proptest versions are bounded to run in seconds; `fuzz_one_million_inputs` is the
//! `#[ignore]`d long run (`cargo test --release -p grader --test fuzz -- --ignored`).

use std::time::Duration;

mod common;

use common::latexish;
use grader::{grade, grade_answer, Verdict};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Per-input budget from the issue.
const BUDGET: Duration = Duration::from_millis(10);

/// CPU time this thread has used: unlike wall time it does not count time slices lost to
/// other processes on a shared machine.
#[cfg(unix)]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the OS knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// CPU time of `f`: the least of three runs.
fn best_time(f: &dyn Fn()) -> Duration {
    (0..3)
        .map(|_| {
            let t = thread_cpu_time();
            f();
            thread_cpu_time().saturating_sub(t)
        })
        .min()
        .unwrap_or_default()
}

/// Each grading call on (gold, pred) — a full response and a bare answer — stays under budget.
fn check_fast(gold: &str, pred: &str) -> Result<(), TestCaseError> {
    let calls: [&dyn Fn(); 2] = [
        &|| {
            let _ = grade(gold, pred);
        },
        &|| {
            let _ = grade_answer(gold, pred);
        },
    ];
    for f in calls {
        let t = thread_cpu_time();
        f();
        // Only re-measure when the single run was slow.
        if thread_cpu_time().saturating_sub(t) >= BUDGET {
            let best = best_time(f);
            prop_assert!(
                best < BUDGET,
                "{best:?} for gold {:?} pred {:?}",
                gold.chars().take(120).collect::<String>(),
                pred.chars().take(120).collect::<String>()
            );
        }
    }
    Ok(())
}

/// Random LaTeX-ish text, deep nestings and huge numbers.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => latexish(40),
        1 => (1usize..3000, prop::sample::select(vec![("(", ")"), ("{", "}"), ("\\sqrt{", "}"),
                ("\\frac{1}{", "}"), ("2^{", "}"), ("\\left(", "\\right)"), ("|", "|")]))
            .prop_map(|(n, (o, c))| format!("{}1{}", o.repeat(n), c.repeat(n))),
        1 => (1usize..5000).prop_map(|n| "9".repeat(n)),
        1 => (0u32..2_000_000, 0u32..2_000_000)
            .prop_map(|(a, b)| format!("{}^{{{}}}", a % 100, b)),
        1 => (0u32..100_000).prop_map(|n| format!("{n}!")),
        1 => (1usize..4000).prop_map(|n| format!("\\boxed{{{}}}", vec!["x"; n].join("+"))),
        1 => ".{0,300}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn hostile_inputs_do_not_panic_and_are_fast(a in hostile(), b in hostile()) {
        check_fast(&a, &b)?;
        check_fast(&b, &a)?;
        check_fast(&a, &format!("<think>x</think> The answer is $\\boxed{{{b}}}$."))?;
    }
}

/// Expressions the grader evaluates: exact numbers of any size, decimals, fractions, powers,
/// roots, constants and variables combined with the arithmetic operators.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (-1000i64..1000).prop_map(|n| format!("({n})")),
        (0u64..u64::MAX).prop_map(|n| n.to_string()),
        (1u32..4000).prop_map(|k| format!("2^{{{k}}}")),
        (1u32..400).prop_map(|k| format!("10^{{{k}}}")),
        (0u32..1_000_000, 1u32..7).prop_map(|(n, d)| format!(
            "{}.{:0>w$}",
            n / 1000,
            n % 1000,
            w = d as usize
        )),
        (1i64..500, 1i64..500).prop_map(|(a, b)| format!("\\frac{{{a}}}{{{b}}}")),
        (2u32..200).prop_map(|n| format!("\\sqrt{{{n}}}")),
        (1u32..60).prop_map(|n| format!("{n}!")),
        Just("\\pi".to_string()),
        Just("e".to_string()),
        Just("x".to_string()),
        Just("y".to_string()),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}+{b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}-{b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}\\cdot {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("\\frac{{{a}}}{{{b}}}")),
            (inner.clone(), 0u32..40).prop_map(|(a, k)| format!("({a})^{{{k}}}")),
            inner.clone().prop_map(|a| format!("\\sqrt{{{a}}}")),
            (inner, 1u32..60).prop_map(|(a, k)| format!("({a})\\cdot 10^{{{k}}}")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn an_expression_never_equals_itself_plus_one(a in expression()) {
        let b = format!("{a}+1");
        prop_assert_ne!(grade_answer(&a, &b), Verdict::Correct, "{} vs {}", a, b);
        prop_assert_ne!(grade_answer(&b, &a), Verdict::Correct, "{} vs {}", b, a);
        prop_assert_ne!(grade(&a, &format!("\\boxed{{{b}}}")).verdict, Verdict::Correct, "{}", a);
    }
}

#[test]
fn powers_of_two_past_float_range_stay_distinct() {
    for (a, b) in [
        ("2^{1500}", "2^{1501}"),
        ("2^{2000}", "2^{2001}"),
        ("2^{1100}", "2^{1101}"),
        ("10^{400}", "10^{400}+1"),
        ("10^{100000}", "10^{100001}"),
        ("2^{70000}", "2^{70000}+1"),
        ("\\sqrt{2}\\cdot 10^{20}", "\\sqrt{2}\\cdot 10^{20}+1"),
        ("1000!", "1000!+1"),
    ] {
        assert_eq!(grade_answer(a, b), Verdict::Incorrect, "{a} vs {b}");
        assert_eq!(grade_answer(b, a), Verdict::Incorrect, "{b} vs {a}");
    }
    assert_eq!(grade_answer("2^{1500}", "2^{1500}"), Verdict::Correct);
    assert_eq!(
        grade_answer("2^{1500}", "2^{1499}\\cdot 2"),
        Verdict::Correct
    );
    assert_eq!(grade_answer("\\infty", "\\infty"), Verdict::Correct);
}

#[test]
fn a_long_box_is_still_the_answer() {
    let ones = vec!["1"; 1024].join("+");
    let r = format!("\\boxed{{{ones}}}");
    assert!(r.len() > 2000);
    assert_eq!(grade("1", &r).verdict, Verdict::Incorrect);
    assert_eq!(grade("1024", &r).verdict, Verdict::Correct);
    let xs = vec!["x"; 1500].join("+");
    let r = format!("The answer is 7. \\boxed{{{xs}}}");
    let g = grade("7", &r);
    assert_eq!(g.verdict, Verdict::Incorrect);
    assert_ne!(g.extracted.as_deref(), Some("7"));
    // Past what the grader will parse, the box is still the answer — and it is wrong.
    let huge = vec!["1"; 20_000].join("+");
    let g = grade("7", &format!("The answer is 7. \\boxed{{{huge}}}"));
    assert_eq!(g.verdict, Verdict::Incorrect);
}

/// The long run: 1M generated inputs (`-- --ignored`).
#[test]
#[ignore = "long: one million inputs"]
fn fuzz_one_million_inputs() {
    let mut runner = TestRunner::new(Config {
        cases: 1_000_000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(hostile(), hostile()), |(a, b)| check_fast(&a, &b))
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 200_000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&expression(), |a| {
            let b = format!("{a}+1");
            prop_assert_ne!(grade_answer(&a, &b), Verdict::Correct, "{} vs {}", a, b);
            Ok(())
        })
        .unwrap();
}
