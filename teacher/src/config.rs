//! The `distill teacher sample` configuration (TOML) and `--set a.b=value` overrides.
//!
//! Every table denies unknown keys, so a typo fails the run at start instead of silently
//! sampling 100k traces with a default. Each field documents its default.

use std::path::{Path, PathBuf};

use datasets::ProblemColumns;
use serde::{Deserialize, Serialize};

use inference::{BackendKind, OpenAiConfig};

use crate::TeacherError;

/// The R1 evaluation/sampling instruction appended to each problem (DeepSeek-R1 paper, §3.1).
pub const R1_PROMPT_TEMPLATE: &str =
    "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}.";

/// A whole sampling run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// Backend used. Default `openai`.
    #[serde(default = "d_backend")]
    pub backend: BackendKind,
    /// Problem set (JSONL or Parquet). Required.
    pub problems: PathBuf,
    /// Column names of the problem set. Default `id`, `problem`, `answer`, `source`.
    #[serde(default)]
    pub columns: ProblemColumns,
    /// Output directory of shards + `_manifest.json`. Required.
    pub out_dir: PathBuf,
    /// What to ask and how to sample.
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// How the run is executed.
    #[serde(default)]
    pub run: RunConfig,
    /// HTTP backend settings (used when `backend = "openai"`).
    #[serde(default)]
    pub openai: OpenAiConfig,
    /// In-process engine settings (used when `backend = "native"`).
    #[serde(default)]
    pub native: NativeConfig,
}

/// Sampling parameters; they are part of the run's identity (a resume with different values
/// is refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// Samples per problem (k). Default 4.
    #[serde(default = "d_samples")]
    pub samples: u32,
    /// Temperature. Default 0.6 (DeepSeek's recommendation for R1).
    #[serde(default = "d_temperature")]
    pub temperature: f32,
    /// Nucleus mass. Default 0.95.
    #[serde(default = "d_top_p")]
    pub top_p: f32,
    /// Maximum new tokens. Default 32768.
    #[serde(default = "d_max_tokens")]
    pub max_tokens: u32,
    /// Base seed from which each sample's seed is derived. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// System prompt; none by default (DeepSeek advises against one for R1).
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// User message; `{problem}` is replaced by the problem text. Default: the R1 instruction
    /// [`R1_PROMPT_TEMPLATE`].
    #[serde(default = "d_template")]
    pub prompt_template: String,
    /// Extra stop strings. Default none.
    #[serde(default)]
    pub stop: Vec<String>,
}

/// Execution settings; they may change between resumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Requests in flight. Default 64. Also caps the HTTP backend's own limit.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Rows per Parquet shard. Default 256 (a kill loses at most this many finished samples).
    #[serde(default = "d_shard_size")]
    pub shard_size: usize,
    /// Use only the first N problems (smoke runs). Default: all.
    #[serde(default)]
    pub max_problems: Option<usize>,
    /// Show the progress bar (when stderr is a terminal). Default true.
    #[serde(default = "d_true")]
    pub progress: bool,
    /// Redo samples recorded as permanent failures (HTTP 400, validation errors) on resume,
    /// replacing their rows; `--retry-failed` sets it. Default false: a failed row is final,
    /// and the run exits non-zero while the directory holds any.
    #[serde(default)]
    pub retry_failed: bool,
}

/// In-process engine settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeConfig {
    /// Checkpoint directory (HF layout, with tokenizer files). Required for `native`.
    #[serde(default)]
    pub model_dir: Option<PathBuf>,
    /// Sequences decoded together. Default 32.
    #[serde(default = "d_max_batch")]
    pub max_batch: usize,
    /// Prompt + completion capacity per sequence in tokens. Default 8192.
    #[serde(default = "d_max_seq_len")]
    pub max_seq_len: usize,
    /// Name recorded in the `teacher` column. Default: the model directory's name.
    #[serde(default)]
    pub name: Option<String>,
}

fn d_backend() -> BackendKind {
    BackendKind::Openai
}
fn d_samples() -> u32 {
    4
}
fn d_temperature() -> f32 {
    0.6
}
fn d_top_p() -> f32 {
    0.95
}
fn d_max_tokens() -> u32 {
    32768
}
fn d_template() -> String {
    R1_PROMPT_TEMPLATE.into()
}
fn d_concurrency() -> usize {
    64
}
fn d_shard_size() -> usize {
    256
}
fn d_true() -> bool {
    true
}
fn d_max_batch() -> usize {
    32
}
fn d_max_seq_len() -> usize {
    8192
}

impl SamplingConfig {
    /// The parameters every request sends and every row records.
    pub fn params(&self) -> inference::sample::SampleParams {
        inference::sample::SampleParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop.clone(),
        }
    }
}

impl Default for SamplingConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}
impl Default for RunConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}
impl Default for NativeConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

impl TeacherConfig {
    /// Reads a TOML config, applies `--set key=value` overrides, and validates. Errors name
    /// the file and key.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TeacherError> {
        let mut cfg = Self::parse(path, overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Like [`load`](Self::load) without [`validate`](Self::validate), for callers that apply
    /// more overrides (command-line flags) first. Relative paths stay relative to the working
    /// directory, as the command lines documented in `configs/teacher/` assume.
    pub fn parse(path: &Path, overrides: &[String]) -> Result<Self, TeacherError> {
        Self::parse_layers(Some(path), overrides, &[])
    }

    /// Builds a config from layers, later ones winning: the TOML file (optional: none means an
    /// empty one), `--set key=value` overrides, then `flags` (dotted key and value, e.g.
    /// `("problems", "p.jsonl")` from `--problems`). Required keys may come from any layer; a
    /// missing one is named in the error, with the flag that can give it. Not validated.
    pub fn parse_layers(
        path: Option<&Path>,
        overrides: &[String],
        flags: &[(&str, toml::Value)],
    ) -> Result<Self, TeacherError> {
        let origin = path.unwrap_or(Path::new("<command line>"));
        let toml_err = |source| TeacherError::Toml {
            path: origin.to_path_buf(),
            source,
        };
        let mut value = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| TeacherError::io(path, e))?;
                toml::from_str(&text).map_err(toml_err)?
            }
            None => toml::Value::Table(Default::default()),
        };
        apply_overrides(&mut value, overrides)?;
        for (key, v) in flags {
            set_key(&mut value, key, v.clone())?;
        }
        for (key, flag) in [("problems", "--problems FILE"), ("out_dir", "--out DIR")] {
            if value.get(key).is_none() {
                let from = match path {
                    Some(p) => format!("{} does not set `{key}`", p.display()),
                    None => format!("no config file, so `{key}` is not set"),
                };
                return Err(TeacherError::Config(format!(
                    "{from}: give it in the config, with --set {key}=…, or with {flag}"
                )));
            }
        }
        value.try_into().map_err(toml_err)
    }

    /// Checks values that serde cannot (ranges, required-by-backend fields).
    pub fn validate(&mut self) -> Result<(), TeacherError> {
        let bad = |m: String| Err(TeacherError::Config(m));
        let s = &self.sampling;
        if s.samples == 0 {
            return bad("sampling.samples must be at least 1".into());
        }
        if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
            return bad(format!(
                "sampling.temperature must be >= 0, got {}",
                s.temperature
            ));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return bad(format!("sampling.top_p must be in (0, 1], got {}", s.top_p));
        }
        if s.max_tokens == 0 {
            return bad("sampling.max_tokens must be at least 1".into());
        }
        if !s.prompt_template.contains("{problem}") {
            return bad("sampling.prompt_template must contain {problem}".into());
        }
        if self.run.concurrency == 0 || self.run.shard_size == 0 {
            return bad("run.concurrency and run.shard_size must be at least 1".into());
        }
        match self.backend {
            BackendKind::Openai => {
                if self.openai.base_urls.is_empty() {
                    return bad("openai.base_urls is empty".into());
                }
                self.openai.concurrency = self.run.concurrency;
            }
            BackendKind::Native => {
                if self.native.model_dir.is_none() {
                    return bad(
                        "backend = \"native\" needs native.model_dir (or --model DIR)".into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The teacher name recorded in rows and the manifest.
    pub fn teacher_name(&self) -> String {
        match self.backend {
            BackendKind::Openai => self.openai.model.clone(),
            BackendKind::Native => self.native.name.clone().unwrap_or_else(|| {
                self.native
                    .model_dir
                    .as_deref()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "native".into())
            }),
        }
    }
}

/// Sets the dotted `key` (`openai.model`) of `doc` to `value`, creating tables on the way.
fn set_key(doc: &mut toml::Value, key: &str, value: toml::Value) -> Result<(), TeacherError> {
    let mut node = doc;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let toml::Value::Table(t) = node else {
            return Err(TeacherError::Config(format!(
                "`{}` is not a table",
                parts[..i].join(".")
            )));
        };
        if i + 1 == parts.len() {
            t.insert(part.to_string(), value);
            return Ok(());
        }
        node = t
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}

/// Applies `a.b.c=value` overrides to a parsed TOML document. The value is read as a TOML
/// literal (`0.7`, `true`, `[1, 2]`, `"x"`), falling back to a bare string (`--set
/// out_dir=runs/x`). Intermediate tables are created as needed.
pub fn apply_overrides(doc: &mut toml::Value, overrides: &[String]) -> Result<(), TeacherError> {
    datasets::overrides::apply_overrides(doc, overrides).map_err(TeacherError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, sets: &[&str]) -> Result<TeacherConfig, TeacherError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        TeacherConfig::load(&p, &sets)
    }

    #[test]
    fn defaults_and_overrides() {
        let cfg = load_str(
            "problems = \"p.jsonl\"\nout_dir = \"out\"\n",
            &[
                "sampling.temperature=0.7",
                "openai.base_urls=[\"http://127.0.0.1:1/v1\"]",
                "run.concurrency=3",
                "openai.model=my-model",
            ],
        )
        .unwrap();
        assert_eq!(cfg.sampling.samples, 4);
        assert_eq!(cfg.sampling.temperature, 0.7);
        assert_eq!(cfg.sampling.prompt_template, R1_PROMPT_TEMPLATE);
        assert_eq!(
            cfg.openai.base_urls,
            vec!["http://127.0.0.1:1/v1".to_string()]
        );
        assert_eq!(cfg.openai.concurrency, 3, "run.concurrency caps the client");
        assert_eq!(cfg.teacher_name(), "my-model");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = load_str(
            "problems = \"p\"\nout_dir = \"o\"\n[sampling]\ntemprature = 1\n",
            &[],
        )
        .unwrap_err();
        let err = inference::error_chain(&err);
        assert!(
            err.contains("temprature") && err.contains("c.toml"),
            "{err}"
        );
        let err = load_str("problems = \"p\"\nout_dir = \"o\"\n", &["sampling.top_p=0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("top_p"), "{err}");
        let err = load_str(
            "problems = \"p\"\nout_dir = \"o\"\nbackend = \"native\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("model_dir"), "{err}");
        assert!(load_str("problems = \"p\"\nout_dir = \"o\"\n", &["novalue"]).is_err());
    }

    #[test]
    fn flags_satisfy_required_keys_without_a_config_file() {
        let flags = [
            ("problems", toml::Value::String("p.jsonl".into())),
            ("out_dir", toml::Value::String("o".into())),
            ("openai.model", toml::Value::String("m".into())),
        ];
        let cfg =
            TeacherConfig::parse_layers(None, &["sampling.samples=2".into()], &flags).unwrap();
        assert_eq!(cfg.problems, PathBuf::from("p.jsonl"));
        assert_eq!(cfg.out_dir, PathBuf::from("o"));
        assert_eq!((cfg.openai.model.as_str(), cfg.sampling.samples), ("m", 2));
        // A config file lacking both keys, completed by flags.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[sampling]\nsamples = 3\n").unwrap();
        let cfg = TeacherConfig::parse_layers(Some(&p), &[], &flags[..2]).unwrap();
        assert_eq!(cfg.sampling.samples, 3);
        let err = TeacherConfig::parse_layers(Some(&p), &[], &flags[..1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("out_dir") && err.contains("--out") && err.contains("c.toml"),
            "{err}"
        );
        let err = TeacherConfig::parse_layers(None, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`problems`") && err.contains("--problems"),
            "{err}"
        );
    }

    #[test]
    fn literal_parsing_falls_back_to_strings() {
        assert_eq!(
            datasets::overrides::parse_value("3"),
            toml::Value::Integer(3)
        );
        assert_eq!(
            datasets::overrides::parse_value("runs/x"),
            toml::Value::String("runs/x".into())
        );
        assert_eq!(
            datasets::overrides::parse_value("\"a b\""),
            toml::Value::String("a b".into())
        );
    }
}
