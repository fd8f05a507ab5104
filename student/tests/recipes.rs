//! End-to-end paths beyond the fixtures: trace data rendered with a real chat template into a
//! random-init student (the quickstart's path), bf16 compute with f32 master weights, and the
//! shipped recipe configs.

mod common;
use common::*;

use std::path::Path;

fn tokenizer_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/tokenizers").join(name)
}

#[test]
fn traces_into_a_random_init_student() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("traces.jsonl");
    let mut s = String::new();
    for (p, a) in [("2+3", "5"), ("7*6", "42"), ("10-4", "6"), ("9+9", "18")] {
        let row = serde_json::json!({
            "problem": format!("What is {p}?"),
            "reasoning": format!("We compute {p} step by step. The result is {a}."),
            "content": format!("The answer is \\boxed{{{a}}}."),
        });
        s.push_str(&row.to_string());
        s.push('\n');
    }
    std::fs::write(&train, s).unwrap();
    let out = tmp.path().join("run");
    let text = format!(
        r#"
[model]
init = "random"
tokenizer = "{tok}"
[model.arch]
model_type = "qwen2"
vocab_size = 151936
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
max_position_embeddings = 512
rms_norm_eps = 1e-6
rope_theta = 10000.0
tie_word_embeddings = true
[data]
train = "{train}"
format = "traces"
packing = true
max_seq_len = 256
[optim]
lr = 1e-2
[schedule]
kind = "linear"
warmup_steps = 1
[train]
batch_size = 1
max_steps = 3
loss_chunk = 64
seed = 3
[output]
dir = "{out}"
"#,
        tok = tokenizer_dir("deepseek-r1-distill-qwen").display(),
        train = train.display(),
        out = out.display()
    );
    let cfg = student::TrainConfig::from_toml_str(&text, &[], "test", None).unwrap();
    let r = run(&cfg, false);
    let m = student::read_metrics(&out).unwrap();
    assert_eq!(m.len(), 3);
    assert!((m[0].loss - (151936f64).ln()).abs() < 0.5, "random init starts near uniform: {}", m[0].loss);
    assert_eq!(m[0].lr, 0.0);
    assert!(m[2].loss < m[0].loss - 0.01, "{} -> {}", m[0].loss, m[2].loss);
    for f in ["tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors"] {
        assert!(r.final_dir.join(f).is_file(), "{f}");
    }
    // the assistant end-of-turn token (what the student must learn to emit) is an EOS
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run_manifest.json")).unwrap()).unwrap();
    let eos = manifest["train_data"]["eos_token_id"].as_u64().unwrap();
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.final_dir.join("generation_config.json")).unwrap()).unwrap();
    let listed: Vec<u64> = match &gen["eos_token_id"] {
        serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_u64()).collect(),
        v => v.as_u64().into_iter().collect(),
    };
    assert!(listed.contains(&eos), "eos {eos} not in {listed:?}");
    assert_eq!(manifest["train_data"]["examples"], 4);
    // the checkpoint loads back
    let loaded = models::load_model::<burn::backend::Flex>(&r.final_dir, &Default::default(), models::DType::F32).unwrap();
    assert_eq!(loaded.config.vocab_size, 151936);
}

#[test]
fn bf16_compute_keeps_f32_master_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.jsonl");
    write_tokens(&train, &sft_rows("qwen2"));
    let out = tmp.path().join("run");
    let cfg = tiny_config_with(&fixture("qwen2"), &train, &out, &["train.dtype=\"bf16\""]);
    let opts = student::RunOptions { resume: false, progress: false, bf16_supported: true, ..Default::default() };
    let r = student::train::<burn::backend::Autodiff<burn::backend::Flex>>(&cfg, &Default::default(), &opts).unwrap();
    let m = student::read_metrics(&out).unwrap();
    let (loss, _) = reference("qwen2", "sft.loss_before");
    assert!((m[0].loss - loss[0]).abs() < 3e-2, "bf16 loss {} vs f32 {}", m[0].loss, loss[0]);
    assert!(m[0].loss != loss[0], "bf16 compute actually ran");
    // weights stay f32 and the update is the f32 AdamW step almost everywhere
    let bytes = std::fs::read(r.final_dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("model.norm.weight").unwrap().dtype(), safetensors::Dtype::F32);
    let (want, _) = reference("qwen2", "sft.after.model.layers.0.self_attn.q_proj.weight");
    let got = read_tensor(&st, "model.layers.0.self_attn.q_proj.weight").0;
    let close = got.iter().zip(&want).filter(|(a, b)| (*a - *b).abs() < 1e-4).count();
    assert!(close as f64 > 0.9 * want.len() as f64, "{close}/{} match the f32 step", want.len());
}

#[test]
fn shipped_recipes_parse_and_name_their_command() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/student");
    let mut n = 0;
    for name in ["qwen2.5-math-7b-r1.toml", "qwen2.5-math-1.5b-r1.toml", "llama3.1-8b-r1.toml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(&format!("# distill student train --config configs/student/{name}")),
            "{name}: first line {first:?}"
        );
        let cfg = student::TrainConfig::from_toml_str(&text, &[], name, None).unwrap();
        assert!(cfg.optim.lr >= 1e-5 && cfg.optim.lr <= 4e-5, "{name}");
        assert!(cfg.data.max_seq_len >= 16384 && cfg.data.packing, "{name}");
        assert!(cfg.schedule.warmup_ratio >= 0.03 && cfg.schedule.warmup_ratio <= 0.1, "{name}");
        assert_eq!(cfg.schedule.kind, student::config::ScheduleKind::Cosine);
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn fused_cross_entropy_equals_autodiff_on_a_tied_model() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    let rows: Vec<(Vec<u32>, Vec<i64>)> = (0..3u32)
        .map(|r| {
            let ids: Vec<u32> = (0..12 + r).map(|i| (i * 37 + r * 11) % 300).collect();
            let labels = ids.iter().enumerate().map(|(i, &t)| if i < 3 { -100 } else { t as i64 }).collect();
            (ids, labels)
        })
        .collect();
    write_tokens(&train, &rows);
    let run_with = |fused: bool| {
        let out = tmp.path().join(format!("fused-{fused}"));
        let text = format!(
            r#"
[model]
init = "random"
[model.arch]
model_type = "qwen2"
vocab_size = 300
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 64
tie_word_embeddings = true
[data]
train = "{train}"
format = "tokens"
packing = false
max_seq_len = 64
[optim]
lr = 1e-2
weight_decay = 0.1
max_grad_norm = 0.5
[train]
batch_size = 2
grad_accum = 2
max_steps = 2
shuffle = false
loss_chunk = 5
fused_ce = {fused}
[output]
dir = "{out}"
"#,
            train = train.display(),
            out = out.display()
        );
        let cfg = student::TrainConfig::from_toml_str(&text, &[], "test", None).unwrap();
        let r = run(&cfg, false);
        assert_eq!(r.fused_ce, fused);
        (student::read_metrics(&out).unwrap(), r.final_dir)
    };
    let (mf, df) = run_with(true);
    let (ma, da) = run_with(false);
    for (f, a) in mf.iter().zip(&ma) {
        assert!((f.loss - a.loss).abs() < 1e-5, "step {} loss {} vs {}", f.step, f.loss, a.loss);
        assert!((f.grad_norm - a.grad_norm).abs() < 1e-5 * a.grad_norm.max(1.0), "grad_norm {} vs {}", f.grad_norm, a.grad_norm);
    }
    for name in ["model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight"] {
        let (x, y) = (checkpoint_tensor(&df, name), checkpoint_tensor(&da, name));
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "{name}: {worst}");
    }
}

#[test]
fn grpo_recipe_parses_and_names_its_command() {
    let name = "grpo-r1-distill-qwen-1.5b.toml";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/student").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with(&format!("# distill student grpo --config configs/student/{name}")), "{first:?}");
    let cfg = student::GrpoConfig::from_toml_str(&text, &[], name, None).unwrap();
    let g = &cfg.grpo;
    assert!((8..=16).contains(&g.num_generations));
    assert_eq!((cfg.optim.lr, g.beta, g.epsilon_high), (1e-6, 0.001, 0.28));
    assert!(g.max_completion_length >= 8192);
    assert_eq!(cfg.source(), student::grpo::config::RolloutSource::Native);
}

/// The recipes' memory plans: full fine-tuning at their sequence length fits one H200 (7B,
/// 8B) or one 80 GB GPU (1.5B), with the figures their headers quote.
#[test]
fn shipped_recipes_fit_their_gpu() {
    use student::plan::{plan, PlanInput};
    use student::plan_shape::{resolve_shape, Target};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/student");
    for (name, target, tokens) in [
        ("qwen2.5-math-7b-r1.toml", Target::H200, 32768),
        ("llama3.1-8b-r1.toml", Target::H200, 32768),
        ("qwen2.5-math-1.5b-r1.toml", Target::H100, 32768),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let cfg = student::TrainConfig::from_toml_str(&text, &[], name, None).unwrap();
        assert!(cfg.lora.is_none(), "{name}: full fine-tuning");
        assert!(cfg.train.gradient_checkpointing, "{name}");
        let shape = resolve_shape(&cfg).unwrap();
        let p = plan(&PlanInput::from_config(&cfg, shape, 1), target, target.budget_bytes().unwrap());
        assert_eq!(p.tokens_per_micro_batch, tokens, "{name}");
        assert!(p.fits, "{name}: {}", student::plan::render_table(&p));
        // at least 10% headroom, so the verdict does not hang on the last gigabyte
        assert!(p.total_bytes as f64 <= 0.9 * p.budget_bytes as f64, "{name}: {}", student::plan::render_table(&p));
        let header = format!("# total {} of {}", student::plan::gb(p.total_bytes), student::plan::gb(p.budget_bytes));
        assert!(text.contains(&header), "{name}: header should quote the planner: {header:?}");
    }
}
