//! The training config: one TOML file (`distill student train --config FILE`) plus `--set
//! key=value` overrides. Unknown keys are errors so that a typo never silently trains with a
//! default. Every default below is documented where it is declared.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};

/// The whole run description.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Which student to train.
    pub model: ModelSection,
    /// Training (and held-out) data.
    pub data: DataSection,
    /// AdamW hyperparameters.
    #[serde(default)]
    pub optim: OptimSection,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleSection,
    /// Batching, length of the run, precision, seed.
    #[serde(default)]
    pub train: TrainSection,
    /// Where checkpoints, metrics and the final model go.
    pub output: OutputSection,
    /// Low-rank adapters; absent = full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraSection>,
    /// Logit distillation from a teacher; absent = plain SFT.
    #[serde(default)]
    pub distill: Option<DistillSection>,
}

/// How the student's weights are obtained.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelInit {
    /// Load a Hugging Face checkpoint directory (`path`). Default.
    #[default]
    Pretrained,
    /// Random init from an architecture (`arch` table or `config` file), e.g. the quickstart's
    /// tiny students.
    Random,
}

/// `[model]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// HF checkpoint directory (config.json, safetensors, tokenizer files). Required for
    /// `init = "pretrained"`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `pretrained` (default) or `random`.
    #[serde(default)]
    pub init: ModelInit,
    /// For `init = "random"`: an HF `config.json` giving the architecture.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// For `init = "random"`: the architecture inline, with HF `config.json` keys
    /// (`model_type`, `hidden_size`, `num_hidden_layers`, `num_attention_heads`, …).
    #[serde(default)]
    pub arch: Option<toml::Table>,
    /// Tokenizer directory (tokenizer.json + tokenizer_config.json with the chat template).
    /// Default: `path`. Required for `format = "traces"|"messages"` with random init.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

/// Layout of the training files.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Teacher traces (problem/reasoning/answer) rendered with the student's chat template.
    #[default]
    Traces,
    /// Chat `messages` rows rendered with the student's chat template.
    Messages,
    /// Pre-tokenized rows: `input_ids` and `labels` (-100 = not trained).
    Tokens,
}

/// What to do with an example longer than `max_seq_len`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverLength {
    /// Drop it (counted in the build stats). Default: a truncated trace teaches the student
    /// to stop mid-thought without EOS.
    #[default]
    Drop,
    /// Keep the first `max_seq_len` tokens.
    Truncate,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training file or directory of shards (Parquet or JSONL).
    pub train: PathBuf,
    /// Held-out file for the eval loss; absent = no held-out loss.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Row layout. Default `traces`.
    #[serde(default)]
    pub format: DataFormat,
    /// Pack several examples per row with per-document masks and restarting positions.
    /// Default true (what open-r1 does for R1 traces).
    #[serde(default = "yes")]
    pub packing: bool,
    /// Longest row in tokens. Default 4096.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// Over-length policy. Default `drop`.
    #[serde(default)]
    pub over_length: OverLength,
}

/// `[optim]`: AdamW with PyTorch semantics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Peak learning rate. Default 1e-5.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// (β1, β2). Default (0.9, 0.999) as `torch.optim.AdamW`.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// ε, added outside the square root. Default 1e-8.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay. Default 0.0 (HF Trainer's default).
    #[serde(default)]
    pub weight_decay: f64,
    /// Substrings of HF parameter names that get no weight decay. Default `["bias", "norm"]`
    /// (HF Trainer: biases and norm weights); `[]` decays every parameter.
    #[serde(default = "default_no_decay")]
    pub no_decay: Vec<String>,
    /// Global L2 gradient-norm clip; 0 = off. Default 1.0 (HF Trainer's default).
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
    /// `adamw` (default) or `adamw_8bit` (bitsandbytes' block-wise 8-bit AdamW: moments as
    /// 8-bit dynamic-map codes with one f32 absmax per 256 values, ~2 bytes per parameter
    /// instead of 8). Fixture cost: max |Δloss| 6.5e-4 over 300 steps vs f32 AdamW
    /// (`optim_lean`).
    #[serde(default)]
    pub kind: OptimKind,
    /// Storage of the `adamw` moments: `f32` (default, exact PyTorch) or `bf16` (4 bytes per
    /// parameter instead of 8; the update is computed in f32 and rounded to nearest).
    /// Fixture cost: max |Δloss| 6e-5 over 300 steps vs f32.
    #[serde(default)]
    pub state_dtype: StateDtype,
}

/// Which AdamW keeps the moments.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum OptimKind {
    /// f32 (or `state_dtype`) moments, PyTorch-exact. Default.
    #[default]
    #[serde(rename = "adamw")]
    Adamw,
    /// Block-wise 8-bit moments with bitsandbytes' semantics (`bnb.optim.AdamW8bit`).
    #[serde(rename = "adamw_8bit")]
    Adamw8bit,
}

/// Storage dtype of the `adamw` moments.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateDtype {
    /// Default.
    #[default]
    F32,
    /// Moments stored in bf16, math in f32.
    Bf16,
}

/// Learning-rate schedule kind.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Warmup, then the peak LR.
    Constant,
    /// Warmup, then linear decay to `min_lr_ratio · lr`.
    Linear,
    /// Warmup, then half-cosine decay to `min_lr_ratio · lr`. Default.
    #[default]
    Cosine,
}

/// `[schedule]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// Default `cosine`.
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Linear warmup length in optimizer steps. Default 0.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Warmup as a fraction of the total steps (used when `warmup_steps` is 0). Default 0.
    #[serde(default)]
    pub warmup_ratio: f64,
    /// Final LR as a fraction of the peak. Default 0.
    #[serde(default)]
    pub min_lr_ratio: f64,
}

/// Compute precision.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrainDtype {
    /// Everything in f32. Default, and the only choice on CPU.
    #[default]
    F32,
    /// bf16 compute with f32 master weights and optimizer state (GPU backends).
    Bf16,
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Rows per micro-batch. Default 1.
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step. Default 1.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Optimizer steps; 0 = run `epochs` full passes. Default 0.
    #[serde(default)]
    pub max_steps: u64,
    /// Passes over the data when `max_steps` is 0. Default 1.
    #[serde(default = "one_u64")]
    pub epochs: u64,
    /// Shuffle the rows each epoch (deterministically from `seed`). Default true.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Default `f32`.
    #[serde(default)]
    pub dtype: TrainDtype,
    /// Seed of data order, LoRA init, dropout and random init. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Positions per cross-entropy chunk (bounds the logits materialised at once). Default 1024.
    #[serde(default = "default_loss_chunk")]
    pub loss_chunk: usize,
    /// Cross-entropy with a hand-written output-projection gradient, one logits chunk alive at
    /// a time (see `fused_ce`). `false` = plain autodiff through every chunk's log-softmax
    /// (reference path; more memory). Default true.
    #[serde(default = "yes")]
    pub fused_ce: bool,
    /// Keep f32 master weights (default true). `false` stores the parameters in bf16 (needs
    /// `dtype = "bf16"`, full fine-tuning): the update is computed in f32 and rounded back
    /// with seeded stochastic rounding, so it is unbiased and small updates are not lost.
    /// Fixture cost: max |Δloss| 0.0105 over 300 steps vs f32 masters.
    #[serde(default = "yes")]
    pub master_weights: bool,
    /// Keep only each decoder layer's input in the forward pass and recompute the layer in
    /// backward, with block-wise attention (no `[S, S]` scores or masks); same gradients, far
    /// less activation memory (see `checkpointed`). HF's name. Default false.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// With `gradient_checkpointing`: keep the input of every k-th layer only (segments of k
    /// layers are recomputed together). Default 1.
    #[serde(default = "one")]
    pub checkpoint_every: usize,
    /// ZeRO-1: split optimizer states (and f32 masters) over data-parallel devices (what
    /// `distill student plan --gpus N` divides). Default false.
    #[serde(default)]
    pub shard_optimizer: bool,
    /// Held-out loss every N optimizer steps (0 = only at the end). Default 0.
    #[serde(default)]
    pub eval_every: u64,
    /// At most this many held-out micro-batches per evaluation (0 = all). Default 0.
    #[serde(default)]
    pub eval_max_batches: usize,
    /// Data-parallel peers, one per entry: `"cpu"`, `"cuda"` or `"cuda:<index>"` (see
    /// `distributed`). Empty (default) or one entry = single device. With N devices each
    /// optimizer step covers N·`grad_accum` micro-batches, micro-batch m on peer m mod N, so
    /// N peers equal one device with `grad_accum` multiplied by N.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Machines of a multi-node run, each running the peers of `devices` (world = nodes ×
    /// devices). Default 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub nodes: usize,
    /// This machine's index in 0..`nodes`; node 0 hosts the orchestrator and writes the files.
    /// Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub node_rank: usize,
    /// `HOST:PORT` of burn-collective's global orchestrator (required when `nodes` > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// `HOST:PORT` the other nodes reach this node's tensor service at. Default: the address
    /// this machine uses to reach the orchestrator, port = orchestrator port + 1 + node_rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_address: Option<String>,
}

/// `[output]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Run directory: metrics.jsonl, checkpoint-<step>/, final/, config + manifest.
    pub dir: PathBuf,
    /// Write `checkpoint-<step>/` every N optimizer steps (0 = never). Default 0.
    #[serde(default)]
    pub save_every: u64,
    /// Keep only the newest N checkpoints (0 = keep all). Default 2.
    #[serde(default = "two")]
    pub keep_last: usize,
    /// Largest safetensors shard in bytes. Default 5 GB (transformers' default).
    #[serde(default = "default_shard")]
    pub max_shard_bytes: u64,
    /// dtype of the weights in `final/`. Default: the source checkpoint's `torch_dtype`
    /// (bf16 for bf16 hub models, else f32). `checkpoint-<step>/` always holds the f32 master
    /// weights so that resuming is exact.
    #[serde(default)]
    pub save_dtype: Option<TrainDtype>,
}

/// `[lora]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Adapter rank r. Default 16.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Scale numerator: ΔW = (alpha / r)·B·A. Default 32.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter input. Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Names of the linear layers that get adapters (last path component before `.weight`).
    /// Default all attention and MLP projections.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
}

/// Which divergence logit distillation minimises.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KdKind {
    /// KL(teacher ‖ student) — mode covering. Default.
    #[default]
    Forward,
    /// KL(student ‖ teacher) — mode seeking.
    Reverse,
    /// Generalised JSD with mixture weight β.
    Jsd,
}

/// `[distill]`: logit distillation from a teacher sharing the student's tokenizer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistillSection {
    /// Teacher HF checkpoint directory, run in-process.
    pub teacher: PathBuf,
    /// Default `forward`.
    #[serde(default)]
    pub kind: KdKind,
    /// Loss = (1 − weight)·CE + weight·KD. Default 0.5.
    #[serde(default = "half")]
    pub weight: f64,
    /// JSD mixture weight β. Default 0.5.
    #[serde(default = "half")]
    pub beta: f64,
    /// Softmax temperature of both distributions (KD term scaled by T²). Default 1.
    #[serde(default = "one_f")]
    pub temperature: f64,
}

fn yes() -> bool {
    true
}
fn is_one(n: &usize) -> bool {
    *n == 1
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn one_u64() -> u64 {
    1
}
fn one_f() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn default_max_seq_len() -> usize {
    4096
}
fn default_lr() -> f64 {
    1e-5
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_no_decay() -> Vec<String> {
    vec!["bias".into(), "norm".into()]
}
fn default_max_grad_norm() -> f64 {
    1.0
}
/// Default `train.seed` of every recipe (SFT, KD, LoRA and GRPO).
pub(crate) fn default_seed() -> u64 {
    42
}
/// Default positions per logits chunk of the fused heads (SFT/KD `train.loss_chunk`, GRPO
/// `grpo.loss_chunk`).
pub(crate) fn default_loss_chunk() -> usize {
    1024
}
fn default_shard() -> u64 {
    5_000_000_000
}
fn default_rank() -> usize {
    16
}
fn default_alpha() -> f64 {
    32.0
}
fn default_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl LoraSection {
    /// The default `target_modules`: every attention and MLP projection.
    pub fn default_targets() -> Vec<String> {
        default_targets()
    }
}

impl Default for OptimSection {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: 0.0,
            no_decay: default_no_decay(),
            max_grad_norm: default_max_grad_norm(),
            kind: OptimKind::Adamw,
            state_dtype: StateDtype::F32,
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            batch_size: 1,
            grad_accum: 1,
            max_steps: 0,
            epochs: 1,
            shuffle: true,
            dtype: TrainDtype::F32,
            seed: default_seed(),
            loss_chunk: default_loss_chunk(),
            fused_ce: true,
            master_weights: true,
            gradient_checkpointing: false,
            checkpoint_every: 1,
            shard_optimizer: false,
            eval_every: 0,
            eval_max_batches: 0,
            devices: Vec::new(),
            nodes: 1,
            node_rank: 0,
            orchestrator: None,
            node_address: None,
        }
    }
}

impl TrainConfig {
    /// Parses a config file, applies `key=value` overrides (dotted keys, TOML values; a value
    /// that is not valid TOML is taken as a string), resolves relative paths against the
    /// config file's directory, and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| StudentError::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, overrides, &path.display().to_string(), Some(base))
    }

    /// As [`TrainConfig::load`], from text (`origin` names it in errors; `base` resolves
    /// relative paths, `None` keeps them as written).
    pub fn from_toml_str(
        text: &str,
        overrides: &[String],
        origin: &str,
        base: Option<&Path>,
    ) -> Result<Self> {
        let mut cfg: TrainConfig = parse_with_overrides(text, overrides, origin)?;
        if let Some(base) = base {
            cfg.resolve_paths(base);
        }
        cfg.validate().map_err(|msg| config_error(origin, msg))?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            self.model.path.as_mut(),
            self.model.config.as_mut(),
            self.model.tokenizer.as_mut(),
            Some(&mut self.data.train),
            self.data.eval.as_mut(),
            self.distill.as_mut().map(|d| &mut d.teacher),
        ]
        .into_iter()
        .flatten()
        {
            resolve_relative(p, base);
        }
    }

    /// Checks the values serde cannot: ranges and required combinations.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(format!("optim.lr must be > 0, got {}", o.lr));
        }
        for (i, b) in o.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(format!("optim.betas[{i}] must be in [0, 1), got {b}"));
            }
        }
        if o.eps < 0.0 || o.weight_decay < 0.0 || o.max_grad_norm < 0.0 {
            return Err("optim.eps, optim.weight_decay and optim.max_grad_norm must be >= 0".into());
        }
        let s = &self.schedule;
        if !(0.0..=1.0).contains(&s.min_lr_ratio) || !(0.0..1.0).contains(&s.warmup_ratio) {
            return Err("schedule.min_lr_ratio must be in [0,1] and warmup_ratio in [0,1)".into());
        }
        let t = &self.train;
        if t.batch_size == 0 || t.grad_accum == 0 || t.loss_chunk == 0 || t.checkpoint_every == 0 {
            return Err("train.batch_size, train.grad_accum, train.loss_chunk and train.checkpoint_every must be >= 1".into());
        }
        if !t.master_weights && (t.dtype != TrainDtype::Bf16 || self.lora.is_some()) {
            return Err("train.master_weights = false needs train.dtype = \"bf16\" and full fine-tuning (no [lora])".into());
        }
        if o.kind == OptimKind::Adamw8bit && o.state_dtype != StateDtype::F32 {
            return Err("optim.state_dtype applies to optim.kind = \"adamw\"; adamw_8bit stores 8-bit moments".into());
        }
        if let Err(e) = crate::distributed::parse_devices(&t.devices) {
            return Err(format!("train.devices: {e}"));
        }
        crate::distributed::validate_nodes(t)?;
        if t.max_steps == 0 && t.epochs == 0 {
            return Err("one of train.max_steps or train.epochs must be > 0".into());
        }
        if self.data.max_seq_len < 2 {
            return Err("data.max_seq_len must be >= 2".into());
        }
        match self.model.init {
            ModelInit::Pretrained if self.model.path.is_none() => {
                return Err("model.path is required unless model.init = \"random\"".into())
            }
            ModelInit::Random if self.model.arch.is_none() && self.model.config.is_none() => {
                return Err("model.init = \"random\" needs model.arch or model.config".into())
            }
            _ => {}
        }
        if let Some(l) = &self.lora {
            if l.rank == 0 || !(0.0..1.0).contains(&l.dropout) || l.target_modules.is_empty() {
                return Err("lora.rank must be >= 1, lora.dropout in [0,1), target_modules non-empty".into());
            }
        }
        if let Some(d) = &self.distill {
            if !(0.0..=1.0).contains(&d.weight) || !(0.0..=1.0).contains(&d.beta) || d.temperature <= 0.0 {
                return Err("distill.weight and distill.beta must be in [0,1], temperature > 0".into());
            }
        }
        Ok(())
    }

    /// The tokenizer directory: `model.tokenizer`, else `model.path`.
    pub fn tokenizer_dir(&self) -> Option<&Path> {
        self.model.tokenizer.as_deref().or(self.model.path.as_deref())
    }
}

fn config_error(origin: &str, msg: String) -> StudentError {
    StudentError::Config { path: origin.to_string(), msg }
}

/// Parses a TOML config text and applies `--set key=value` overrides before typing it, so an
/// override is checked like a key in the file (`origin` names the text in errors). Shared by
/// every student config (SFT/KD and GRPO).
pub(crate) fn parse_with_overrides<T: serde::de::DeserializeOwned>(text: &str, overrides: &[String], origin: &str) -> Result<T> {
    let table: toml::Table = toml::from_str(text).map_err(|e| config_error(origin, e.to_string()))?;
    let mut value = toml::Value::Table(table);
    datasets::overrides::apply_overrides(&mut value, overrides).map_err(|msg| config_error("--set", msg))?;
    value.try_into().map_err(|e: toml::de::Error| config_error(origin, e.to_string()))
}

/// A path written relative to the config file's directory: taken from there when it does not
/// exist as written but does there.
pub(crate) fn resolve_relative(p: &mut PathBuf, base: &Path) {
    if p.is_relative() && !p.exists() && base.join(&*p).exists() {
        *p = base.join(&*p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[model]
path = "m"
[data]
train = "t.jsonl"
[output]
dir = "out"
"#;

    #[test]
    fn defaults_and_overrides() {
        let c = TrainConfig::from_toml_str(
            MIN,
            &["optim.lr=3e-5".into(), "train.dtype=bf16".into(), "optim.no_decay=[]".into()],
            "x",
            None,
        )
        .unwrap();
        assert_eq!(c.optim.lr, 3e-5);
        assert_eq!(c.train.dtype, TrainDtype::Bf16);
        assert!(c.optim.no_decay.is_empty());
        assert_eq!(c.optim.betas, [0.9, 0.999]);
        assert_eq!(c.schedule.kind, ScheduleKind::Cosine);
        assert!(c.data.packing);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = TrainConfig::from_toml_str(&format!("{MIN}\n[train]\nbatchsize = 2\n"), &[], "x", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("batchsize"), "{e}");
        let e = TrainConfig::from_toml_str(MIN, &["optim.lrr=1".into()], "x", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lrr"), "{e}");
    }

    #[test]
    fn validation() {
        let e = TrainConfig::from_toml_str(MIN, &["optim.lr=0".into()], "x", None).unwrap_err();
        assert!(e.to_string().contains("optim.lr"));
        let e = TrainConfig::from_toml_str(MIN, &["model.init=\"random\"".into()], "x", None).unwrap_err();
        assert!(e.to_string().contains("model.arch"));
    }
}
