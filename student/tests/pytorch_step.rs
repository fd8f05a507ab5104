//! The acceptance check of the trainer: one AdamW step on the fixtures' `sft.*` batch matches
//! PyTorch (loss and grad norm in metrics.jsonl, tracked parameters in `final/`).

mod common;
use common::*;

fn check_fixture(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.jsonl");
    write_tokens(&train, &sft_rows(name));
    let out = tmp.path().join("run");
    let cfg = tiny_config(&fixture(name), &train, &out, "");
    let summary = run(&cfg, false);
    assert_eq!(summary.steps, 1);
    assert!(summary.fused_ce, "the default (fused) cross-entropy path is the one checked");

    let m = student::read_metrics(&out).unwrap();
    assert_eq!(m.len(), 1);
    let (loss, _) = reference(name, "sft.loss_before");
    let (gn, _) = reference(name, "sft.grad_norm");
    assert!((m[0].loss - loss[0]).abs() < 1e-5, "{name}: loss {} vs torch {}", m[0].loss, loss[0]);
    assert!(
        (m[0].grad_norm - gn[0]).abs() <= 1e-5 * gn[0].max(1.0),
        "{name}: grad_norm {} vs torch {}",
        m[0].grad_norm,
        gn[0]
    );
    assert_eq!(m[0].loss_tokens, 10);
    assert_eq!(m[0].lr, 1e-3);

    let bytes = std::fs::read(fixture(name).join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for key in st.names() {
        let Some(param) = key.strip_prefix("sft.after.") else { continue };
        let (want, _) = read_tensor(&st, key);
        let got = checkpoint_tensor(&summary.final_dir, param);
        assert_eq!(got.len(), want.len(), "{name}: {param}");
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}: {param} differs from torch by {worst}");
        // and it did move: the step is not a no-op
        let before = checkpoint_tensor(&fixture(name), param);
        let moved = before.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(moved > 1e-4, "{name}: {param} unchanged");
        checked += 1;
    }
    assert!(checked >= 3, "{name}: only {checked} tracked params");
    // the final directory is a complete HF checkpoint
    for f in ["config.json", "generation_config.json", "trainer_state.json"] {
        assert!(summary.final_dir.join(f).is_file(), "{f}");
    }
    assert!(out.join("run_manifest.json").is_file() && out.join("train_config.toml").is_file());
}

#[test]
fn qwen2_step_matches_pytorch() {
    check_fixture("qwen2");
}

#[test]
fn llama3_step_matches_pytorch() {
    check_fixture("llama3");
}
