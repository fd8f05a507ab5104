//! `distill student grpo --config F` (the binary, `[rollouts] file` = the fixture's recorded
//! rollouts as one batch) matches the PyTorch GRPO reference for every loss type on both
//! fixtures: loss and grad norm in metrics.jsonl, tracked parameters in final/.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures").join(name)
}

fn tensor(file: &Path, key: &str) -> Vec<f64> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(v.dtype(), safetensors::Dtype::F32, "{key}");
    v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
}

fn config(name: &str, loss_type: &str, out: &Path, r: &serde_json::Value) -> String {
    let (h, a) = (&r["hyper"], &r["hyper"]["adamw"]);
    format!(
        "[model]\npath = {model:?}\n[rollouts]\nfile = {rollouts:?}\n[grpo]\nnum_generations = {}\ntemperature = {}\n\
         epsilon_low = {}\nepsilon_high = {}\nbeta = {}\nloss_type = \"{loss_type}\"\nscale_rewards = {}\n\
         max_completion_length = {}\n[optim]\nlr = {}\nbetas = {}\neps = {}\nweight_decay = {}\nno_decay = []\n\
         max_grad_norm = {}\n[schedule]\nkind = \"constant\"\nwarmup_steps = 0\n[train]\nmax_steps = 1\n\
         dtype = \"f32\"\nseed = 1\n[output]\ndir = {out:?}\n",
        h["num_generations"],
        h["temperature"],
        h["epsilon_low"],
        h["epsilon_high"],
        h["beta"],
        h["scale_rewards"],
        h["max_completion_length"],
        a["lr"],
        a["betas"],
        a["eps"],
        a["weight_decay"],
        h["max_grad_norm"],
        model = fixture(name).display().to_string(),
        rollouts = fixture(name).join("grpo/rollouts.jsonl").display().to_string(),
        out = out.display().to_string(),
    )
}

fn check(name: &str) {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("grpo/reference.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for lt in ["grpo", "bnpo", "dr_grpo", "dapo"] {
        let out = tmp.path().join(lt);
        let cfg = tmp.path().join(format!("{lt}.toml"));
        std::fs::write(&cfg, config(name, lt, &out, &r)).unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_distill"))
            .args(["student", "grpo", "--config"])
            .arg(&cfg)
            .arg("--no-progress")
            .status()
            .unwrap();
        assert!(status.success(), "{name}/{lt}: distill student grpo failed");
        let line = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let m: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        let want = &r["loss_types"][lt];
        let (loss, gn) = (m["loss"].as_f64().unwrap(), m["grad_norm"].as_f64().unwrap());
        assert!((loss - want["loss"].as_f64().unwrap()).abs() < 1e-4, "{name}/{lt}: loss {loss} vs {}", want["loss"]);
        let wgn = want["grad_norm"].as_f64().unwrap();
        assert!((gn - wgn).abs() < 1e-4 * wgn.max(1.0), "{name}/{lt}: grad_norm {gn} vs {wgn}");
        for p in r["tracked_params"].as_array().unwrap() {
            let p = p.as_str().unwrap();
            let got = tensor(&out.join("final/model.safetensors"), p);
            let want = tensor(&fixture(name).join("grpo/reference.safetensors"), &format!("{lt}.after.{p}"));
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(got.len() == want.len() && worst < 1e-4, "{name}/{lt}: {p} differs by {worst}");
        }
    }
}

#[test]
fn cli_grpo_step_matches_pytorch_qwen2() {
    check("qwen2");
}

#[test]
fn cli_grpo_step_matches_pytorch_llama3() {
    check("llama3");
}

/// Runs `distill student grpo --config cfg` with `flags`; returns (success, stderr).
fn grpo(cfg: &Path, flags: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["student", "grpo", "--config"])
        .arg(cfg)
        .arg("--no-progress")
        .args(flags)
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A second run in an output dir that holds one fails naming the dir and both flags (it used
/// to restart at step 0 in place); `--overwrite` replaces the run; `--resume --overwrite` and
/// `--allow-config-change` without `--resume` are usage errors.
#[test]
fn cli_second_run_in_place_needs_resume_or_overwrite() {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("qwen2").join("grpo/reference.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, config("qwen2", "dapo", &out, &r)).unwrap();
    let (ok, err) = grpo(&cfg, &[]);
    assert!(ok, "{err}");
    let (ok, err) = grpo(&cfg, &[]);
    assert!(!ok, "a second run in place must fail");
    assert!(err.contains(&out.display().to_string()) && err.contains("--resume") && err.contains("--overwrite"), "{err}");
    let (ok, err) = grpo(&cfg, &["--overwrite"]);
    assert!(ok, "{err}");
    assert!(out.join("final").join("config.json").is_file());
    assert!(!grpo(&cfg, &["--resume", "--overwrite"]).0);
    assert!(!grpo(&cfg, &["--allow-config-change"]).0);
}
