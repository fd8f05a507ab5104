//! What the memory planner needs to know about a run that is not in the TOML: the decoder's
//! shape (from `config.json`, the inline `[model.arch]`, or a table of the recipes' students
//! so that a recipe can be planned before the checkpoint is downloaded) and the memory of
//! the device it is planned for.

use std::path::Path;

use models::{Architecture, ModelConfig};
use serde::Serialize;

use crate::config::{ModelInit, TrainConfig};
use crate::error::{Result, StudentError};

/// The dimensions of a Qwen2 / Llama decoder that decide its memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Where the shape came from (a file, `[model.arch]`, or a known hub model).
    pub source: String,
    /// Vocabulary rows.
    pub vocab: u64,
    /// Residual width.
    pub hidden: u64,
    /// MLP inner width.
    pub intermediate: u64,
    /// Decoder layers.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads.
    pub kv_heads: u64,
    /// Width of one head.
    pub head_dim: u64,
    /// `lm_head` shares `embed_tokens`.
    pub tied: bool,
    /// q/k/v carry biases (Qwen2).
    pub qkv_bias: bool,
    /// MLP projections carry biases.
    pub mlp_bias: bool,
}

/// `(name, vocab, hidden, intermediate, layers, heads, kv_heads, tied, qkv_bias)` of the
/// students the shipped recipes train, from their hub `config.json`s (head_dim = hidden/heads).
/// One row of [`KNOWN`].
type KnownShape = (&'static str, u64, u64, u64, u64, u64, u64, bool, bool);

const KNOWN: &[KnownShape] = &[
    ("Qwen2.5-Math-7B", 152_064, 3584, 18_944, 28, 28, 4, false, true),
    ("Qwen2.5-7B", 152_064, 3584, 18_944, 28, 28, 4, false, true),
    ("DeepSeek-R1-Distill-Qwen-7B", 152_064, 3584, 18_944, 28, 28, 4, false, true),
    ("Qwen2.5-Math-1.5B", 151_936, 1536, 8960, 28, 12, 2, true, true),
    ("Qwen2.5-1.5B", 151_936, 1536, 8960, 28, 12, 2, true, true),
    ("DeepSeek-R1-Distill-Qwen-1.5B", 151_936, 1536, 8960, 28, 12, 2, false, true),
    ("Qwen2.5-0.5B", 151_936, 896, 4864, 24, 14, 2, true, true),
    ("Llama-3.1-8B", 128_256, 4096, 14_336, 32, 32, 8, false, false),
    ("Meta-Llama-3.1-8B", 128_256, 4096, 14_336, 32, 32, 8, false, false),
    ("DeepSeek-R1-Distill-Llama-8B", 128_256, 4096, 14_336, 32, 32, 8, false, false),
];

impl Shape {
    /// The shape of a parsed `config.json` (Qwen2 / Llama only).
    pub fn from_model_config(c: &ModelConfig, source: &str) -> Result<Self> {
        if !matches!(c.architecture, Architecture::Qwen2 | Architecture::Llama) {
            return Err(StudentError::Config {
                path: source.into(),
                msg: format!("the memory planner covers Qwen2/Llama decoders, not {}", c.architecture.class_name()),
            });
        }
        Ok(Shape {
            source: source.into(),
            vocab: c.vocab_size as u64,
            hidden: c.hidden_size as u64,
            intermediate: c.intermediate_size as u64,
            layers: c.num_hidden_layers as u64,
            heads: c.num_attention_heads as u64,
            kv_heads: c.num_key_value_heads as u64,
            head_dim: c.head_dim as u64,
            tied: c.tie_word_embeddings,
            qkv_bias: c.attention_bias,
            mlp_bias: c.mlp_bias,
        })
    }

    /// A recipe student by its directory name (`models/Qwen2.5-Math-7B` → `Qwen2.5-Math-7B`).
    pub fn known(name: &str) -> Option<Self> {
        KNOWN.iter().find(|k| k.0.eq_ignore_ascii_case(name)).map(|k| Shape {
            source: format!("known shape of {}", k.0),
            vocab: k.1,
            hidden: k.2,
            intermediate: k.3,
            layers: k.4,
            heads: k.5,
            kv_heads: k.6,
            head_dim: k.2 / k.5,
            tied: k.7,
            qkv_bias: k.8,
            mlp_bias: false,
        })
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> u64 {
        self.heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> u64 {
        self.kv_heads * self.head_dim
    }

    /// Parameters of one decoder layer.
    pub fn layer_params(&self) -> u64 {
        let (h, q, kv, i) = (self.hidden, self.q_dim(), self.kv_dim(), self.intermediate);
        let attn = h * q + 2 * h * kv + q * h + if self.qkv_bias { q + 2 * kv } else { 0 };
        let mlp = 3 * h * i + if self.mlp_bias { 2 * i + h } else { 0 };
        attn + mlp + 2 * h
    }

    /// All parameters (a tied head counted once).
    pub fn params(&self) -> u64 {
        let embed = self.vocab * self.hidden;
        embed + self.layers * self.layer_params() + self.hidden + if self.tied { 0 } else { embed }
    }
}

/// The decoder shape a config trains: `[model.arch]` / `model.config` for random init, the
/// checkpoint's `config.json`, or (checkpoint not downloaded yet) a known recipe student.
pub fn resolve_shape(cfg: &TrainConfig) -> Result<Shape> {
    let merr = |p: &Path, e: models::ModelError| StudentError::Config {
        path: p.display().to_string(),
        msg: e.to_string(),
    };
    if let (ModelInit::Random, None, Some(arch)) = (cfg.model.init, &cfg.model.config, &cfg.model.arch) {
        let raw = serde_json::to_value(arch).map_err(|e| StudentError::Config {
            path: "[model.arch]".into(),
            msg: e.to_string(),
        })?;
        let c = ModelConfig::from_value(raw, Path::new("[model.arch]")).map_err(|e| merr(Path::new("[model.arch]"), e))?;
        return Shape::from_model_config(&c, "[model.arch]");
    }
    let file = match (cfg.model.init, &cfg.model.config, &cfg.model.path) {
        (ModelInit::Random, Some(f), _) => f.clone(),
        (_, _, Some(p)) => p.join("config.json"),
        _ => {
            return Err(StudentError::Config {
                path: "[model]".into(),
                msg: "no model shape: set model.path, model.config or model.arch".into(),
            })
        }
    };
    if file.is_file() {
        let c = ModelConfig::from_file(&file).map_err(|e| merr(&file, e))?;
        return Shape::from_model_config(&c, &file.display().to_string());
    }
    let name = cfg.model.path.as_deref().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or("");
    Shape::known(name).ok_or_else(|| StudentError::Config {
        path: file.display().to_string(),
        msg: format!("{} does not exist and {name:?} is not a known recipe student; download the model first", file.display()),
    })
}

/// The device a run is planned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// NVIDIA H200, 141 GB HBM3e.
    H200,
    /// NVIDIA H100 80 GB.
    H100,
    /// NVIDIA A100 80 GB.
    A100,
    /// This machine's RAM (`MemTotal` of /proc/meminfo).
    Cpu,
}

impl Target {
    /// Parses `h200`, `h100-80g`, `a100-80g`, `cpu`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "h200" => Some(Target::H200),
            "h100-80g" | "h100" => Some(Target::H100),
            "a100-80g" | "a100" => Some(Target::A100),
            "cpu" => Some(Target::Cpu),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Target::H200 => "h200",
            Target::H100 => "h100-80g",
            Target::A100 => "a100-80g",
            Target::Cpu => "cpu",
        }
    }

    /// Whether this is a GPU (CUDA context, caching allocator).
    pub fn is_gpu(self) -> bool {
        self != Target::Cpu
    }

    /// Memory of one device in bytes: the marketed capacity for GPUs (decimal GB, which is
    /// below what `nvidia-smi` reports: 141 GB vs 143,771 MiB for an H200, so the
    /// difference is margin), `MemTotal` for the CPU.
    pub fn budget_bytes(self) -> Result<u64> {
        Ok(match self {
            Target::H200 => 141_000_000_000,
            Target::H100 | Target::A100 => 80_000_000_000,
            Target::Cpu => cpu_ram_bytes()?,
        })
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// `MemTotal` of /proc/meminfo in bytes.
pub fn cpu_ram_bytes() -> Result<u64> {
    let p = Path::new("/proc/meminfo");
    let text = std::fs::read_to_string(p).map_err(|e| StudentError::io(p, e))?;
    parse_meminfo(&text).ok_or_else(|| StudentError::Data("/proc/meminfo has no MemTotal line".into()))
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_students_have_their_hub_parameter_counts() {
        // Hub model cards: 7.62B, 1.54B (tied), 8.03B.
        let p = |n: &str| Shape::known(n).unwrap().params() as f64 / 1e9;
        assert!((p("Qwen2.5-Math-7B") - 7.615).abs() < 0.01, "{}", p("Qwen2.5-Math-7B"));
        assert!((p("Qwen2.5-Math-1.5B") - 1.544).abs() < 0.01, "{}", p("Qwen2.5-Math-1.5B"));
        assert!((p("Llama-3.1-8B") - 8.030).abs() < 0.01, "{}", p("Llama-3.1-8B"));
    }

    #[test]
    fn meminfo_and_targets() {
        assert_eq!(parse_meminfo("MemTotal:       24576 kB\nMemFree: 1 kB\n"), Some(24576 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
        assert_eq!(Target::parse("H100-80G"), Some(Target::H100));
        assert_eq!(Target::parse("tpu"), None);
        assert_eq!(Target::H200.budget_bytes().unwrap(), 141_000_000_000);
    }
}
