//! `distill eval sweep` end to end on the tiny fixture checkpoint (byte tokenizer, greedy): one
//! resumable run per thinking budget and the accuracy-vs-budget curve in report.json, report.md
//! and the chart.

use std::path::Path;
use std::process::Command;

use datasets::eval_records::read_eval_record_dir;

fn distill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_distill"))
}

fn setup(tmp: &Path) -> std::path::PathBuf {
    let ckpt = tmp.join("ckpt");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, &ckpt).unwrap();
    let problems = tmp.join("p.jsonl");
    std::fs::write(
        &problems,
        "{\"id\":\"a\",\"problem\":\"1+1?\",\"answer\":\"2\"}\n{\"id\":\"b\",\"problem\":\"2+2?\",\"answer\":\"4\"}\n",
    )
    .unwrap();
    let config = tmp.join("sweep.toml");
    let text = format!(
        "out_dir = \"{}\"\n[model]\ncheckpoint = \"{}\"\nconcurrency = 2\n[protocol]\nmax_tokens = 16\ntemperature = 0.0\n\
         [[benchmarks]]\nname = \"tiny\"\npath = \"{}\"\nsamples = 1\n[stats]\nbootstrap_resamples = 20\n",
        tmp.join("sweep").display(),
        ckpt.display(),
        problems.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn sweep_writes_the_curve_for_two_budgets_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = setup(tmp.path());
    let run = || {
        let out = distill()
            .args(["eval", "sweep", "--config"])
            .arg(&config)
            .args(["--thinking-budgets", "6,3"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = run();
    let out = tmp.path().join("sweep");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let curve = &report["thinking_budget_curve"];
    assert_eq!(curve["budgets"], serde_json::json!([3, 6]));
    let points = curve["benchmarks"]["tiny"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (p, budget) in points.iter().zip([3u32, 6]) {
        assert_eq!(p["budget"], budget);
        assert_eq!(p["n_samples"], 2);
        let ci = p["pass@1_ci95"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() <= p["pass@1"].as_f64().unwrap());
        // The random fixture never closes its thinking: every sample is closed at the budget.
        assert_eq!(p["mean_thinking_tokens"], f64::from(budget), "{p}");
        assert_eq!(p["forced_close_rate"], 1.0, "{p}");
        let records =
            read_eval_record_dir(&out.join(format!("budget-{budget}/records/tiny"))).unwrap();
        assert_eq!(records.len(), 2);
        for r in &records {
            assert_eq!(
                (r.thinking_tokens, r.forced_waits, r.forced_closes),
                (Some(budget), Some(0), Some(1))
            );
            assert!(r.response.contains("</think>\n\n"), "{:?}", r.response);
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## tiny") && md.contains("| 3 |") && md.contains("| 6 |"),
        "{md}"
    );
    assert_eq!(stdout, md);
    let svg = std::fs::read_to_string(out.join("thinking_budget.svg")).unwrap();
    // Two budget points (filled circles of radius 4), drawn by plotters; the PNG beside it.
    assert_eq!(svg.matches("r=\"4\"").count(), 2, "{svg}");
    let png = std::fs::read(out.join("thinking_budget.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    // A rerun resumes every budget (nothing left to sample) and writes the same curve.
    let before = std::fs::read_to_string(out.join("report.json")).unwrap();
    run();
    assert_eq!(
        std::fs::read_to_string(out.join("report.json")).unwrap(),
        before
    );
}

#[test]
fn bad_budget_lists_are_refused_before_any_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = setup(tmp.path());
    let out = distill()
        .args(["eval", "sweep", "--config"])
        .arg(&config)
        .args(["--thinking-budgets", "512,lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lots") && err.contains("--thinking-budgets"),
        "{err}"
    );
    assert!(!tmp.path().join("sweep/budget-512").exists());
}
