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
//! Rows are first sorted by `(problem_id, sample_index)`, so results do not depend on the order in
//! which a concurrent sampler happened to write them. The run writes `messages.parquet` (+
//! `.jsonl`), `openr1.parquet`, `filter_report.json`, `dropped.jsonl` and, last, `manifest.json`
//! (so a directory with a manifest is complete); each file is written to a temp name and renamed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decontam::{ContaminationIndex, DecontamConfig, DecontamField};
use crate::dedup::{exact_duplicates, exact_key, near_duplicates, NearDupConfig};
use crate::export::{
    assistant_content, openr1_records, write_messages_parquet, write_openr1_parquet, MessagesRecord,
    PromptSource,
};
use crate::records::provenance::hash_file;
use crate::records::{FinishReason, Verdict};
use crate::traces::{read_traces, TraceRow, TRACE_SCHEMA_VERSION};
use crate::{DatasetError, TextTokenizer};

/// Version of the filter output layout (report keys and exported columns).
pub const FILTER_SCHEMA_VERSION: u32 = 1;

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
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            prompt: PromptSource::Trace,
            jsonl: true,
            openr1: true,
            openr1_generations: OpenR1Generations::Kept,
            dropped_log: true,
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

/// Response length of `row` in the configured unit.
fn response_length(row: &TraceRow, cfg: &LengthConfig, tok: Option<&TextTokenizer>) -> Result<usize, DatasetError> {
    match (cfg.unit, tok) {
        (LengthUnit::Chars, _) => Ok(row.reasoning.chars().count() + row.content.chars().count()),
        (LengthUnit::Tokens, Some(tok)) => Ok(tok.encode(&assistant_content(&row.reasoning, &row.content), false)?.len()),
        (LengthUnit::Tokens, None) => Ok(row.completion_tokens as usize),
    }
}

/// Judges every row (in the given order) and fills the report. `index` is the decontamination
/// index (`None` skips the check); `tok` counts tokens when `length.unit = "tokens"` and is given.
pub fn decide(
    rows: &[TraceRow],
    cfg: &FilterConfig,
    index: Option<&ContaminationIndex>,
    tok: Option<&TextTokenizer>,
) -> Result<(Vec<Decision>, FilterReport), DatasetError> {
    let mut report = FilterReport { input_rows: rows.len(), ..FilterReport::default() };
    let bounded = cfg.length.min > 0 || cfg.length.max.is_some();
    let mut decisions = Vec::with_capacity(rows.len());
    let mut lengths = vec![0usize; rows.len()];
    let mut contaminated_problem: HashMap<&str, Option<(String, String)>> = HashMap::new();
    let mut problems: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        problems.insert(&row.problem_id);
        *report.verdicts.entry(row.verdict.as_str().to_string()).or_default() += 1;
        *report.finish_reasons.entry(row.finish_reason.as_str().to_string()).or_default() += 1;
        let id = format!("{}#{}", row.problem_id, row.sample_index);
        if let Some(e) = row.error.as_deref().filter(|e| !e.is_empty()) {
            decisions.push(dropped(DropReason::Error, e));
            continue;
        }
        if !cfg.finish_reasons.is_empty() && !cfg.finish_reasons.contains(&row.finish_reason) {
            decisions.push(dropped(DropReason::Truncated, format!("finish_reason={}", row.finish_reason)));
            continue;
        }
        if !cfg.verdicts.is_empty() && !cfg.verdicts.contains(&row.verdict) {
            decisions.push(dropped(DropReason::Incorrect, format!("verdict={}", row.verdict)));
            continue;
        }
        let len = response_length(row, &cfg.length, tok)?;
        lengths[i] = len;
        if bounded {
            if cfg.length.unit == LengthUnit::Tokens && tok.is_none() && row.completion_tokens == 0 {
                return Err(DatasetError::Invalid(format!(
                    "{id}: completion_tokens is 0 (unknown), so length.max/min in tokens cannot be \
                     applied; set length.tokenizer or length.unit = \"chars\""
                )));
            }
            if len < cfg.length.min || cfg.length.max.is_some_and(|m| len > m) {
                decisions.push(dropped(DropReason::Length, format!("length={len}")));
                continue;
            }
        }
        if let Some(index) = index {
            let hit = contamination(row, &cfg.decontam.fields, index, &mut contaminated_problem);
            if let Some((source, detail)) = hit {
                *report.contaminated_by.entry(source).or_default() += 1;
                decisions.push(dropped(DropReason::Contaminated, detail));
                continue;
            }
        }
        decisions.push(Decision::Keep);
    }
    report.input_problems = problems.len();

    if cfg.exact_dedup {
        let survivors: Vec<usize> = (0..rows.len()).filter(|&i| decisions[i] == Decision::Keep).collect();
        let keys: Vec<[u8; 32]> = survivors
            .iter()
            .map(|&i| exact_key(&[&rows[i].problem, &rows[i].reasoning, &rows[i].content]))
            .collect();
        for (pos, dup) in exact_duplicates(&keys).into_iter().enumerate() {
            if let Some(first) = dup {
                let of = &rows[survivors[first]];
                decisions[survivors[pos]] =
                    dropped(DropReason::Duplicate, format!("of {}#{}", of.problem_id, of.sample_index));
            }
        }
    }
    if cfg.near_dup.enabled {
        let survivors: Vec<usize> = (0..rows.len()).filter(|&i| decisions[i] == Decision::Keep).collect();
        let docs: Vec<[&str; 3]> = survivors
            .iter()
            .map(|&i| [rows[i].problem.as_str(), rows[i].reasoning.as_str(), rows[i].content.as_str()])
            .collect();
        let found = near_duplicates(&docs, &cfg.near_dup).map_err(|e| DatasetError::Invalid(e.to_string()))?;
        for (pos, hit) in found.into_iter().enumerate() {
            if let Some(hit) = hit {
                let of = &rows[survivors[hit.of]];
                decisions[survivors[pos]] = dropped(
                    DropReason::NearDuplicate,
                    format!("of {}#{} (jaccard≈{:.3})", of.problem_id, of.sample_index, hit.similarity),
                );
            }
        }
    }
    if let Some(cap) = cfg.max_per_problem {
        let mut kept_per_problem: HashMap<&str, usize> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            if decisions[i] == Decision::Keep {
                let n = kept_per_problem.entry(&row.problem_id).or_default();
                *n += 1;
                if *n > cap {
                    decisions[i] = dropped(DropReason::PerProblemCap, format!("cap={cap}"));
                }
            }
        }
    }

    let mut kept_lengths = Vec::new();
    let mut kept_problems = std::collections::HashSet::new();
    for (i, d) in decisions.iter().enumerate() {
        match d {
            Decision::Keep => {
                report.kept += 1;
                kept_lengths.push(lengths[i]);
                kept_problems.insert(rows[i].problem_id.as_str());
            }
            Decision::Drop { reason, .. } => report.count(*reason),
        }
    }
    report.kept_problems = kept_problems.len();
    report.contaminated_problems = contaminated_problem.values().filter(|v| v.is_some()).count();
    report.kept_length = summarize(kept_lengths, cfg.length.unit);
    Ok((decisions, report))
}

/// `(source, detail)` of the first contaminated field of a row, the detail reading
/// `"<source>:<problem id> via \"<ngram>\""`; the problem-text check is cached per problem id.
fn contamination<'a>(
    row: &'a TraceRow,
    fields: &[DecontamField],
    index: &ContaminationIndex,
    cache: &mut HashMap<&'a str, Option<(String, String)>>,
) -> Option<(String, String)> {
    let describe = |m: crate::decontam::ContaminationMatch| {
        let detail = format!("{}:{} via \"{}\"", m.source, m.problem_id, m.ngram);
        (m.source, detail)
    };
    for field in fields {
        let hit = match field {
            DecontamField::Problem => cache
                .entry(&row.problem_id)
                .or_insert_with(|| index.check(&row.problem).map(describe))
                .clone(),
            DecontamField::Reasoning => index.check(&row.reasoning).map(describe),
            DecontamField::Content => index.check(&row.content).map(describe),
        };
        if hit.is_some() {
            return hit;
        }
    }
    None
}

fn summarize(mut v: Vec<usize>, unit: LengthUnit) -> LengthSummary {
    let unit = match unit {
        LengthUnit::Tokens => "tokens",
        LengthUnit::Chars => "chars",
    }
    .to_string();
    if v.is_empty() {
        return LengthSummary { unit, ..LengthSummary::default() };
    }
    v.sort_unstable();
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    LengthSummary {
        unit,
        min: v[0],
        mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
        p50: pick(0.5),
        p90: pick(0.9),
        max: v[v.len() - 1],
    }
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

/// Whether one of the per-row rules 1–3 (error, truncated, incorrect) drops `row`.
fn fails_row_rules(row: &TraceRow, cfg: &FilterConfig) -> bool {
    row.error.as_deref().is_some_and(|e| !e.is_empty())
        || (!cfg.finish_reasons.is_empty() && !cfg.finish_reasons.contains(&row.finish_reason))
        || (!cfg.verdicts.is_empty() && !cfg.verdicts.contains(&row.verdict))
}

/// Reads the input file by file, emptying the texts of rows that rules 1–3 will drop anyway (they
/// are usually a third to a half of R1 samples) so peak memory is that of the survivors. Their
/// identity, verdict, finish reason and error stay for the report and `dropped.jsonl`; with
/// `openr1_generations = "all"` the texts are kept because the export lists them.
fn read_inputs(files: &[PathBuf], traces: &Path, cfg: &FilterConfig) -> Result<Vec<TraceRow>, DatasetError> {
    let keep_texts = cfg.export.openr1 && cfg.export.openr1_generations == OpenR1Generations::All;
    let mut rows = Vec::new();
    let sources: Vec<&Path> = if traces.is_dir() { files.iter().map(PathBuf::as_path).collect() } else { vec![traces] };
    for file in sources {
        let mut part = read_trace_rows(file)?;
        if !keep_texts {
            for row in part.iter_mut().filter(|r| fails_row_rules(r, cfg)) {
                for text in [&mut row.problem, &mut row.reasoning, &mut row.content, &mut row.completion] {
                    *text = String::new();
                }
                row.prompt = Vec::new();
            }
        }
        rows.append(&mut part);
    }
    Ok(rows)
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

/// Runs the whole filter: reads `traces` (directory of shards or one file), judges every row,
/// writes the exports, `filter_report.json`, `dropped.jsonl` and finally `manifest.json` into
/// `out_dir`, and returns the report.
pub fn run_filter(traces: &Path, out_dir: &Path, cfg: &FilterConfig) -> Result<FilterReport, DatasetError> {
    cfg.near_dup.validate().map_err(|e| DatasetError::Invalid(e.to_string()))?;
    let inputs = input_files(traces)?;
    if inputs.is_empty() {
        return Err(DatasetError::file(traces, "holds no trace shards (*.parquet)"));
    }
    if traces.is_dir() && same_dir(traces, out_dir) {
        return Err(DatasetError::file(out_dir, "--out must differ from the trace directory"));
    }
    let mut rows = read_inputs(&inputs, traces, cfg)?;
    rows.sort_by(|a, b| (&a.problem_id, a.sample_index).cmp(&(&b.problem_id, b.sample_index)));
    tracing::info!(rows = rows.len(), files = inputs.len(), "read traces");

    let tok = match (&cfg.length.tokenizer, cfg.length.unit) {
        (Some(dir), LengthUnit::Tokens) => Some(TextTokenizer::from_dir(dir)?),
        _ => None,
    };
    let index = if cfg.decontam.enabled { Some(ContaminationIndex::from_config(&cfg.decontam)?) } else { None };
    let (decisions, report) = decide(&rows, cfg, index.as_ref(), tok.as_ref())?;
    std::fs::create_dir_all(out_dir).map_err(|e| DatasetError::io(out_dir, e))?;
    let manifest_path = out_dir.join("manifest.json");
    if manifest_path.exists() {
        // The directory is about to change; without a manifest it no longer claims completeness.
        std::fs::remove_file(&manifest_path).map_err(|e| DatasetError::io(&manifest_path, e))?;
    }
    // Outputs a previous run wrote but this configuration does not: remove, never leave stale.
    let disabled = [
        ("messages.jsonl", !cfg.export.jsonl),
        ("openr1.parquet", !cfg.export.openr1),
        ("dropped.jsonl", !cfg.export.dropped_log),
    ];
    for (name, off) in disabled {
        let p = out_dir.join(name);
        if off && p.exists() {
            std::fs::remove_file(&p).map_err(|e| DatasetError::io(&p, e))?;
        }
    }
    tracing::info!(kept = report.kept, of = report.input_rows, "filtered");

    let kept: Vec<&TraceRow> =
        rows.iter().zip(&decisions).filter(|(_, d)| **d == Decision::Keep).map(|(r, _)| r).collect();
    let records: Vec<MessagesRecord> = kept.iter().map(|r| MessagesRecord::from_trace(r, cfg.export.prompt)).collect();
    let mut outputs = vec!["messages.parquet".to_string()];
    write_messages_parquet(&out_dir.join("messages.parquet"), &records)?;
    if cfg.export.jsonl {
        crate::jsonl::write_jsonl(&out_dir.join("messages.jsonl"), &records)?;
        outputs.push("messages.jsonl".into());
    }
    std::mem::drop(records);
    if cfg.export.openr1 {
        let listed: Vec<&TraceRow> = match cfg.export.openr1_generations {
            OpenR1Generations::Kept => kept.clone(),
            OpenR1Generations::All => {
                let with_kept: std::collections::HashSet<&str> = kept.iter().map(|r| r.problem_id.as_str()).collect();
                rows.iter()
                    .zip(&decisions)
                    .filter(|(r, d)| {
                        with_kept.contains(r.problem_id.as_str())
                            && !matches!(d, Decision::Drop { reason: DropReason::Error, .. })
                    })
                    .map(|(r, _)| r)
                    .collect()
            }
        };
        write_openr1_parquet(&out_dir.join("openr1.parquet"), &openr1_records(&listed, cfg.export.prompt))?;
        outputs.push("openr1.parquet".into());
    }
    if cfg.export.dropped_log {
        let dropped: Vec<DroppedRecord> = rows
            .iter()
            .zip(&decisions)
            .filter_map(|(r, d)| match d {
                Decision::Keep => None,
                Decision::Drop { reason, detail } => Some(DroppedRecord {
                    problem_id: r.problem_id.clone(),
                    sample_index: r.sample_index,
                    reason: *reason,
                    detail: detail.clone(),
                }),
            })
            .collect();
        crate::jsonl::write_jsonl(&out_dir.join("dropped.jsonl"), &dropped)?;
        outputs.push("dropped.jsonl".into());
    }
    write_json(&out_dir.join("filter_report.json"), &report)?;
    outputs.push("filter_report.json".into());

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
        "outputs": outputs,
        "counts": &report,
    });
    write_json(&manifest_path, &manifest)?;
    Ok(report)
}
