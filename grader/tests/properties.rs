//! Property tests: the grader never panics on arbitrary input, and equivalence of parsed
//! numbers is reflexive and symmetric.

mod common;

use common::latexish;
use grader::{answers_equivalent, cluster_answers, extract_answer, grade, grade_answer, Verdict};
use proptest::prelude::*;

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (-100_000i64..100_000).prop_map(|n| n.to_string()),
        (-1000i64..1000, 1i64..1000).prop_map(|(a, b)| format!("\\frac{{{a}}}{{{b}}}")),
        (-1000i64..1000, 0u32..4).prop_map(|(a, d)| format!("{}", a as f64 / 10f64.powi(d as i32))),
        (1i64..50).prop_map(|n| format!("\\sqrt{{{n}}}")),
        (1i64..9, 1i64..5).prop_map(|(a, b)| format!("{a}\\times10^{{{b}}}")),
        (1i64..100).prop_map(|n| format!("{n}\\%")),
        (1i64..9).prop_map(|n| format!("{n}\\pi")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_latexish(a in latexish(24), b in latexish(24)) {
        let g = grade(&a, &b);
        // An unparseable gold is never counted as correct.
        prop_assert!(g.verdict != Verdict::Correct || grade_answer(&a, "0") != Verdict::UnparseableGold);
        let _ = extract_answer(&b);
        let _ = answers_equivalent(&a, &b);
        let _ = cluster_answers(&[Some(a.clone()), None, Some(b.clone()), Some(a)]);
    }

    #[test]
    fn never_panics_on_arbitrary_strings(a in ".{0,80}", b in ".{0,200}") {
        let _ = grade(&a, &b);
        let _ = grade_answer(&a, &b);
        let _ = answers_equivalent(&b, &a);
    }

    #[test]
    fn numbers_are_reflexive(n in number()) {
        prop_assert_eq!(grade_answer(&n, &n), Verdict::Correct, "{} vs itself", n);
        prop_assert!(answers_equivalent(&n, &n));
    }

    #[test]
    fn equivalence_is_symmetric(a in number(), b in number()) {
        prop_assert_eq!(answers_equivalent(&a, &b), answers_equivalent(&b, &a), "{} vs {}", a, b);
    }

    #[test]
    fn integers_equal_only_themselves(a in -10_000i64..10_000, b in -10_000i64..10_000) {
        let expect = if a == b { Verdict::Correct } else { Verdict::Incorrect };
        prop_assert_eq!(grade_answer(&a.to_string(), &b.to_string()), expect);
        prop_assert_eq!(grade(&a.to_string(), &format!("so \\boxed{{{b}}}.")).verdict, expect);
    }
}

#[test]
fn adversarial_inputs_stay_bounded() {
    let deep_parens = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let deep_braces = format!("{}1{}", "{".repeat(5000), "}".repeat(5000));
    let deep_frac = "\\frac{".repeat(3000);
    let many_boxes = "\\boxed{".repeat(100_000);
    let huge_pow = "2^{2^{2^{2^{2^{100}}}}}".to_string();
    let big_fact = "100000!".to_string();
    let long_list = vec!["1"; 3000].join(",");
    let tower = "x^".repeat(2000) + "x";
    let negs = "-".repeat(10_000) + "1";
    for s in [
        &deep_parens,
        &deep_braces,
        &deep_frac,
        &many_boxes,
        &huge_pow,
        &big_fact,
        &long_list,
        &tower,
        &negs,
    ] {
        let _ = grade(s, s);
        let _ = grade("1", s);
        let _ = grade_answer(s, "2");
    }
    assert_eq!(grade_answer("10^{100000}", "10^{100000}"), Verdict::Correct);
    assert_eq!(grade_answer("2^{1000}", "2^{1001}"), Verdict::Incorrect);
}

#[test]
fn clusters_follow_equivalence() {
    let answers: Vec<Option<String>> = ["\\frac12", "0.5", "1/2", "3", "x=3", "", "7"]
        .iter()
        .map(|s| Some(s.to_string()))
        .chain([None])
        .collect();
    let ids = cluster_answers(&answers);
    assert_eq!(
        ids,
        vec![
            Some(0),
            Some(0),
            Some(0),
            Some(1),
            Some(1),
            None,
            Some(2),
            None
        ]
    );
}
