//! Peak RSS and tokens/s of one small `student::train` run, one process per measurement (what
//! `distill bench train --seq-lens` runs in each child, without needing the CLI built):
//!
//! `cargo run --release --example train_mem -- SEQ CHECKPOINTING(0|1) WORK_DIR [LAYERS]`
//!
//! Qwen2.5-0.5B shape (hidden 896, 14/2 heads, MLP 4864, vocab 151,936, tied), f32, random
//! init, one row of SEQ tokens per step, one warm-up step + one timed step. Prints one JSON line.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: train_mem SEQ CHECKPOINTING(0|1) WORK_DIR [LAYERS]".into());
    }
    let seq: usize = args[1].parse()?;
    let gc = args[2] == "1";
    let work = Path::new(&args[3]);
    let layers: usize = args.get(4).map_or(Ok(8), |s| s.parse())?;
    std::fs::create_dir_all(work)?;
    let vocab = 151_936u64;
    let train = work.join("rows.jsonl");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut text = String::new();
    for _ in 0..2 {
        let ids: Vec<u64> = (0..seq)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % vocab
            })
            .collect();
        text.push_str(&serde_json::json!({ "input_ids": ids, "labels": ids }).to_string());
        text.push('\n');
    }
    std::fs::write(&train, text)?;
    let cfg = format!(
        r#"
[model]
init = "random"
[model.arch]
model_type = "qwen2"
architectures = ["Qwen2ForCausalLM"]
vocab_size = {vocab}
hidden_size = 896
intermediate_size = 4864
num_hidden_layers = {layers}
num_attention_heads = 14
num_key_value_heads = 2
max_position_embeddings = {maxpos}
rms_norm_eps = 1e-6
rope_theta = 1000000.0
tie_word_embeddings = true
hidden_act = "silu"
[data]
train = "{train}"
format = "tokens"
packing = false
max_seq_len = {seq}
[optim]
lr = 1e-4
weight_decay = 0.1
max_grad_norm = 1.0
[schedule]
kind = "constant"
[train]
batch_size = 1
max_steps = 2
shuffle = false
loss_chunk = 128
gradient_checkpointing = {gc}
[output]
dir = "{out}"
"#,
        maxpos = seq.max(2048),
        train = train.display(),
        out = work.join("run").display(),
    );
    let cfg = student::TrainConfig::from_toml_str(&cfg, &[], "train_mem", None)?;
    let opts = student::RunOptions { overwrite: true, ..Default::default() };
    // The steps are what is measured: a failure after them (saving the final model on a full
    // disk) is reported but does not lose the figures.
    let error = student::train::<burn::backend::Autodiff<burn::backend::Flex>>(&cfg, &Default::default(), &opts).err().map(|e| e.to_string());
    let m = student::read_metrics(&work.join("run"))?;
    let rss_mb = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0);
    let tps = m.last().map_or(f64::NAN, |s| s.tokens_per_s);
    let loss: Vec<f64> = m.iter().map(|s| s.loss).collect();
    println!("{}", serde_json::json!({ "seq": seq, "gradient_checkpointing": gc, "tokens_per_s": tps, "peak_rss_mb": rss_mb, "loss": loss, "error": error }));
    Ok(())
}
