//! `eval compare` on hand-built run summaries: the report.json shape the quickstart reads,
//! deltas against the teacher, per-problem agreement, Markdown and SVG outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datasets::eval_records::EvalRecord;
use datasets::records::{FinishReason, SampleRecord, Verdict};
use eval::summary::{summarize_benchmark, ModelInfo, ProtocolInfo, Role, RunSummary, SummaryOptions};

fn rec(pid: &str, i: u32, correct: bool, tokens: u32) -> EvalRecord {
    EvalRecord {
        sample: SampleRecord {
            problem_id: pid.into(),
            sample_index: i,
            reference_answer: "7".into(),
            extracted_answer: Some(if correct { "7" } else { "8" }.into()),
            verdict: if correct { Verdict::Correct } else { Verdict::Incorrect },
            prompt_tokens: 3,
            completion_tokens: tokens,
            finish_reason: FinishReason::Stop,
            seed: 0,
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 64,
            latency_ms: 1,
            error: None,
        },
        benchmark: "b".into(),
        subject: None,
        level: None,
        response: String::new(),
        reasoning: None,
        model: "m".into(),
        thinking_tokens: None,
        forced_waits: None,
        forced_closes: None,
    }
}

/// `solved[i]` = number of correct samples (of 2) on problem i.
fn run(dir: &Path, name: &str, role: Role, solved: &[u32]) -> PathBuf {
    let mut records = Vec::new();
    for (i, &c) in solved.iter().enumerate() {
        for s in 0..2 {
            records.push(rec(&format!("p{i}"), s, s < c, 10 + 5 * s + i as u32));
        }
    }
    let b = summarize_benchmark(&records, &SummaryOptions { bootstrap_resamples: 100, ..Default::default() });
    let summary = RunSummary {
        schema_version: 1,
        model: ModelInfo { name: name.into(), role, checkpoint: Some(format!("ckpt/{name}")), backend: "native".into() },
        protocol: ProtocolInfo {
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 64,
            prompt_template: "{problem}".into(),
            system_prompt: None,
            seed: 0,
            thinking: None,
        },
        benchmarks: BTreeMap::from([("toy".to_string(), b)]),
    };
    let d = dir.join(name);
    summary.save(&d).unwrap();
    d
}

#[test]
fn report_has_the_quickstart_shape_deltas_and_agreement() {
    let tmp = tempfile::tempdir().unwrap();
    // Listed student-first: the teacher is found by role, not position.
    let student = run(tmp.path(), "student", Role::Student, &[2, 0, 1, 0]);
    let teacher = run(tmp.path(), "teacher", Role::Teacher, &[2, 2, 0, 0]);
    let out = tmp.path().join("report");
    let report = eval::compare_runs(
        &[student, teacher],
        &eval::CompareOptions { out_dir: out.clone(), teacher: None },
    )
    .unwrap();
    assert_eq!(report.teacher.as_deref(), Some("teacher"));

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let t = models.iter().find(|m| m["name"] == "teacher").unwrap();
    assert_eq!(t["role"], "teacher");
    assert_eq!(t["checkpoint"], "ckpt/teacher");
    let tb = &t["benchmarks"]["toy"];
    for key in ["pass@1", "pass@1_ci95", "cons@k", "k", "n_problems", "mean_response_tokens"] {
        assert!(!tb[key].is_null(), "missing {key}");
    }
    assert_eq!(tb["pass@1"], 0.5);
    assert_eq!(tb["k"], 2);
    assert_eq!(tb["n_problems"], 4);
    assert_eq!(tb["pass@1_ci95"].as_array().unwrap().len(), 2);
    let s = models.iter().find(|m| m["name"] == "student").unwrap();
    assert_eq!(s["role"], "student");
    // Student pass@1 = (1 + 0 + 0.5 + 0)/4 = 0.375 → delta −0.125.
    assert!((json["deltas"]["student"]["toy"]["pass@1"].as_f64().unwrap() + 0.125).abs() < 1e-12);

    // Solved = at least half correct: teacher {p0, p1}, student {p0, p2}.
    let a = &report.agreement[0];
    assert_eq!((a.both, a.teacher_only, a.student_only, a.neither), (1, 1, 1, 1));
    assert_eq!(a.teacher_only_ids, vec!["p1".to_string()]);

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| student | student | 37.5 (−12.5) ["), "{md}");
    assert!(md.contains("| teacher | teacher | 50.0 ["), "{md}");
    assert!(md.contains("toy cons@2"), "{md}");
    assert!(md.contains("| student | toy | 1 | 1 | 1 | 1 |"), "{md}");
    for svg in ["accuracy.svg", "accuracy_vs_length.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.starts_with("<svg") && text.contains("student") && text.contains("teacher"));
        let png = std::fs::read(out.join(svg.replace(".svg", ".png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "a PNG next to {svg}");
    }
}

#[test]
fn explicit_teacher_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run(tmp.path(), "a", Role::Student, &[1]);
    let b = run(tmp.path(), "b", Role::Student, &[2]);
    let out = tmp.path().join("r");
    let opts = eval::CompareOptions { out_dir: out.clone(), teacher: Some("b".into()) };
    let report = eval::compare_runs(&[a.clone(), b.clone()], &opts).unwrap();
    assert_eq!(report.teacher.as_deref(), Some("b"));
    assert_eq!(report.models[1].role, Role::Teacher);

    let missing = eval::CompareOptions { out_dir: out.clone(), teacher: Some("zzz".into()) };
    assert!(eval::compare_runs(std::slice::from_ref(&a), &missing).unwrap_err().to_string().contains("zzz"));
    let err = eval::compare_runs(&[tmp.path().join("nope")], &opts).unwrap_err().to_string();
    assert!(err.contains("summary.json"), "{err}");

    // Without any teacher there are no deltas, and the same run twice gets distinct names.
    let none = eval::CompareOptions { out_dir: out, teacher: None };
    let r = eval::compare_runs(&[a.clone(), a], &none).unwrap();
    assert!(r.deltas.is_empty() && r.agreement.is_empty());
    assert_ne!(r.models[0].name, r.models[1].name);
}
