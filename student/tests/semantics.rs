//! Trainer semantics: packing, accumulation, resume, LoRA + merge, logit distillation,
//! random init from an inline architecture with trace data.

mod common;
use common::*;

use std::path::Path;

/// Examples cut from the fixture's ids: different lengths and different loss-token counts.
fn examples(name: &str) -> Vec<(Vec<u32>, Vec<i64>)> {
    let rows = sft_rows(name);
    let ids: Vec<u32> = rows.iter().flat_map(|r| r.0.clone()).collect(); // 18 ids
    let cut = |a: usize, b: usize, prompt: usize| {
        let x: Vec<u32> = ids[a..b].to_vec();
        let l: Vec<i64> = x.iter().enumerate().map(|(i, &t)| if i < prompt { -100 } else { t as i64 }).collect();
        (x, l)
    };
    vec![cut(0, 5, 2), cut(5, 12, 2), cut(12, 16, 1)]
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * b.abs().max(1.0), "{what}: {a} vs {b}");
}

fn params_close(a: &Path, b: &Path, names: &[&str], tol: f64) {
    for n in names {
        let (x, y) = (checkpoint_tensor(a, n), checkpoint_tensor(b, n));
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(worst <= tol, "{n}: differs by {worst}");
    }
}

const TRACKED: [&str; 3] = ["model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "lm_head.weight"];

#[test]
fn packed_loss_equals_unpacked() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    write_tokens(&train, &examples("qwen2"));
    let model = fixture("qwen2");
    let a = tiny_config_with(&model, &train, &tmp.path().join("unpacked"), &["train.batch_size=3"]);
    let b = tiny_config_with(
        &model,
        &train,
        &tmp.path().join("packed"),
        &["data.packing=true", "data.max_seq_len=16", "train.batch_size=1"],
    );
    let (ra, rb) = (run(&a, false), run(&b, false));
    let (ma, mb) = (student::read_metrics(&tmp.path().join("unpacked")).unwrap(), student::read_metrics(&tmp.path().join("packed")).unwrap());
    assert_eq!(ma[0].loss_tokens, mb[0].loss_tokens);
    close(mb[0].loss, ma[0].loss, 1e-5, "packed loss");
    close(mb[0].grad_norm, ma[0].grad_norm, 1e-5, "packed grad norm");
    params_close(&ra.final_dir, &rb.final_dir, &TRACKED, 1e-5);
}

#[test]
fn accumulation_is_mean_over_all_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    let ex = examples("llama3");
    write_tokens(&train, &ex[..2]); // 3 and 5 loss tokens: a mean of means would differ
    let model = fixture("llama3");
    let a = tiny_config_with(&model, &train, &tmp.path().join("a"), &["train.batch_size=2"]);
    let b = tiny_config_with(&model, &train, &tmp.path().join("b"), &["train.batch_size=1", "train.grad_accum=2"]);
    let (ra, rb) = (run(&a, false), run(&b, false));
    let (ma, mb) = (student::read_metrics(&tmp.path().join("a")).unwrap(), student::read_metrics(&tmp.path().join("b")).unwrap());
    close(mb[0].loss, ma[0].loss, 1e-5, "accumulated loss");
    close(mb[0].grad_norm, ma[0].grad_norm, 1e-5, "accumulated grad norm");
    assert_eq!(mb[0].loss_tokens, 3 + 5);
    params_close(&ra.final_dir, &rb.final_dir, &TRACKED, 1e-5);
}

#[test]
fn resumed_run_follows_the_uninterrupted_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    let mut ex = examples("qwen2");
    ex.extend(examples("qwen2").into_iter().map(|(i, l)| (i.into_iter().rev().collect(), l)));
    write_tokens(&train, &ex); // 6 rows; 4 steps × 2 rows cross an epoch boundary
    let sets = [
        "train.batch_size=1",
        "train.grad_accum=2",
        "train.max_steps=4",
        "train.shuffle=true",
        "schedule.kind=\"cosine\"",
        "schedule.warmup_steps=1",
        "optim.max_grad_norm=1.0",
        "optim.no_decay=[\"norm\", \"bias\"]",
        "output.save_every=2",
    ];
    let full_dir = tmp.path().join("full");
    let full = run(&tiny_config_with(&fixture("qwen2"), &train, &full_dir, &sets), false);
    let ckpt = full_dir.join("checkpoint-2");
    assert!(ckpt.join("trainer_state.json").is_file() && ckpt.join("optimizer.safetensors").is_file());
    // "crash" after step 2: a run directory holding only checkpoint-2 and the first two metric lines
    let cut_dir = tmp.path().join("cut");
    std::fs::create_dir_all(cut_dir.join("checkpoint-2")).unwrap();
    for f in std::fs::read_dir(&ckpt).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), cut_dir.join("checkpoint-2").join(f.file_name())).unwrap();
    }
    let m_full = student::read_metrics(&full_dir).unwrap();
    let head: Vec<String> = m_full[..2].iter().map(|m| serde_json::to_string(m).unwrap()).collect();
    std::fs::write(cut_dir.join("metrics.jsonl"), head.join("\n") + "\n").unwrap();
    let resumed = run(&tiny_config_with(&fixture("qwen2"), &train, &cut_dir, &sets), true);
    assert_eq!(resumed.resumed_from.as_deref(), Some(cut_dir.join("checkpoint-2").as_path()));
    let m_cut = student::read_metrics(&cut_dir).unwrap();
    assert_eq!(m_cut.iter().map(|m| m.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    for (a, b) in m_full.iter().zip(&m_cut) {
        close(b.loss, a.loss, 1e-6, &format!("loss at step {}", a.step));
        close(b.grad_norm, a.grad_norm, 1e-6, &format!("grad_norm at step {}", a.step));
        assert_eq!(a.lr, b.lr);
        assert_eq!(a.epoch, b.epoch);
    }
    assert_eq!(m_full[3].epoch, 1);
    assert!(m_full[0].lr == 0.0 && m_full[1].lr > 0.0);
    params_close(&full.final_dir, &resumed.final_dir, &TRACKED, 1e-6);
}

#[test]
fn lora_trains_adapters_only_and_merge_reproduces_final() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    write_tokens(&train, &sft_rows("qwen2"));
    let out = tmp.path().join("lora");
    let base = tiny_config(&fixture("qwen2"), &train, &out, "[lora]\nrank = 4\nalpha = 8.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n");
    let cfg = student::TrainConfig::from_toml_str(&toml::to_string(&base).unwrap(), &["train.max_steps=2".into(), "optim.lr=1e-2".into(), "output.save_every=1".into()], "t", None).unwrap();
    let r = run(&cfg, false);
    let m = student::read_metrics(&out).unwrap();
    let (loss, _) = reference("qwen2", "sft.loss_before");
    close(m[0].loss, loss[0], 1e-5, "step-1 loss equals the base model's (B = 0)");
    assert!(m[1].loss < m[0].loss, "adapters learn: {} -> {}", m[0].loss, m[1].loss);
    assert!(r.final_dir.join("adapter_model.safetensors").is_file() && r.final_dir.join("adapter_config.json").is_file());
    let base_dir = fixture("qwen2");
    params_close(&base_dir, &r.final_dir, &["model.norm.weight", "lm_head.weight", "model.layers.0.self_attn.k_proj.weight"], 0.0);
    let q0 = checkpoint_tensor(&base_dir, "model.layers.1.self_attn.q_proj.weight");
    let q1 = checkpoint_tensor(&r.final_dir, "model.layers.1.self_attn.q_proj.weight");
    assert!(q0.iter().zip(&q1).any(|(a, b)| (a - b).abs() > 1e-6), "q_proj merged");
    // a checkpoint of a LoRA run holds the adapters, and `merge` rebuilds final/
    assert!(out.join("checkpoint-1/adapter_model.safetensors").is_file());
    let merged = tmp.path().join("merged");
    let s = student::merge::merge_adapter::<burn::backend::Flex>(&base_dir, &r.final_dir, &merged, &Default::default(), None).unwrap();
    assert_eq!(s.merged, 4);
    assert_eq!(s.scale, 2.0);
    params_close(&merged, &r.final_dir, &["model.layers.1.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight", "model.norm.weight"], 1e-6);
}

/// A model directory = fixture weights + a real tokenizer (logit distillation checks that
/// teacher and student tokenizers agree).
fn with_tokenizer(dst: &Path, model: &str, tok: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixture(model).join(f), dst.join(f)).unwrap();
    }
    let t = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/tokenizers").join(tok);
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(t.join(f), dst.join(f)).unwrap();
    }
    dst.to_path_buf()
}

#[test]
fn logit_distillation_from_an_identical_teacher_is_zero_kd() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    write_tokens(&train, &sft_rows("qwen2"));
    let student_dir = with_tokenizer(&tmp.path().join("s"), "qwen2", "qwen2.5");
    let teacher_dir = with_tokenizer(&tmp.path().join("t"), "qwen2", "qwen2.5");
    for kind in ["forward", "reverse", "jsd"] {
        let out = tmp.path().join(kind);
        let extra = format!("[distill]\nteacher = \"{}\"\nkind = \"{kind}\"\nweight = 0.5\n", teacher_dir.display());
        let cfg = tiny_config(&student_dir, &train, &out, &extra);
        run(&cfg, false);
        let m = student::read_metrics(&out).unwrap();
        let (loss, _) = reference("qwen2", "sft.loss_before");
        assert!(m[0].kd_loss.unwrap().abs() < 1e-6, "{kind}: kd {:?}", m[0].kd_loss);
        close(m[0].ce_loss.unwrap(), loss[0], 1e-5, "ce part");
        close(m[0].loss, 0.5 * loss[0], 1e-5, "mixed loss");
    }
    // a teacher with another tokenizer is refused
    let other = with_tokenizer(&tmp.path().join("o"), "llama3", "llama3.1");
    let extra = format!("[distill]\nteacher = \"{}\"\n", other.display());
    let cfg = tiny_config(&student_dir, &train, &tmp.path().join("bad"), &extra);
    let opts = student::RunOptions::default();
    let err = student::train::<burn::backend::Autodiff<burn::backend::Flex>>(&cfg, &Default::default(), &opts).unwrap_err();
    assert!(err.to_string().contains("share a tokenizer"), "{err}");
}

/// Logit distillation through the one-chunk-at-a-time head (the default, which keeps no
/// `[S, vocab]` logits alive) trains exactly like autodiff through every chunk.
#[test]
fn fused_kd_head_equals_autodiff_kd() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    write_tokens(&train, &sft_rows("qwen2"));
    let student_dir = with_tokenizer(&tmp.path().join("s"), "qwen2", "qwen2.5");
    let teacher_dir = with_tokenizer(&tmp.path().join("t"), "qwen2", "qwen2.5");
    let run_kd = |fused: bool| {
        let out = tmp.path().join(format!("kd-{fused}"));
        let extra = format!("[distill]\nteacher = \"{}\"\nkind = \"jsd\"\nbeta = 0.3\ntemperature = 1.5\nweight = 0.7\n", teacher_dir.display());
        let base = tiny_config(&student_dir, &train, &out, &extra);
        let text = toml::to_string(&base).unwrap();
        let sets = vec!["train.max_steps=3".to_string(), "train.loss_chunk=5".to_string(), "optim.lr=1e-2".to_string(), format!("train.fused_ce={fused}")];
        let cfg = student::TrainConfig::from_toml_str(&text, &sets, "test", None).unwrap();
        let r = run(&cfg, false);
        assert_eq!(r.fused_ce, fused);
        (student::read_metrics(&out).unwrap(), r.final_dir)
    };
    let (mf, df) = run_kd(true);
    let (ma, da) = run_kd(false);
    assert_eq!(mf.len(), 3);
    assert!(mf[2].kd_loss.unwrap() > 1e-6, "the student has moved away from the teacher by step 3");
    for (f, a) in mf.iter().zip(&ma) {
        close(f.loss, a.loss, 1e-5, "loss");
        close(f.kd_loss.unwrap(), a.kd_loss.unwrap(), 1e-5, "kd part");
        close(f.grad_norm, a.grad_norm, 1e-5, "grad_norm");
    }
    params_close(&df, &da, &TRACKED, 1e-5);
}
