//! Eval run configuration (`configs/eval/*.toml`) and `--set key=value` overrides.
//!
//! Defaults are the DeepSeek-R1 evaluation protocol: temperature 0.6, top-p 0.95, 32,768 new
//! tokens, k = 64 samples for AIME and 4 for MATH-500, no system prompt, the model's own chat
//! template, and the user prompt `problem + "\nPlease reason step by step, and put your final
//! answer within \boxed{}."`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::benchmarks::Columns;
use crate::summary::Role;
use crate::EvalError;

/// The R1 user-prompt template; `{problem}` is replaced by the problem text.
pub const R1_PROMPT_TEMPLATE: &str =
    "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}.";

pub use inference::BackendKind;

/// In-process engine sizing for `backend = "native"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NativeSettings {
    /// Sequences decoded together. Default: `model.concurrency`.
    pub max_batch: Option<usize>,
    /// KV-cache capacity per sequence (prompt + completion tokens). Default:
    /// `protocol.max_tokens` + 2048 so no prompt is cut short of its full budget. The engine
    /// preallocates `max_batch × max_seq_len` tokens of KV cache (Qwen2.5-7B: ~112 KiB per
    /// token in f32), so size the batch to the device.
    pub max_seq_len: Option<usize>,
    /// Weight and activation dtype: `f32` (default, exact reference numerics), `bf16` or
    /// `f16` (half the memory; GPUs).
    pub dtype: NativeDType,
}

/// Floating-point type the native engine runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NativeDType {
    /// 32-bit floats.
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

/// The model under evaluation and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Label in tables and reports. Default: the checkpoint's last path component.
    pub name: Option<String>,
    /// `teacher` (the reference `eval compare` measures deltas against) or `student` (default).
    pub role: Role,
    /// `native` (default) or `openai`.
    pub backend: BackendKind,
    /// Native: the HF checkpoint directory. OpenAI: the served model name (sent as `model`).
    /// Required.
    pub checkpoint: String,
    /// Requests kept in flight (native: also the default decode batch). Default 64.
    pub concurrency: usize,
    /// OpenAI-compatible client settings, exactly the teacher sampler's `[openai]` table
    /// (`base_urls`, `api_key_env`, `timeout_s`, retries, `stream`, `extra_body`, …); its
    /// `model` is replaced by `checkpoint`.
    pub openai: inference::OpenAiConfig,
    /// Native engine sizing.
    pub native: NativeSettings,
    /// OpenAI backend with a thinking budget: a directory holding the served model's
    /// `tokenizer.json` and `tokenizer_config.json` (with its chat template). Budget forcing
    /// continues the prompt rendered here through `/v1/completions` (see
    /// [`inference::budget_openai`]). Default none; the native backend reads the checkpoint's.
    pub tokenizer: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: None,
            role: Role::Student,
            backend: BackendKind::Native,
            checkpoint: String::new(),
            concurrency: 64,
            openai: inference::OpenAiConfig::default(),
            native: NativeSettings::default(),
            tokenizer: None,
        }
    }
}

impl ModelConfig {
    /// The label used in reports.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            Path::new(self.checkpoint.trim_end_matches('/'))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.checkpoint.clone())
        })
    }
}

/// Sampling protocol shared by all benchmarks of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// Default 0.6 (R1).
    pub temperature: f32,
    /// Default 0.95 (R1).
    pub top_p: f32,
    /// New-token budget. Default 32768 (R1).
    pub max_tokens: u32,
    /// User message; `{problem}` is replaced. Default [`R1_PROMPT_TEMPLATE`].
    pub prompt_template: String,
    /// System message. Default none (R1 recommends none).
    pub system_prompt: Option<String>,
    /// Run seed; per-sample seeds derive from it and the sample identity. Default 0.
    pub seed: u64,
    /// s1 budget forcing: stop thinking at this many tokens — `</think>` and `"\n\n"` are
    /// appended and the model answers within the rest of `max_tokens`. Default none.
    pub max_thinking_tokens: Option<u32>,
    /// s1 budget forcing: a `</think>` before this many thinking tokens is replaced by
    /// `wait_token`, at most `max_waits` times. Default none.
    pub min_thinking_tokens: Option<u32>,
    /// Text appended in place of a suppressed `</think>`. Default `"Wait"` (s1).
    pub wait_token: String,
    /// Most suppressions per sample, so a model that keeps closing early still answers.
    /// Default 4.
    pub max_waits: u32,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 32768,
            prompt_template: R1_PROMPT_TEMPLATE.into(),
            system_prompt: None,
            seed: 0,
            max_thinking_tokens: None,
            min_thinking_tokens: None,
            wait_token: "Wait".into(),
            max_waits: 4,
        }
    }
}

impl ProtocolConfig {
    /// The thinking budget of this protocol, `None` when neither a maximum nor a minimum is set.
    pub fn thinking_budget(&self) -> Option<inference::budget::ThinkingBudget> {
        let b = inference::budget::ThinkingBudget {
            max_thinking_tokens: self.max_thinking_tokens,
            min_thinking_tokens: self.min_thinking_tokens,
            wait_token: self.wait_token.clone(),
            max_waits: self.max_waits,
            ..Default::default()
        };
        b.is_active().then_some(b)
    }

    fn validate_budget(&self) -> Result<(), String> {
        if self.max_thinking_tokens == Some(0) {
            return Err("`protocol.max_thinking_tokens` must be ≥ 1".into());
        }
        if let (Some(min), Some(max)) = (self.min_thinking_tokens, self.max_thinking_tokens) {
            if min > max {
                return Err(format!(
                    "`protocol.min_thinking_tokens` = {min} is above `protocol.max_thinking_tokens` = {max}"
                ));
            }
        }
        if self.min_thinking_tokens.is_some() && (self.wait_token.is_empty() || self.max_waits == 0) {
            return Err("`protocol.min_thinking_tokens` needs a non-empty `protocol.wait_token` and `protocol.max_waits` ≥ 1".into());
        }
        Ok(())
    }
}

/// One benchmark of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkConfig {
    /// Shipped name (`aime2024`, `aime2025`, `math500`) or, with `path`, any label.
    pub name: String,
    /// Samples per problem. Default: the shipped benchmark's R1 value (64 AIME, 4 MATH-500),
    /// else 1.
    #[serde(default)]
    pub samples: Option<usize>,
    /// A JSONL/Parquet problem file instead of a shipped set.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Column names in that file.
    #[serde(default)]
    pub columns: Columns,
    /// Score only the first N problems (smoke tests). Default: all.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl BenchmarkConfig {
    /// A shipped benchmark with its R1 sample count (`aime2024`, `aime2025`, `math500`).
    pub fn shipped(name: &str) -> Self {
        Self { name: name.into(), samples: None, path: None, columns: Columns::default(), limit: None }
    }

    /// Any JSONL/Parquet problem file (default columns `id`, `problem`, `answer`) scored with
    /// `samples` samples per problem, e.g. the quickstart's held-out split.
    pub fn file(name: &str, path: impl Into<PathBuf>, samples: usize) -> Self {
        Self {
            name: name.into(),
            samples: Some(samples),
            path: Some(path.into()),
            columns: Columns::default(),
            limit: None,
        }
    }

    /// k for this benchmark.
    pub fn samples(&self) -> usize {
        self.samples
            .or_else(|| crate::benchmarks::shipped(&self.name).map(|b| b.default_samples))
            .unwrap_or(1)
    }
}

/// Statistics options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Bootstrap resamples for the 95% CI. Default 10000.
    pub bootstrap_resamples: usize,
    /// Bootstrap seed. Default 0.
    pub bootstrap_seed: u64,
    /// Equal-count length bins for accuracy-vs-length. Default 8.
    pub length_bins: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self { bootstrap_resamples: 10_000, bootstrap_seed: 0, length_bins: 8 }
    }
}

/// A whole `distill eval run` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Run directory (records, summary.json, summary.md). Required.
    pub out_dir: PathBuf,
    /// The model.
    pub model: ModelConfig,
    /// Sampling protocol. Default: R1.
    #[serde(default)]
    pub protocol: ProtocolConfig,
    /// Benchmarks to score. Default: aime2024, aime2025, math500.
    #[serde(default = "default_benchmarks")]
    pub benchmarks: Vec<BenchmarkConfig>,
    /// Statistics options.
    #[serde(default)]
    pub stats: StatsConfig,
    /// Completed samples per Parquet shard (each shard is a resume checkpoint). Default 256.
    #[serde(default = "default_shard_size")]
    pub shard_size: usize,
}

fn default_shard_size() -> usize {
    256
}

fn default_benchmarks() -> Vec<BenchmarkConfig> {
    ["aime2024", "aime2025", "math500"]
        .into_iter()
        .map(|n| BenchmarkConfig {
            name: n.into(),
            samples: None,
            path: None,
            columns: Columns::default(),
            limit: None,
        })
        .collect()
}

impl EvalConfig {
    /// The R1 protocol on the given benchmarks for a native checkpoint, everything else at its
    /// default — the programmatic equivalent of a minimal config file (the quickstart builds
    /// its runs this way). Adjust fields, then call [`EvalConfig::validate_config`].
    pub fn new(out_dir: impl Into<PathBuf>, checkpoint: impl Into<String>, benchmarks: Vec<BenchmarkConfig>) -> Self {
        Self {
            out_dir: out_dir.into(),
            model: ModelConfig { checkpoint: checkpoint.into(), ..ModelConfig::default() },
            protocol: ProtocolConfig::default(),
            benchmarks,
            stats: StatsConfig::default(),
            shard_size: default_shard_size(),
        }
    }

    /// Checks a programmatically built config with the same rules as a loaded file.
    pub fn validate_config(&self) -> Result<(), EvalError> {
        self.validate("eval config")
    }

    /// Parses TOML text after applying `--set key=value` overrides; `origin` names the file in
    /// errors. Relative paths stay relative to the working directory, like every CLI path.
    pub fn from_toml(text: &str, overrides: &[String], origin: &str) -> Result<Self, EvalError> {
        let toml_err = |source| EvalError::Toml { origin: origin.to_string(), source };
        let mut value: toml::Value = toml::from_str(text).map_err(toml_err)?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let cfg: EvalConfig = value.try_into().map_err(toml_err)?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Reads a config file and applies overrides.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        Self::from_toml(&text, overrides, &path.display().to_string())
    }

    fn validate(&self, origin: &str) -> Result<(), EvalError> {
        let bad = |m: String| Err(EvalError::Invalid(format!("{origin}: {m}")));
        if self.model.checkpoint.is_empty() {
            return bad("`model.checkpoint` is required (checkpoint dir or served model name)".into());
        }
        if !(0.0..=2.0).contains(&self.protocol.temperature) {
            return bad(format!("`protocol.temperature` = {} is outside [0, 2]", self.protocol.temperature));
        }
        if !(self.protocol.top_p > 0.0 && self.protocol.top_p <= 1.0) {
            return bad(format!("`protocol.top_p` = {} is outside (0, 1]", self.protocol.top_p));
        }
        if self.protocol.max_tokens == 0 {
            return bad("`protocol.max_tokens` must be positive".into());
        }
        if let Err(m) = self.protocol.validate_budget() {
            return bad(m);
        }
        if self.protocol.thinking_budget().is_some()
            && self.model.backend == BackendKind::Openai
            && self.model.tokenizer.is_none()
        {
            return bad("a thinking budget on the openai backend needs `model.tokenizer` (a directory with the served \
                 model's tokenizer.json and tokenizer_config.json): continuation requests send the prompt rendered \
                 with its chat template to /v1/completions"
                .into());
        }
        if !self.protocol.prompt_template.contains("{problem}") {
            return bad("`protocol.prompt_template` must contain `{problem}`".into());
        }
        if self.benchmarks.is_empty() {
            return bad("`benchmarks` is empty".into());
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.benchmarks {
            if !names.insert(&b.name) {
                return bad(format!("benchmark `{}` listed twice", b.name));
            }
            if b.path.is_none() && crate::benchmarks::shipped(&b.name).is_none() {
                return bad(format!("benchmark `{}` is not shipped and has no `path`", b.name));
            }
            if b.samples() == 0 {
                return bad(format!("benchmark `{}`: samples must be ≥ 1", b.name));
            }
            if b.name.contains(['/', '\\']) || b.name.starts_with('.') {
                return bad(format!("benchmark name `{}` must be a plain file-name-safe label", b.name));
            }
        }
        if self.model.backend == BackendKind::Openai && self.model.openai.base_urls.is_empty() {
            return bad("`model.openai.base_urls` is empty".into());
        }
        if self.model.concurrency == 0 || self.shard_size == 0 {
            return bad("`model.concurrency` and `shard_size` must be ≥ 1".into());
        }
        Ok(())
    }

    /// The user message for one problem.
    pub fn render_prompt(&self, problem: &str) -> String {
        self.protocol.prompt_template.replace("{problem}", problem)
    }
}

/// Applies one `a.b.c=value` override to a TOML tree. The value is parsed as a TOML value
/// (`0.7`, `true`, `[1, 2]`, `"x"`), falling back to a plain string; numeric path parts index
/// arrays (`benchmarks.0.samples=8`). Missing tables are created.
pub fn apply_override(root: &mut toml::Value, spec: &str) -> Result<(), EvalError> {
    datasets::overrides::apply_override(root, spec).map_err(EvalError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "out_dir = \"runs/x\"\n[model]\ncheckpoint = \"ckpt/qwen\"\n";

    #[test]
    fn defaults_are_the_r1_protocol() {
        let c = EvalConfig::from_toml(MIN, &[], "t.toml").unwrap();
        assert_eq!(c.protocol.temperature, 0.6);
        assert_eq!(c.protocol.top_p, 0.95);
        assert_eq!(c.protocol.max_tokens, 32768);
        assert_eq!(c.protocol.system_prompt, None);
        assert_eq!(c.benchmarks.len(), 3);
        assert_eq!(c.benchmarks[0].samples(), 64);
        assert_eq!(c.benchmarks[2].samples(), 4);
        assert_eq!(c.model.display_name(), "qwen");
        assert_eq!(
            c.render_prompt("What is 1+1?"),
            "What is 1+1?\nPlease reason step by step, and put your final answer within \\boxed{}."
        );
    }

    #[test]
    fn overrides_reach_nested_keys_and_arrays() {
        let text = format!("{MIN}[[benchmarks]]\nname = \"math500\"\n");
        let sets = [
            "protocol.temperature=0.7".to_string(),
            "model.name=my model".into(),
            "benchmarks.0.samples=8".into(),
            "model.openai.base_urls=[\"http://127.0.0.1:1/v1\"]".into(),
        ];
        let c = EvalConfig::from_toml(&text, &sets, "t.toml").unwrap();
        assert_eq!(c.protocol.temperature, 0.7);
        assert_eq!(c.model.name.as_deref(), Some("my model"));
        assert_eq!(c.benchmarks[0].samples(), 8);
        assert_eq!(c.model.openai.base_urls, vec!["http://127.0.0.1:1/v1".to_string()]);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let e = inference::error_chain(&EvalConfig::from_toml(&format!("{MIN}bogus = 1\n"), &[], "t.toml").unwrap_err());
        assert!(e.contains("t.toml") && e.contains("bogus"), "{e}");
        let e = EvalConfig::from_toml(MIN, &["protocol.top_p=0".into()], "t.toml").unwrap_err().to_string();
        assert!(e.contains("top_p"), "{e}");
        let e = EvalConfig::from_toml(MIN, &["nokey".into()], "t.toml").unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
        let e = EvalConfig::from_toml(&format!("{MIN}[[benchmarks]]\nname = \"mine\"\n"), &[], "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mine"), "{e}");
    }

    #[test]
    fn programmatic_config_validates() {
        let mut c = EvalConfig::new("runs/q", "ckpt/teacher", vec![BenchmarkConfig::file("heldout", "test.jsonl", 4)]);
        c.model.role = Role::Teacher;
        c.validate_config().unwrap();
        assert_eq!(c.benchmarks[0].samples(), 4);
        assert_eq!(BenchmarkConfig::shipped("aime2025").samples(), 64);
        c.protocol.max_tokens = 0;
        assert!(c.validate_config().unwrap_err().to_string().contains("max_tokens"));
    }

    #[test]
    fn thinking_budget_keys_validate() {
        let c = EvalConfig::from_toml(MIN, &[], "t.toml").unwrap();
        assert_eq!(c.protocol.thinking_budget(), None);
        let sets = ["protocol.max_thinking_tokens=512".to_string(), "protocol.min_thinking_tokens=128".into()];
        let c = EvalConfig::from_toml(MIN, &sets, "t.toml").unwrap();
        let b = c.protocol.thinking_budget().unwrap();
        assert_eq!((b.max_thinking_tokens, b.min_thinking_tokens, b.wait_token.as_str()), (Some(512), Some(128), "Wait"));
        let bad = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            EvalConfig::from_toml(MIN, &sets, "t.toml").unwrap_err().to_string()
        };
        assert!(bad(&["protocol.max_thinking_tokens=0"]).contains("max_thinking_tokens"));
        let e = bad(&["protocol.max_thinking_tokens=10", "protocol.min_thinking_tokens=20"]);
        assert!(e.contains("min_thinking_tokens") && e.contains("20"), "{e}");
        assert!(bad(&["protocol.min_thinking_tokens=5", "protocol.max_waits=0"]).contains("max_waits"));
        let openai = ["model.backend=openai", "protocol.max_thinking_tokens=64"];
        assert!(bad(&openai).contains("model.tokenizer"));
        let sets: Vec<String> = openai.iter().map(|s| s.to_string()).chain(["model.tokenizer=tok".to_string()]).collect();
        EvalConfig::from_toml(MIN, &sets, "t.toml").unwrap();
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/eval");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(text.starts_with("# distill eval run --config configs/eval/"), "{}", path.display());
                EvalConfig::load(&path, &["model.checkpoint=x".into()])
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "expected r1/aime2024/aime2025/math500 configs, found {n}");
    }
}
