//! An eval run: for each benchmark, problems × k requests through an [`inference::Backend`]
//! (fanned out by [`inference::drive`]), graded as they complete, stored as Parquet shards under
//! `OUT/records/<benchmark>/` by the shared record layer ([`datasets::records`]), then
//! summarised into `OUT/summary.json` + `OUT/summary.md`.
//!
//! Resume: a sample is identified by (problem id, sample index). A rerun reads the shards
//! already written, skips samples that completed, and redoes samples that were in flight or
//! failed (a later row supersedes an earlier one for the same identity, and the earlier row is
//! then dropped from its shard: [`datasets::records::supersede`]). Shards are written via
//! temp file + rename, so a kill at any point loses at most the samples of the unfinished shard.
//! The run refuses to resume into a directory created with a different protocol or model.
//!
//! Before the first request the backend's [`Backend::preflight`] checks the serving side
//! (reachable, serving the model, context large enough). A run that ends with samples failed
//! permanently writes its summary (counting them incorrect) and then returns an error naming
//! how many and the first, so the command exits non-zero; a rerun retries them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use std::collections::{HashMap, HashSet};

use datasets::eval_records::{read_eval_record_dir, EvalRecord};
use datasets::records::shards::{list_shards, read_shard};
use datasets::records::supersede::{remove_superseded, LatestRows, SampleKey};
use datasets::records::{ResumeIndex, ShardWriter, Verdict};
use inference::sample::{chat_messages, SampleId, SampleParams};
use inference::{Backend, ChatRequest, Prompt, RunBounds};

use crate::benchmarks::{self, EvalProblem};
use crate::config::EvalConfig;
use crate::summary::{ModelInfo, ProtocolInfo, RunSummary, SummaryOptions, SUMMARY_SCHEMA_VERSION};
use crate::EvalError;

/// Per-sample seed: [`datasets::records::sample_seed`] scoped by benchmark and problem id
/// (63 bits; stable across reruns and machines, different for every sample).
pub fn sample_seed(run_seed: u64, benchmark: &str, problem_id: &str, sample_index: u32) -> u64 {
    datasets::records::sample_seed(run_seed, &[benchmark, problem_id], sample_index)
}

/// Identity of a run directory, stored as `run.json`; a resume must match it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct RunIdentity {
    model: ModelInfo,
    protocol: ProtocolInfo,
}

/// What differs between a recorded run and this config, as `key: recorded → now` in plain
/// JSON values (user output carries no Rust `Debug` text).
fn identity_differences(old: &RunIdentity, new: &RunIdentity) -> Vec<String> {
    let flat = |id: &RunIdentity| {
        let mut m = std::collections::BTreeMap::new();
        let protocol = serde_json::to_value(&id.protocol).unwrap_or_default();
        if let serde_json::Value::Object(o) = protocol {
            m.extend(o.into_iter().map(|(k, v)| (format!("protocol.{k}"), v)));
        }
        let model = serde_json::to_value(&id.model).unwrap_or_default();
        for k in ["checkpoint", "backend"] {
            m.insert(format!("model.{k}"), model.get(k).cloned().unwrap_or_default());
        }
        m
    };
    let (a, b) = (flat(old), flat(new));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let show = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "(none)".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        // f32 fields widen to f64 in JSON (0.6 → 0.6000000238…): print them as the f32 they are.
        Some(serde_json::Value::Number(n)) if n.is_f64() => format!("{}", n.as_f64().unwrap_or(f64::NAN) as f32),
        Some(v) => v.to_string(),
    };
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} → {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

fn identity(cfg: &EvalConfig) -> RunIdentity {
    RunIdentity {
        model: ModelInfo {
            name: cfg.model.display_name(),
            role: cfg.model.role,
            checkpoint: Some(cfg.model.checkpoint.clone()),
            backend: cfg.model.backend.as_str().into(),
        },
        protocol: ProtocolInfo {
            temperature: cfg.protocol.temperature,
            top_p: cfg.protocol.top_p,
            max_tokens: cfg.protocol.max_tokens,
            prompt_template: cfg.protocol.prompt_template.clone(),
            system_prompt: cfg.protocol.system_prompt.clone(),
            seed: cfg.protocol.seed,
            thinking: cfg.protocol.thinking_budget(),
        },
    }
}

fn check_identity(out: &Path, id: &RunIdentity) -> Result<(), EvalError> {
    let path = out.join("run.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let old: RunIdentity =
                serde_json::from_str(&text).map_err(|source| EvalError::Json(datasets::PathError::new(path, source)))?;
            // The label and role may change between runs (they only affect reports); what
            // was sampled may not.
            let same = old.protocol == id.protocol
                && old.model.checkpoint == id.model.checkpoint
                && old.model.backend == id.model.backend;
            if !same {
                return Err(EvalError::Invalid(format!(
                    "{} holds a run that differs from this config in {}. Use a new out_dir rather than mixing protocols.",
                    out.display(),
                    identity_differences(&old, id).join(", ")
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let json = serde_json::to_string_pretty(id).expect("identity serialises");
            Ok(datasets::atomic::write_atomic(&path, json.as_bytes())?)
        }
        Err(e) => Err(EvalError::io(&path, e)),
    }
}

/// Directory of one benchmark's record shards.
pub fn records_dir(out_dir: &Path, benchmark: &str) -> PathBuf {
    out_dir.join("records").join(benchmark)
}

struct Job {
    problem: Arc<EvalProblem>,
    sample_index: u32,
    seed: u64,
}

/// Runs (or resumes) every benchmark of `cfg` against `backend`, then writes and returns the
/// run summary. Stops at the first backend error that means "try again later" (retries
/// exhausted, shutdown) after flushing what completed, so a rerun continues from there.
/// Ctrl-C is handled the same way.
pub async fn run_eval(cfg: &EvalConfig, backend: Arc<dyn Backend>) -> Result<RunSummary, EvalError> {
    let out = &cfg.out_dir;
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    let id = identity(cfg);
    check_identity(out, &id)?;
    let resolved = toml::to_string_pretty(cfg).map_err(|e| EvalError::serialize("config", e))?;
    datasets::atomic::write_atomic(&out.join("config.toml"), resolved.as_bytes())?;

    for bench in &cfg.benchmarks {
        let mut problems = benchmarks::load(&bench.name, bench.path.as_deref(), &bench.columns)?;
        if let Some(limit) = bench.limit {
            problems.truncate(limit);
        }
        run_benchmark(cfg, &bench.name, problems, bench.samples(), backend.clone()).await?;
    }
    let summary = summarize_run(cfg)?;
    summary.save(out)?;
    let (failed, first) = permanent_failures(cfg)?;
    if let Some(first) = first {
        return Err(EvalError::Invalid(format!(
            "{failed} samples failed permanently (first: {first}); {} counts them as incorrect. \
             Fix the cause and rerun the same command to retry them",
            out.join("summary.json").display()
        )));
    }
    Ok(summary)
}

/// Samples whose latest record is a permanent failure, over every benchmark, and the first
/// one's `benchmark/problem#index: error`.
fn permanent_failures(cfg: &EvalConfig) -> Result<(usize, Option<String>), EvalError> {
    let mut count = 0;
    let mut first = None;
    for bench in &cfg.benchmarks {
        let mut latest: HashMap<SampleKey, Option<String>> = HashMap::new();
        let mut order = Vec::new();
        for r in read_eval_record_dir(&records_dir(&cfg.out_dir, &bench.name))? {
            let key = r.key();
            if latest.insert(key.clone(), r.error.clone()).is_none() {
                order.push(key);
            }
        }
        for key in order {
            if let Some(e) = &latest[&key] {
                count += 1;
                first.get_or_insert_with(|| format!("{}/{}#{}: {e}", bench.name, key.0, key.1));
            }
        }
    }
    Ok((count, first))
}

/// Recomputes the summary of a run directory from its records (no generation), e.g. after
/// changing statistics options.
pub fn summarize_run(cfg: &EvalConfig) -> Result<RunSummary, EvalError> {
    let id = identity(cfg);
    let opts: &SummaryOptions = &cfg.stats;
    let mut benchmarks = std::collections::BTreeMap::new();
    for bench in &cfg.benchmarks {
        let mut records = read_eval_record_dir(&records_dir(&cfg.out_dir, &bench.name))?;
        if records.is_empty() {
            continue;
        }
        // Shards hold samples in completion order; report problems in benchmark order. The
        // sort is stable, so a later row for the same sample still supersedes an earlier one.
        if let Ok(problems) = benchmarks::load(&bench.name, bench.path.as_deref(), &bench.columns) {
            let index: std::collections::HashMap<&str, usize> =
                problems.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
            records.sort_by_key(|r| (index.get(r.problem_id.as_str()).copied().unwrap_or(usize::MAX), r.sample_index));
        }
        benchmarks.insert(bench.name.clone(), crate::summary::summarize_benchmark(&records, opts));
    }
    Ok(RunSummary {
        schema_version: SUMMARY_SCHEMA_VERSION,
        model: id.model,
        protocol: id.protocol,
        benchmarks,
    })
}

async fn run_benchmark(
    cfg: &EvalConfig,
    name: &str,
    problems: Vec<EvalProblem>,
    k: usize,
    backend: Arc<dyn Backend>,
) -> Result<(), EvalError> {
    let dir = records_dir(&cfg.out_dir, name);
    // Latest row per identity wins; only successful ones count as done.
    let mut done = ResumeIndex::new();
    let mut latest = LatestRows::new();
    if dir.exists() {
        for shard in list_shards(&dir)? {
            for r in read_shard::<EvalRecord>(&shard)? {
                latest.see(r.key(), &shard);
                done.record(&r, r.error.is_none());
            }
        }
    }
    // Rows superseded by a later one (a replacement a killed run did not finish).
    remove_superseded::<EvalRecord>(latest.superseded_rows())?;

    let problems: Vec<Arc<EvalProblem>> = problems.into_iter().map(Arc::new).collect();
    // Sample-major order: a partial run covers every problem evenly.
    let mut jobs = Vec::new();
    for s in 0..k as u32 {
        for p in &problems {
            if !done.is_done(&p.id, s) {
                let seed = sample_seed(cfg.protocol.seed, name, &p.id, s);
                let job = Job { problem: p.clone(), sample_index: s, seed };
                let request = request_for(cfg, &job);
                jobs.push((job, request));
            }
        }
    }
    let total = problems.len() * k;
    tracing::info!(
        benchmark = name,
        problems = problems.len(),
        k,
        already_done = total - jobs.len(),
        todo = jobs.len(),
        "eval run"
    );
    if jobs.is_empty() {
        return Ok(());
    }
    let bounds = RunBounds::of_messages(
        cfg.protocol.max_tokens,
        jobs.iter().map(|(_, r)| match &r.prompt {
            Prompt::Messages(m) => m.as_slice(),
            _ => &[],
        }),
    );
    backend
        .preflight(&bounds)
        .await
        .map_err(|source| EvalError::Inference {
            checkpoint: cfg.model.checkpoint.clone(),
            source,
        })?;

    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(name.to_string());
    bar.set_position((total - jobs.len()) as u64);
    // No bar to see (stderr is a file or pipe): a periodic log line instead.
    let mut log = (!datasets::progress::stderr_is_terminal())
        .then(|| datasets::progress::ProgressLog::new(total as u64, (total - jobs.len()) as u64));

    let mut writer = ShardWriter::<EvalRecord>::open(&dir, cfg.shard_size)?;
    let model = cfg.model.display_name();
    let started = Instant::now();
    let (mut n_done, mut n_correct, mut tokens) = (0usize, 0usize, 0u64);
    let mut redone: HashSet<SampleKey> = HashSet::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let outcome = inference::drive(backend, jobs, cfg.model.concurrency, ctrl_c, |job, result| {
        let completion = result.map_err(|source| EvalError::Backend {
            benchmark: name.to_string(),
            problem_id: job.problem.id.clone(),
            sample_index: job.sample_index,
            source,
        })?;
        let record = grade_record(cfg, name, &model, &job, completion);
        let key = record.key();
        if latest.shard_of(&key).is_some() {
            redone.insert(key);
        }
        n_done += 1;
        n_correct += usize::from(record.correct());
        tokens += u64::from(record.completion_tokens);
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let msg = format!("acc {:.3} · {:.0} tok/s", n_correct as f64 / n_done as f64, tokens as f64 / secs);
        bar.inc(1);
        if let Some(t) = log.as_mut().and_then(|l| l.update(bar.position())) {
            tracing::info!("eval {name} {}, {:.2} samples/s, {msg}, ETA {}", t.position(), t.rate, t.eta_text());
        }
        bar.set_message(msg);
        writer.push(record)?;
        Ok::<(), EvalError>(())
    })
    .await;
    // Whatever happened, keep every finished sample.
    let flushed = writer.flush();
    bar.finish_and_clear();
    let interrupted = outcome?;
    flushed?;
    // The redone samples' new rows are on disk: drop the failed rows they replace.
    let mut plan: HashMap<PathBuf, HashSet<SampleKey>> = HashMap::new();
    for key in redone {
        if let Some(shard) = latest.shard_of(&key) {
            plan.entry(shard.to_path_buf()).or_default().insert(key);
        }
    }
    remove_superseded::<EvalRecord>(&plan)?;
    if interrupted {
        return Err(EvalError::Interrupted);
    }
    Ok(())
}

fn params(cfg: &EvalConfig) -> SampleParams {
    SampleParams {
        max_tokens: cfg.protocol.max_tokens,
        temperature: cfg.protocol.temperature,
        top_p: cfg.protocol.top_p,
        stop: Vec::new(),
    }
}

fn request_for(cfg: &EvalConfig, job: &Job) -> ChatRequest {
    let p = &cfg.protocol;
    let messages = chat_messages(p.system_prompt.as_deref(), &p.prompt_template, &job.problem.problem);
    params(cfg).request(messages, job.seed)
}

fn grade_record(
    cfg: &EvalConfig,
    benchmark: &str,
    model: &str,
    job: &Job,
    c: inference::Completion,
) -> EvalRecord {
    let p = &job.problem;
    // Grade the full text: the grader reads only what follows `</think>` when it is present.
    let graded_text = if c.completion.is_empty() { c.content.clone() } else { c.completion.clone() };
    let (verdict, extracted) = if c.error.is_some() {
        // A failed request is an unanswered sample, but an unparseable gold stays flagged.
        let g = grader::grade(&p.answer, "");
        let v = if g.verdict == grader::Verdict::UnparseableGold {
            Verdict::UnparseableGold
        } else {
            Verdict::Incorrect
        };
        (v, None)
    } else {
        let g = grader::grade(&p.answer, &graded_text);
        (Verdict::from(g.verdict), g.extracted)
    };
    let id = SampleId { problem_id: &p.id, sample_index: job.sample_index, seed: job.seed };
    EvalRecord {
        sample: params(cfg).record(id, &p.answer, (verdict, extracted), &c),
        benchmark: benchmark.to_string(),
        subject: p.subject.clone(),
        level: p.level.clone(),
        response: graded_text,
        reasoning: (!c.reasoning.is_empty()).then_some(c.reasoning),
        model: model.to_string(),
        thinking_tokens: c.thinking.map(|t| t.thinking_tokens),
        forced_waits: c.thinking.map(|t| t.forced_waits),
        forced_closes: c.thinking.map(|t| t.forced_closes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatched_run_is_described_without_debug_text() {
        let cfg: EvalConfig = toml::from_str("out_dir = \"o\"\n[model]\ncheckpoint = \"/a/final\"\n[[benchmarks]]\nname = \"math500\"\n").unwrap();
        let old = identity(&cfg);
        let mut new = identity(&cfg);
        new.protocol.temperature = 1.0;
        new.model.checkpoint = Some("/b/final".into());
        let d = identity_differences(&old, &new).join(", ");
        assert!(d.contains("protocol.temperature: 0.6 → 1") && d.contains("model.checkpoint: /a/final → /b/final"), "{d}");
        assert!(!d.contains("Some(") && !d.contains("ProtocolInfo"), "{d}");
        assert!(identity_differences(&old, &old).is_empty());
    }

    #[test]
    fn seeds_are_stable_and_distinct() {
        let a = sample_seed(0, "aime2024", "2024-I-1", 0);
        assert_eq!(a, sample_seed(0, "aime2024", "2024-I-1", 0));
        assert_ne!(a, sample_seed(0, "aime2024", "2024-I-1", 1));
        assert_ne!(a, sample_seed(1, "aime2024", "2024-I-1", 0));
        assert_ne!(a, sample_seed(0, "aime2025", "2024-I-1", 0));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(sample_seed(0, "ab", "c", 0), sample_seed(0, "a", "bc", 0));
        assert!(a <= i64::MAX as u64);
    }
}
