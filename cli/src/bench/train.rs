//! `distill bench train`: forward + backward + AdamW tokens/s of the student trainer on a small
//! Qwen shape (random init, f32, CPU by default) next to the same model in PyTorch
//! (`benches/train_pytorch.py`), and peak RSS against the analytic minimum.
//!
//! It drives the real trainer (`student::train` on a generated token file), so what is timed
//! is exactly what `distill student train` does per step.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;

use crate::backend::DeviceKind;
use crate::with_backend;

/// Arguments of `distill bench train`.
#[derive(clap::Args, Debug)]
pub struct TrainBenchArgs {
    /// Hidden size.
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 8)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Key/value heads (GQA).
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    /// MLP intermediate size.
    #[arg(long, default_value_t = 1408)]
    intermediate: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 32000)]
    vocab: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 512)]
    seq: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Timed optimizer steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: u64,
    /// Train in bf16 (GPU backends; CPU falls back to f32).
    #[arg(long)]
    bf16: bool,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Scratch directory (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Python interpreter for the PyTorch peer.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip the PyTorch peer.
    #[arg(long)]
    no_peer: bool,
    /// Train with `train.gradient_checkpointing = true` (the peer with
    /// `gradient_checkpointing_enable()`).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Sweep: for each length, one row per step (batch 1) with and without gradient
    /// checkpointing, each run in its own child process so its peak RSS is its own, next to
    /// PyTorch with gradient checkpointing; prints a table.
    #[arg(long, value_delimiter = ',')]
    seq_lens: Vec<usize>,
    /// With `--seq-lens`: skip the runs without checkpointing (they need far more memory).
    #[arg(long)]
    only_checkpointed: bool,
    /// Print one JSON line with tokens/s and peak RSS instead of the report (sweep children).
    #[arg(long, hide = true)]
    json: bool,
    /// Data-parallel scaling instead: one run per listed peer count (e.g. `1,2`), each peer
    /// `batch` rows per step on its own copy of --device; reports tokens/s and all-reduce
    /// seconds per step. Peer count 1 runs twice: plain (no collective) and as a group of
    /// one through burn-collective, to show the collective's own overhead.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<usize>,
    /// With --peers: also run each peer count > 1 with `train.shard_optimizer` (ZeRO-1).
    #[arg(long)]
    shard_optimizer: bool,
}

/// Runs the benchmark.
pub fn run(args: TrainBenchArgs) -> anyhow::Result<()> {
    if !args.seq_lens.is_empty() {
        return sweep(&args);
    }
    let scratch = std::env::temp_dir().join(format!("distill-bench-train-{}", std::process::id()));
    let work = args.work_dir.clone().unwrap_or_else(|| scratch.clone());
    std::fs::create_dir_all(&work)?;
    let result = run_in(&args, &work);
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn run_in(args: &TrainBenchArgs, work: &Path) -> anyhow::Result<()> {
    if !args.peers.is_empty() {
        return run_peers(args, work);
    }
    let train = work.join("bench_tokens.jsonl");
    write_rows(&train, args, args.batch * (args.steps as usize + 1))?;
    let cfg = bench_config(args, &train, &work.join("run"))?;
    let opts = student::RunOptions {
        resume: false,
        // the bench's own scratch run: a rerun with the same --work-dir replaces it
        overwrite: true,
        progress: false,
        bf16_supported: args.device != DeviceKind::Cpu,
        ..Default::default()
    };
    with_backend!(args.device, train_on(&cfg, &opts))?;
    let metrics = student::read_metrics(&work.join("run"))?;
    let timed: Vec<f64> = metrics.iter().skip(1).map(|m| m.tokens_per_s).collect();
    let ours = timed.iter().sum::<f64>() / timed.len().max(1) as f64;
    let rss = peak_rss_mb();
    if args.json {
        println!("{}", serde_json::json!({ "tokens_per_s": ours, "peak_rss_mb": rss }));
        return Ok(());
    }
    let params = param_count(args) as f64;
    let states_mb = params * 4.0 * 4.0 / 1e6;
    let acts_mb = activation_bytes(args) / 1e6;
    println!(
        "shape          : hidden {} × {} layers, heads {}/{}, inter {}, vocab {}, {} × {} tokens, {:.1}M params",
        args.hidden, args.layers, args.heads, args.kv_heads, args.intermediate, args.vocab, args.batch, args.seq, params / 1e6
    );
    println!(
        "distill student: {ours:.0} tokens/s fwd+bwd+AdamW (mean of {} steps after warm-up; per step: {})",
        timed.len(),
        timed.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "peak RSS       : {rss:.0} MB; analytic minimum {:.0} MB = weights+grads+2 Adam moments {states_mb:.0} MB + activations ≈{acts_mb:.0} MB",
        states_mb + acts_mb
    );
    if args.no_peer {
        return Ok(());
    }
    let peer = match run_peer(args, args.seq, args.batch, args.gradient_checkpointing) {
        Ok(p) => p,
        Err(e) => {
            println!("PyTorch        : not measured ({e})");
            println!("reference      : 325 tokens/s measured on this machine class (4 × 512 tokens, 2 threads)");
            return Ok(());
        }
    };
    let theirs = peer["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "PyTorch        : {theirs:.0} tokens/s (torch {}, {} threads), peak RSS {:.0} MB",
        peer["torch"].as_str().unwrap_or("?"),
        peer["threads"],
        peer["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)
    );
    println!("ratio          : {:.2}x (target >= 1.0x)", ours / theirs);
    Ok(())
}

/// `--peers 1,2`: the same per-peer work on 1, 2, … data-parallel peers.
fn run_peers(args: &TrainBenchArgs, work: &Path) -> anyhow::Result<()> {
    let most = args.peers.iter().copied().max().unwrap_or(1).max(1);
    let train = work.join("bench_tokens.jsonl");
    write_rows(&train, args, most * args.batch * (args.steps as usize + 1))?;
    let opts = student::RunOptions {
        // the bench's own scratch runs: a rerun with the same --work-dir replaces them
        overwrite: true,
        bf16_supported: args.device != DeviceKind::Cpu,
        ..Default::default()
    };
    println!("peers  mode        tokens/s  all-reduce s/step  (each peer {} × {} tokens per step)", args.batch, args.seq);
    let mut runs = Vec::new();
    for &n in &args.peers {
        let n = n.max(1);
        if n == 1 {
            runs.extend([(1, "plain", false, false), (1, "collective", true, false)]);
        } else {
            runs.push((n, "replicated", false, false));
            if args.shard_optimizer {
                runs.push((n, "zero-1", false, true));
            }
        }
    }
    for (n, mode, force_collective, shard) in runs {
        let out = work.join(format!("run-peers-{n}-{mode}"));
        let mut cfg = bench_config(args, &train, &out)?;
        cfg.train.shard_optimizer = shard;
        cfg.train.devices = (0..n)
            .map(|i| match args.device {
                DeviceKind::Cpu => "cpu".to_string(),
                #[allow(unreachable_patterns)]
                _ => format!("cuda:{i}"),
            })
            .collect();
        let specs = student::distributed::parse_devices(&cfg.train.devices).map_err(|e| anyhow::anyhow!(e))?;
        let dist = student::DistributedOptions { force_collective, ..Default::default() };
        crate::student_cmd::train_peers(&cfg, &specs, &opts, &dist)?;
        let metrics = student::read_metrics(&out)?;
        let timed: Vec<_> = metrics.iter().skip(1).collect();
        let k = timed.len().max(1) as f64;
        let tps = timed.iter().map(|m| m.tokens_per_s).sum::<f64>() / k;
        let ar = timed.iter().map(|m| m.all_reduce_s.unwrap_or(0.0)).sum::<f64>() / k;
        println!("{n:>5}  {mode:<10}  {tps:>8.0}  {ar:>17.4}");
    }
    Ok(())
}

/// The benchmark's training config (random-init Qwen shape on generated token rows).
fn bench_config(args: &TrainBenchArgs, train: &Path, out: &Path) -> anyhow::Result<student::TrainConfig> {
    let cfg_text = format!(
        r#"
[model]
init = "random"
[model.arch]
model_type = "qwen2"
architectures = ["Qwen2ForCausalLM"]
vocab_size = {vocab}
hidden_size = {hidden}
intermediate_size = {inter}
num_hidden_layers = {layers}
num_attention_heads = {heads}
num_key_value_heads = {kv}
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
batch_size = {batch}
max_steps = {steps}
shuffle = false
dtype = "{dtype}"
loss_chunk = {chunk}
gradient_checkpointing = {gc}
[output]
dir = "{out}"
"#,
        vocab = args.vocab,
        hidden = args.hidden,
        inter = args.intermediate,
        layers = args.layers,
        heads = args.heads,
        kv = args.kv_heads,
        maxpos = args.seq.max(2048),
        train = train.display(),
        seq = args.seq,
        chunk = LOSS_CHUNK.min(args.seq),
        batch = args.batch,
        steps = args.steps + 1,
        dtype = if args.bf16 { "bf16" } else { "f32" },
        out = out.display(),
        gc = args.gradient_checkpointing,
    );
    Ok(student::TrainConfig::from_toml_str(&cfg_text, &[], "bench", None)?)
}


/// Runs `benches/train_pytorch.py` on the bench shape; its JSON summary or why not.
fn run_peer(args: &TrainBenchArgs, seq: usize, batch: usize, checkpointing: bool) -> Result<serde_json::Value, String> {
    let script = Path::new("benches/train_pytorch.py");
    let mut cmd = std::process::Command::new(&args.python);
    cmd.arg(script)
        .args(["--hidden", &args.hidden.to_string()])
        .args(["--layers", &args.layers.to_string()])
        .args(["--heads", &args.heads.to_string()])
        .args(["--kv-heads", &args.kv_heads.to_string()])
        .args(["--intermediate", &args.intermediate.to_string()])
        .args(["--vocab", &args.vocab.to_string()])
        .args(["--seq", &seq.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--steps", &args.steps.to_string()]);
    if checkpointing {
        cmd.arg("--gradient-checkpointing");
    }
    let o = cmd.output().map_err(|e| format!("cannot run {}: {e}", args.python))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(format!("{}: {} {}", script.display(), o.status, err.lines().last().unwrap_or("")));
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| "train_pytorch.py printed no JSON summary".to_string())
}

/// One sweep run of ours in a child process: (tokens/s, peak RSS MB) or why not.
fn child_run(args: &TrainBenchArgs, seq: usize, checkpointing: bool) -> Result<(f64, f64), String> {
    use clap::ValueEnum;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let device = args.device.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_else(|| "cpu".into());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "train", "--json", "--no-peer", "--batch", "1", "--device", &device])
        .args(["--hidden", &args.hidden.to_string()])
        .args(["--layers", &args.layers.to_string()])
        .args(["--heads", &args.heads.to_string()])
        .args(["--kv-heads", &args.kv_heads.to_string()])
        .args(["--intermediate", &args.intermediate.to_string()])
        .args(["--vocab", &args.vocab.to_string()])
        .args(["--seq", &seq.to_string()])
        .args(["--steps", &args.steps.to_string()]);
    if checkpointing {
        cmd.arg("--gradient-checkpointing");
    }
    if args.bf16 {
        cmd.arg("--bf16");
    }
    let o = cmd.output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("child {}", o.status));
    }
    let v: serde_json::Value = String::from_utf8_lossy(&o.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or("child printed no JSON")?;
    Ok((v["tokens_per_s"].as_f64().unwrap_or(f64::NAN), v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)))
}

/// `--seq-lens`: the memory/speed table with and without checkpointing next to PyTorch.
fn sweep(args: &TrainBenchArgs) -> anyhow::Result<()> {
    let cell = |r: &Result<(f64, f64), String>| match r {
        Ok((t, m)) => format!("{t:>8.1} tok/s {m:>8.0} MB"),
        Err(e) => format!("{:>27}", format!("({e})")),
    };
    println!(
        "shape: hidden {} × {} layers, heads {}/{}, inter {}, vocab {}, one row, {} timed step(s) after a warm-up; peak RSS of the whole process",
        args.hidden, args.layers, args.heads, args.kv_heads, args.intermediate, args.vocab, args.steps
    );
    println!("{:>6} | {:>27} | {:>27} | {:>27} | ckpt/torch RSS | ckpt/plain tok/s | ckpt/torch tok/s", "seq", "distill plain", "distill checkpointed", "PyTorch checkpointed+SDPA");
    for &seq in &args.seq_lens {
        let plain = if args.only_checkpointed { Err("skipped".to_string()) } else { child_run(args, seq, false) };
        let ckpt = child_run(args, seq, true);
        let peer = if args.no_peer {
            Err("no peer".to_string())
        } else {
            run_peer(args, seq, 1, true).map(|v| (v["tokens_per_s"].as_f64().unwrap_or(f64::NAN), v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)))
        };
        let ratio = |a: &Result<(f64, f64), String>, b: &Result<(f64, f64), String>, f: fn(&(f64, f64)) -> f64| match (a, b) {
            (Ok(x), Ok(y)) => format!("{:.2}", f(x) / f(y)),
            _ => "-".into(),
        };
        println!(
            "{seq:>6} | {} | {} | {} | {:>14} | {:>16} | {:>16}",
            cell(&plain),
            cell(&ckpt),
            cell(&peer),
            ratio(&ckpt, &peer, |x| x.1),
            ratio(&ckpt, &plain, |x| x.0),
            ratio(&ckpt, &peer, |x| x.0)
        );
    }
    println!("targets: ckpt/torch RSS <= 0.7, ckpt/plain tok/s >= 0.75, ckpt/torch tok/s >= 1.0");
    Ok(())
}

fn train_on<B: Backend>(device: B::Device, cfg: &student::TrainConfig, opts: &student::RunOptions) -> anyhow::Result<()> {
    student::train::<Autodiff<B>>(cfg, &device, opts).context("bench training run")?;
    Ok(())
}

/// Deterministic pseudo-random token rows (labels = ids: every position trains).
fn write_rows(path: &Path, a: &TrainBenchArgs, rows: usize) -> anyhow::Result<()> {
    let mut s = String::new();
    let mut rng = super::ids::TokenRng::new(0x2545_F491_4F6C_DD1D);
    for _ in 0..rows {
        let ids = rng.ids(a.seq, a.vocab);
        s.push_str(&serde_json::json!({ "input_ids": ids, "labels": ids }).to_string());
        s.push('\n');
    }
    std::fs::write(path, s)?;
    Ok(())
}

fn param_count(a: &TrainBenchArgs) -> usize {
    let hd = a.hidden / a.heads;
    let attn = a.hidden * a.heads * hd * 2 + a.hidden * a.kv_heads * hd * 2 + (a.heads + 2 * a.kv_heads) * hd;
    let mlp = 3 * a.hidden * a.intermediate;
    a.vocab * a.hidden + a.layers * (attn + mlp + 2 * a.hidden) + a.hidden
}

/// Positions per cross-entropy chunk in the benchmark run.
const LOSS_CHUNK: usize = 128;

/// Activations autograd must keep (f32): per layer and token the inputs of every matmul and
/// norm (≈ 8·hidden + 3·intermediate floats) plus attention scores and probabilities
/// (2·heads·T per token); plus one cross-entropy chunk of logits, probabilities and their
/// gradient (3·vocab per position of a chunk; the fused loss keeps no more).
fn activation_bytes(a: &TrainBenchArgs) -> f64 {
    let tokens = (a.batch * a.seq) as f64;
    let per_layer = 8.0 * a.hidden as f64 + 3.0 * a.intermediate as f64 + 2.0 * (a.heads * a.seq) as f64;
    let ce_chunk = 3.0 * (a.batch * LOSS_CHUNK.min(a.seq) * a.vocab) as f64;
    4.0 * (tokens * a.layers as f64 * per_layer + ce_chunk)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
