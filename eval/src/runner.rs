//! An eval run: for each benchmark, problems × k requests through an [`inference::Backend`]
//! (fanned out by [`inference::drive`]), graded as they complete, stored as Parquet shards under
//! `OUT/records/<benchmark>/` by the shared record layer ([`datasets::records`]), then
//! summarised into `OUT/summary.json` + `OUT/summary.md`.
//!
//! Resume: a sample is identified by (problem id, sample index). A rerun reads the shards
//! already written, skips samples that completed, and redoes samples that were in flight or
//! failed (a later row supersedes an earlier one for the same identity). Shards are written via
//! temp file + rename, so a kill at any point loses at most the samples of the unfinished shard.
//! The run refuses to resume into a directory created with a different protocol or model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datasets::eval_records::{read_eval_record_dir, EvalRecord};
use datasets::records::{ResumeIndex, SampleRecord, ShardWriter, Verdict};
use inference::{Backend, ChatRequest, Message, Prompt};

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
                    "{} holds a run of {:?} with protocol {:?}; this config asks for {:?} with {:?}. \
                     Use a new out_dir rather than mixing protocols.",
                    out.display(),
                    old.model.checkpoint,
                    old.protocol,
                    id.model.checkpoint,
                    id.protocol
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
    Ok(summary)
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
    for r in &read_eval_record_dir(&dir)? {
        done.record(r, r.error.is_none());
    }

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

    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(name.to_string());
    bar.set_position((total - jobs.len()) as u64);

    let mut writer = ShardWriter::<EvalRecord>::open(&dir, cfg.shard_size)?;
    let model = cfg.model.display_name();
    let started = Instant::now();
    let (mut n_done, mut n_correct, mut tokens) = (0usize, 0usize, 0u64);
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
        n_done += 1;
        n_correct += usize::from(record.correct());
        tokens += u64::from(record.completion_tokens);
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "acc {:.3} · {:.0} tok/s",
            n_correct as f64 / n_done as f64,
            tokens as f64 / secs
        ));
        bar.inc(1);
        writer.push(record)?;
        Ok::<(), EvalError>(())
    })
    .await;
    // Whatever happened, keep every finished sample.
    let flushed = writer.flush();
    bar.finish_and_clear();
    if outcome? {
        return Err(EvalError::Interrupted);
    }
    Ok(flushed?)
}

fn request_for(cfg: &EvalConfig, job: &Job) -> ChatRequest {
    let mut messages = Vec::new();
    if let Some(sys) = &cfg.protocol.system_prompt {
        messages.push(Message::system(sys.clone()));
    }
    messages.push(Message::user(cfg.render_prompt(&job.problem.problem)));
    ChatRequest {
        prompt: Prompt::Messages(messages),
        max_tokens: cfg.protocol.max_tokens,
        temperature: cfg.protocol.temperature,
        top_p: cfg.protocol.top_p,
        seed: Some(job.seed),
        stop: Vec::new(),
    }
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
    EvalRecord {
        sample: SampleRecord {
            problem_id: p.id.clone(),
            sample_index: job.sample_index,
            reference_answer: p.answer.clone(),
            extracted_answer: extracted,
            verdict,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            finish_reason: c.finish_reason,
            seed: job.seed,
            temperature: cfg.protocol.temperature,
            top_p: cfg.protocol.top_p,
            max_tokens: cfg.protocol.max_tokens,
            latency_ms: c.latency_ms,
            error: c.error,
        },
        benchmark: benchmark.to_string(),
        subject: p.subject.clone(),
        level: p.level.clone(),
        response: graded_text,
        reasoning: (!c.reasoning.is_empty()).then_some(c.reasoning),
        model: model.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
