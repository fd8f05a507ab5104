//! `distill data filter`: from raw teacher traces to a clean SFT dataset.
//!
//! Every sample is judged once, by the first rule it fails, in this order (cheap and certain
//! first, corpus-level last so duplicates are only counted among otherwise-good samples):
//! 1. `error` — the request failed permanently (no generation to judge);
//! 2. `truncated` — `finish_reason` not in `finish_reasons` (default `stop`): a cut-off trace
//!    teaches the student never to conclude;
//! 3. `incorrect` — `verdict` not in `verdicts` (default `correct`, the grader's decision);
//! 4. `length` — response length outside `[length.min, length.max]` (tokens or characters);
//! 5. `contaminated` — shares an n-gram with an evaluation problem ([`crate::decontam`]);
//! 6. `duplicate` — same problem and response as an earlier kept sample, up to whitespace;
//! 7. `near_duplicate` — MinHash/LSH Jaccard ≥ threshold with an earlier kept sample;
//! 8. `per_problem_cap` — more than `max_per_problem` samples already kept for the problem.
//!
//! Rules 6–8 see the rows sorted by `(problem_id, sample_index)`, so results do not depend on the
//! order in which a concurrent sampler happened to write them.
//!
//! Trace sets are large (OpenR1-Math-220k-sized runs are ~800k traces of ~8 KB), so the filter
//! streams: pass 1 ([`scan`]) reads the shards batch by batch and keeps per row only ids, the
//! decision, the length, an exact-duplicate hash and a MinHash signature — never the texts —, then
//! decides rules 6–8 in sorted order; pass 2 ([`output`]) re-reads the shards and writes the rows
//! that are exported, through a spill file on disk when the input is not already in sorted order.
//!
//! The run writes `messages.parquet` (+ `.jsonl`), `openr1.parquet`, `filter_report.json`,
//! `dropped.jsonl` and `_manifest.json` into a temp directory beside `--out` and renames it into
//! place when complete, so a killed run never leaves a mix of old and new files; the output
//! directory is locked ([`crate::lock`]) for the whole run.

mod output;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decontam::{ContaminationIndex, DecontamConfig};
use crate::dedup::NearDupConfig;
use crate::export::PromptSource;
use crate::records::provenance::hash_file;
use crate::records::{FinishReason, Verdict};
use crate::traces::{read_traces, TraceRow, TRACE_SCHEMA_VERSION};
use crate::{DatasetError, TextTokenizer};
use scan::Scan;

/// Version of the filter output layout (report keys and exported columns).
/// 2: `openr1.parquet` gained `problem_type`/`question_type`, message structs are ordered
/// `{content, role}`, and readers require the manifest (now named `_manifest.json`; the
/// `manifest.json` of earlier outputs is still accepted).
pub const FILTER_SCHEMA_VERSION: u32 = 2;

/// How response length is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    /// Tokens: the student tokenizer's count when `length.tokenizer` is set, otherwise the
    /// teacher server's `completion_tokens`.
    Tokens,
    /// Unicode scalar values of reasoning + content.
    Chars,
}

/// `[length]`: bounds on the response length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LengthConfig {
    /// Unit of `min`/`max`. Default `tokens`.
    pub unit: LengthUnit,
    /// Shortest response kept. Default 0.
    pub min: usize,
    /// Longest response kept; absent = no bound (the default). Set it to the student's
    /// `max_seq_len` minus the prompt budget to avoid training-time truncation.
    pub max: Option<usize>,
    /// Tokenizer directory to count tokens with (the student's); absent = `completion_tokens`.
    pub tokenizer: Option<PathBuf>,
}

impl Default for LengthConfig {
    fn default() -> Self {
        Self { unit: LengthUnit::Tokens, min: 0, max: None, tokenizer: None }
    }
}

/// Which generations of a problem the OpenR1-layout export lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenR1Generations {
    /// Only the kept samples (default).
    #[default]
    Kept,
    /// Every non-failed sample of each problem that kept at least one, correct or not, as in
    /// OpenR1-Math-220k (the `correctness_*` columns then tell them apart).
    All,
}

/// `[export]`: what is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// User side of the exported conversations. Default `trace` (the prompt the teacher saw).
    pub prompt: PromptSource,
    /// Also write `messages.jsonl` next to `messages.parquet`. Default `true`.
    pub jsonl: bool,
    /// Write `openr1.parquet` (OpenR1-Math-220k layout). Default `true`.
    pub openr1: bool,
    /// Generations listed per problem in `openr1.parquet`. Default `kept`.
    pub openr1_generations: OpenR1Generations,
    /// Write `dropped.jsonl` (one line per dropped sample with reason and detail). Default `true`.
    pub dropped_log: bool,
    /// Problem file (JSONL/JSON/Parquet, read with the sampling run's column names) whose
    /// `solution`, `problem_type` and `question_type` columns fill `openr1.parquet`. Default: the
    /// problem file recorded in the traces' `_manifest.json`, when it can still be found.
    pub problems: Option<PathBuf>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            prompt: PromptSource::Trace,
            jsonl: true,
            openr1: true,
            openr1_generations: OpenR1Generations::Kept,
            dropped_log: true,
            problems: None,
        }
    }
}

/// The whole filter configuration (`configs/data/filter.toml` documents every key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Verdicts kept (`correct`, `incorrect`, `unparseable_gold`, `error`); empty keeps any.
    /// Default `["correct"]`.
    pub verdicts: Vec<Verdict>,
    /// Finish reasons kept (`stop`, `length`, `content_filter`, `error`); empty keeps any.
    /// Default `["stop"]`.
    pub finish_reasons: Vec<FinishReason>,
    /// Length bounds.
    pub length: LengthConfig,
    /// Drop exact duplicates (same problem, reasoning and content up to whitespace). Default `true`.
    pub exact_dedup: bool,
    /// Near-duplicate removal.
    pub near_dup: NearDupConfig,
    /// Decontamination against evaluation problems.
    pub decontam: DecontamConfig,
    /// Keep at most this many samples per problem (in sample order); absent = all (default).
    pub max_per_problem: Option<usize>,
    /// Output layouts.
    pub export: ExportConfig,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            verdicts: vec![Verdict::Correct],
            finish_reasons: vec![FinishReason::Stop],
            length: LengthConfig::default(),
            exact_dedup: true,
            near_dup: NearDupConfig::default(),
            decontam: DecontamConfig::default(),
            max_per_problem: None,
            export: ExportConfig::default(),
        }
    }
}

impl FilterConfig {
    /// Rejects settings that cannot do what they say, naming the key.
    pub fn validate(&self) -> Result<(), DatasetError> {
        self.near_dup.validate().map_err(|e| DatasetError::Invalid(e.to_string()))?;
        if let Some(max) = self.length.max.filter(|&max| self.length.min > max) {
            return Err(DatasetError::Invalid(format!(
                "length.min ({}) is greater than length.max ({max}): every sample would be dropped",
                self.length.min
            )));
        }
        Ok(())
    }
}

/// Why a sample was dropped (the report counts `dropped_<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The request failed (`error` set).
    Error,
    /// Did not finish on its own.
    Truncated,
    /// Not verified correct.
    Incorrect,
    /// Outside the length bounds.
    Length,
    /// Overlaps an evaluation problem.
    Contaminated,
    /// Exact duplicate of a kept sample.
    Duplicate,
    /// Near-duplicate of a kept sample.
    NearDuplicate,
    /// Over the per-problem cap.
    PerProblemCap,
}

/// The judgement of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Goes into the exported dataset.
    Keep,
    /// Dropped, with a human-readable detail (e.g. the matching benchmark problem).
    Drop {
        /// The first rule the sample failed.
        reason: DropReason,
        /// What exactly matched or was measured.
        detail: String,
    },
}

/// Distribution summary of kept response lengths.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthSummary {
    /// `tokens` or `chars`, as configured.
    pub unit: String,
    /// Shortest kept response.
    pub min: usize,
    /// Mean kept response.
    pub mean: f64,
    /// Median.
    pub p50: usize,
    /// 90th percentile.
    pub p90: usize,
    /// Longest kept response.
    pub max: usize,
}

/// `filter_report.json`: counts per outcome, so every input row is accounted for
/// (`input_rows = kept + Σ dropped_*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterReport {
    /// Rows read.
    pub input_rows: usize,
    /// Distinct problems read.
    pub input_problems: usize,
    /// Rows kept.
    pub kept: usize,
    /// Distinct problems with at least one kept row.
    pub kept_problems: usize,
    /// Failed requests.
    pub dropped_error: usize,
    /// Not finished (`finish_reason` ≠ stop).
    pub dropped_truncated: usize,
    /// Not verified correct.
    pub dropped_incorrect: usize,
    /// Outside length bounds.
    pub dropped_length: usize,
    /// Overlapping an evaluation problem.
    pub dropped_contaminated: usize,
    /// Exact duplicates.
    pub dropped_duplicate: usize,
    /// Near-duplicates.
    pub dropped_near_duplicate: usize,
    /// Over `max_per_problem`.
    pub dropped_per_problem_cap: usize,
    /// Contaminated rows per benchmark/file name.
    pub contaminated_by: BTreeMap<String, usize>,
    /// Distinct contaminated problems (by problem id).
    pub contaminated_problems: usize,
    /// Input rows per verdict.
    pub verdicts: BTreeMap<String, usize>,
    /// Input rows per finish reason.
    pub finish_reasons: BTreeMap<String, usize>,
    /// Kept response lengths.
    pub kept_length: LengthSummary,
}

impl FilterReport {
    fn count(&mut self, reason: DropReason) {
        let slot = match reason {
            DropReason::Error => &mut self.dropped_error,
            DropReason::Truncated => &mut self.dropped_truncated,
            DropReason::Incorrect => &mut self.dropped_incorrect,
            DropReason::Length => &mut self.dropped_length,
            DropReason::Contaminated => &mut self.dropped_contaminated,
            DropReason::Duplicate => &mut self.dropped_duplicate,
            DropReason::NearDuplicate => &mut self.dropped_near_duplicate,
            DropReason::PerProblemCap => &mut self.dropped_per_problem_cap,
        };
        *slot += 1;
    }
}

fn dropped(reason: DropReason, detail: impl Into<String>) -> Decision {
    Decision::Drop { reason, detail: detail.into() }
}

/// Judges every row (in the given order; rules 6–8 keep the first occurrence) and fills the
/// report. [`run_filter`] streams instead of taking a slice. `index` is the decontamination
/// index (`None` skips the check); `tok` counts tokens when `length.unit = "tokens"` and is given.
pub fn decide(
    rows: &[TraceRow],
    cfg: &FilterConfig,
    index: Option<&ContaminationIndex>,
    tok: Option<&TextTokenizer>,
) -> Result<(Vec<Decision>, FilterReport), DatasetError> {
    let mut scan = Scan::new(cfg, index, tok)?;
    scan.add_batch(rows)?;
    let order: Vec<u32> = (0..rows.len() as u32).collect();
    let (metas, _, report) = scan.finish(&order);
    Ok((metas.into_iter().map(|m| m.decision).collect(), report))
}

/// Reads trace rows from a directory of shards, a Parquet file, or a JSONL file of trace rows.
pub fn read_trace_rows(path: &Path) -> Result<Vec<TraceRow>, DatasetError> {
    if path.is_file() && path.extension().is_some_and(|e| e == "jsonl") {
        return crate::jsonl::read_jsonl(path);
    }
    if !path.exists() {
        return Err(DatasetError::file(path, "no such trace file or directory"));
    }
    Ok(read_traces(path)?)
}

/// One line of `dropped.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DroppedRecord {
    /// Problem id.
    pub problem_id: String,
    /// Sample index.
    pub sample_index: u32,
    /// Rule that dropped it.
    pub reason: DropReason,
    /// What matched or was measured.
    pub detail: String,
}

fn input_files(path: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    if !path.exists() {
        return Err(DatasetError::file(path, "no such trace file or directory"));
    }
    if path.is_dir() {
        Ok(crate::traces::list_trace_shards(path)?)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DatasetError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| DatasetError::file(path, e.to_string()))?;
    bytes.push(b'\n');
    crate::atomic::write_atomic(path, &bytes)
}


/// The output files of a run, in the order they are written.
fn output_names(cfg: &ExportConfig) -> Vec<String> {
    let mut names = vec!["messages.parquet"];
    if cfg.jsonl {
        names.push("messages.jsonl");
    }
    if cfg.openr1 {
        names.push("openr1.parquet");
    }
    if cfg.dropped_log {
        names.push("dropped.jsonl");
    }
    names.push("filter_report.json");
    names.into_iter().map(String::from).collect()
}

/// Runs the whole filter: reads `traces` (directory of shards or one file) twice, judges every
/// row, and replaces `out_dir` with a complete new output (exports, `filter_report.json`,
/// `dropped.jsonl`, `_manifest.json`). Returns the report.
pub fn run_filter(traces: &Path, out_dir: &Path, cfg: &FilterConfig) -> Result<FilterReport, DatasetError> {
    cfg.validate()?;
    let inputs = input_files(traces)?;
    if inputs.is_empty() {
        return Err(DatasetError::file(traces, "holds no trace shards (*.parquet)"));
    }
    if traces.is_dir() && same_dir(traces, out_dir) {
        return Err(DatasetError::file(out_dir, "--out must differ from the trace directory"));
    }
    let tok = match (&cfg.length.tokenizer, cfg.length.unit) {
        (Some(dir), LengthUnit::Tokens) => Some(TextTokenizer::from_dir(dir)?),
        _ => None,
    };
    let index = if cfg.decontam.enabled { Some(ContaminationIndex::from_config(&cfg.decontam)?) } else { None };
    let out = output::OutDir::begin(out_dir)?;

    let mut scan = Scan::new(cfg, index.as_ref(), tok.as_ref())?;
    output::for_each_batch(traces, &inputs, |batch| scan.add_batch(&batch))?;
    let order = scan.sorted_order();
    let (metas, ids, report) = scan.finish(&order);
    tracing::info!(rows = report.input_rows, files = inputs.len(), kept = report.kept, "judged traces");

    let extras = if cfg.export.openr1 {
        output::problem_extras(traces, cfg.export.problems.as_deref(), &metas, &ids)?
    } else {
        Default::default()
    };
    output::export_rows(traces, &inputs, &metas, &ids, &order, cfg, &extras, out.path())?;
    if cfg.export.dropped_log {
        output::write_dropped(&out.path().join("dropped.jsonl"), &metas, &ids, &order)?;
    }
    write_json(&out.path().join("filter_report.json"), &report)?;
    let manifest = serde_json::json!({
        "kind": "distill.data.filter",
        "schema_version": FILTER_SCHEMA_VERSION,
        "trace_schema_version": TRACE_SCHEMA_VERSION,
        "distill_version": env!("CARGO_PKG_VERSION"),
        "created_at_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "config": cfg,
        "inputs": inputs.iter().map(|p| hash_file(p)).collect::<Result<Vec<_>, _>>()?,
        "decontam_problems": index.as_ref().map(|i| i.problems_per_source().clone()),
        "outputs": output_names(&cfg.export),
        "counts": &report,
    });
    write_json(&out.path().join(MANIFEST_FILE), &manifest)?;
    output::fail_point("manifest.json")?;
    out.commit()?;
    tracing::info!(kept = report.kept, of = report.input_rows, out = %out_dir.display(), "filtered");
    Ok(report)
}

/// Name of the file that marks a filter output directory complete; readers require it. The
/// leading `_` makes pandas/pyarrow skip it when reading the directory's Parquet files.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// The manifest's name in outputs of older versions, still accepted by readers.
pub const LEGACY_MANIFEST_FILE: &str = "manifest.json";

/// Whether `dir` is a complete filter output: its `_manifest.json` (or, from older versions,
/// `manifest.json`) exists and is a filter manifest. Readers of a filter directory (`data
/// tokenize`, student data loading) call this so that files left by an older, interrupted
/// writer are never taken for a dataset.
pub fn check_complete_output(dir: &Path) -> Result<(), DatasetError> {
    let legacy = dir.join(LEGACY_MANIFEST_FILE);
    let path = if !dir.join(MANIFEST_FILE).exists() && legacy.exists() { legacy } else { dir.join(MANIFEST_FILE) };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        DatasetError::file(
            dir,
            format!("holds messages.parquet but no readable {MANIFEST_FILE} ({e}): an interrupted `distill data filter`? rerun it"),
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| DatasetError::file(&path, format!("invalid JSON: {e}")))?;
    if v.get("kind").and_then(|k| k.as_str()) != Some("distill.data.filter") {
        return Err(DatasetError::file(&path, "is not a `distill data filter` manifest (kind ≠ distill.data.filter)"));
    }
    Ok(())
}
