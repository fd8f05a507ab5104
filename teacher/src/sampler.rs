//! The sampling run: problems × k requests through a [`Backend`], graded, written to Parquet.
//!
//! Identity and resume: a sample is (problem id, sample index); its seed is derived from the
//! base seed and that identity only, so a rerun asks exactly the same questions. Completed rows
//! are buffered and written in whole shards (temp file + rename); a rerun reads the shards on
//! disk, skips what they hold, and redoes everything else — the samples that were in flight or
//! buffered when the previous run died. A kill at any instant therefore neither loses a written
//! sample nor duplicates one.
//!
//! A row on disk is final, permanent failures included — unless `run.retry_failed` asks for
//! failed rows to be redone: their new rows are written first, then the failed rows are
//! dropped from their shards (each step atomic; a later shard's row wins in between).
//!
//! Requests go out through [`inference::drive`] (bounded concurrency, cancellation).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datasets::records::provenance::{self, InputHash};
use datasets::records::supersede::{remove_superseded, LatestRows, SampleKey};
use datasets::records::{sample_seed, FinishReason, ResumeIndex, RunStatus, ShardWriter, Verdict};
use datasets::traces::{self, TraceMessage, TraceRow};
use datasets::Problem;
use inference::sample::{chat_messages, SampleId, SampleParams};
use inference::{drive, Backend, Completion, Message, RunBounds};

use crate::config::{SamplingConfig, TeacherConfig};
use crate::manifest::{Manifest, RunCounts};
use crate::TeacherError;

/// Deterministic per-sample seed of a trace: [`datasets::records::sample_seed`] scoped by the
/// problem id.
pub fn trace_seed(base_seed: u64, problem_id: &str, sample_index: u32) -> u64 {
    sample_seed(base_seed, &[problem_id], sample_index)
}

/// The chat messages for one problem: optional system prompt, then the user message from the
/// template (`{problem}` replaced).
pub fn build_messages(sampling: &SamplingConfig, problem: &str) -> Vec<Message> {
    chat_messages(
        sampling.system_prompt.as_deref(),
        &sampling.prompt_template,
        problem,
    )
}

/// What a sampling invocation achieved.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Counts after this invocation (whole directory).
    pub counts: RunCounts,
    /// True when Ctrl-C (or the stop future) ended the run early.
    pub interrupted: bool,
    /// Samples completed by this invocation.
    pub new_rows: usize,
    /// Permanently failed rows redone by this invocation (`run.retry_failed`) and replaced.
    pub replaced: usize,
    /// The first permanent failure's message (this invocation's first, else the first on
    /// disk), when `counts.failed > 0`.
    pub first_error: Option<String>,
    /// Wall time of this invocation in seconds.
    pub elapsed_s: f64,
}

impl RunReport {
    /// True when every problem × k sample is on disk.
    pub fn is_complete(&self) -> bool {
        self.counts.rows == self.counts.expected_rows
    }
}

struct Job {
    problem: Arc<Problem>,
    sample_index: u32,
    seed: u64,
    prompt: Vec<Message>,
}

fn make_row(job: &Job, c: Completion, teacher: &str, params: &SampleParams) -> TraceRow {
    let graded = if c.error.is_some() {
        (Verdict::Error, None)
    } else {
        let g = grader::grade(&job.problem.answer, &c.content);
        (Verdict::from(g.verdict), g.extracted)
    };
    let id = SampleId {
        problem_id: &job.problem.id,
        sample_index: job.sample_index,
        seed: job.seed,
    };
    TraceRow {
        sample: params.record(id, &job.problem.answer, graded, &c),
        source: job.problem.source.clone(),
        problem: job.problem.problem.clone(),
        prompt: job
            .prompt
            .iter()
            .map(|m| TraceMessage {
                role: m.role.clone(),
                content: m.content.clone(),
            })
            .collect(),
        reasoning: c.reasoning,
        content: c.content,
        completion: c.completion,
        teacher: teacher.to_string(),
        created_at: provenance::now_micros(),
    }
}

/// What the counts need of one row (kept per sample while the directory is read, so that a
/// later row for the same sample replaces an earlier one's contribution).
struct Tally {
    correct: bool,
    truncated: bool,
    error: Option<String>,
    completion_tokens: u32,
}

impl Tally {
    fn of(row: &TraceRow) -> Self {
        Tally {
            correct: row.correct(),
            truncated: row.finish_reason == FinishReason::Length,
            error: row.error.clone(),
            completion_tokens: row.completion_tokens,
        }
    }
}

fn count_row(counts: &mut RunCounts, t: &Tally) {
    counts.rows += 1;
    counts.correct += usize::from(t.correct);
    counts.truncated += usize::from(t.truncated);
    counts.failed += usize::from(t.error.is_some());
    counts.completion_tokens += u64::from(t.completion_tokens);
}

/// The rows already in `out` for the wanted samples: the latest row per sample (a redone
/// sample's row lives in a later shard), where each lives, and the order they were found in.
struct OnDisk {
    latest: LatestRows,
    tallies: HashMap<SampleKey, Tally>,
    order: Vec<SampleKey>,
    done: ResumeIndex,
}

fn read_on_disk(
    out: &std::path::Path,
    wanted: &HashSet<&str>,
    k: u32,
    retry_failed: bool,
) -> Result<OnDisk, TeacherError> {
    let mut d = OnDisk {
        latest: LatestRows::new(),
        tallies: HashMap::new(),
        order: Vec::new(),
        done: ResumeIndex::new(),
    };
    for shard in traces::list_trace_shards(out)? {
        for row in traces::read_trace_file(&shard)? {
            if row.sample_index >= k || !wanted.contains(row.problem_id.as_str()) {
                continue;
            }
            let key = row.sample.key();
            if d.latest.see(key.clone(), &shard) {
                d.order.push(key.clone());
            }
            // Every row counts as done, permanent failures included (a bad prompt is recorded
            // once, not retried forever) — unless failed rows are to be redone.
            d.done.record(&row, !(retry_failed && row.error.is_some()));
            d.tallies.insert(key, Tally::of(&row));
        }
    }
    Ok(d)
}

/// Runs (or resumes) a sampling run as configured, until done or until `stop` fires. Complete
/// rows are always flushed before returning, also on interruption.
///
/// Before the first request the backend's [`Backend::preflight`] checks the serving side (an
/// unreachable replica, an unknown model name or `max_tokens` beyond the context is an error
/// here, not thousands of failed rows). With `run.retry_failed`, rows recorded as permanent
/// failures are redone and replaced ([`datasets::records::supersede`]).
pub async fn run_sampling(
    cfg: &TeacherConfig,
    backend: Arc<dyn Backend>,
    stop: impl Future<Output = ()>,
) -> Result<RunReport, TeacherError> {
    let started = Instant::now();
    let mut problems = datasets::load_problems(&cfg.problems, &cfg.columns)?;
    if let Some(n) = cfg.run.max_problems {
        problems.truncate(n);
    }
    let inputs: Vec<InputHash> = vec![provenance::hash_file(&cfg.problems)?];
    let out = &cfg.out_dir;
    // Opening the writer creates the directory and sweeps temp files a killed run left.
    let mut sink = ShardWriter::<TraceRow>::open(out, cfg.run.shard_size)?;

    let previous = Manifest::read(out)?;
    if let Some(m) = &previous {
        m.check_compatible(cfg, &inputs)?;
    }
    let teacher = cfg.teacher_name();
    let k = cfg.sampling.samples;
    let mut counts = RunCounts {
        problems: problems.len(),
        samples_per_problem: k,
        expected_rows: problems.len() * k as usize,
        ..Default::default()
    };

    let wanted: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    let retry_failed = cfg.run.retry_failed;
    let disk = read_on_disk(out, &wanted, k, retry_failed)?;
    // Replacements a killed run had not finished: drop the superseded rows now.
    let stale = disk.latest.superseded_rows();
    if !stale.is_empty() {
        let n = remove_superseded::<TraceRow>(stale)?;
        tracing::info!(
            rows = n,
            "removed rows superseded by later rows of the same samples"
        );
    }
    let mut first_error: Option<String> = None;
    let mut to_replace: HashSet<SampleKey> = HashSet::new();
    for key in &disk.order {
        let t = &disk.tallies[key];
        if retry_failed && t.error.is_some() {
            to_replace.insert(key.clone());
        } else {
            count_row(&mut counts, t);
            if first_error.is_none() {
                first_error = t.error.clone();
            }
        }
    }
    let done = disk.done;
    let mut manifest = Manifest {
        schema_version: traces::TRACE_SCHEMA_VERSION,
        distill_version: env!("CARGO_PKG_VERSION").to_string(),
        git_rev: provenance::git_rev(),
        teacher: teacher.clone(),
        backend: cfg.backend.as_str().to_string(),
        status: RunStatus::Running,
        config: cfg.clone(),
        inputs,
        counts: counts.clone(),
        created_at: previous
            .as_ref()
            .map(|m| m.created_at.clone())
            .unwrap_or_else(provenance::now_rfc3339),
        updated_at: provenance::now_rfc3339(),
    };

    let params = cfg.sampling.params();
    let mut jobs = Vec::new();
    for p in problems.into_iter().map(Arc::new) {
        let prompt = build_messages(&cfg.sampling, &p.problem);
        for i in 0..k {
            if done.is_done(&p.id, i) {
                continue;
            }
            let seed = trace_seed(cfg.sampling.seed, &p.id, i);
            let request = params.request(prompt.clone(), seed);
            jobs.push((
                Job {
                    problem: p.clone(),
                    sample_index: i,
                    seed,
                    prompt: prompt.clone(),
                },
                request,
            ));
        }
    }
    let todo = jobs.len();
    if todo > 0 {
        let bounds = RunBounds::of_messages(
            cfg.sampling.max_tokens,
            jobs.iter().map(|(j, _)| j.prompt.as_slice()),
        );
        backend.preflight(&bounds).await?;
    }
    manifest.write(out)?;
    tracing::info!(out = %out.display(), already = done.done_count(), todo,
        retrying_failed = to_replace.len(), teacher = %teacher, "sampling");

    let progress =
        crate::progress::Progress::new(cfg.run.progress, counts.expected_rows, counts.rows);
    let mut new_rows = 0usize;
    let mut transient_failures = 0usize;
    let mut new_first_error: Option<String> = None;
    let mut replaced: HashSet<SampleKey> = HashSet::new();
    let interrupted = drive(backend, jobs, cfg.run.concurrency, stop, |job, result| {
        match result {
            Ok(c) => {
                let row = make_row(&job, c, &teacher, &params);
                count_row(&mut counts, &Tally::of(&row));
                if new_first_error.is_none() {
                    new_first_error = row.error.clone();
                }
                let key = row.sample.key();
                if to_replace.contains(&key) {
                    replaced.insert(key);
                }
                progress.record(&row);
                new_rows += 1;
                sink.push(row)?;
            }
            Err(e) => {
                transient_failures += 1;
                tracing::warn!(problem = %job.problem.id, sample = job.sample_index, error = %e,
                    "sample not completed; a rerun will retry it");
            }
        }
        Ok::<(), TeacherError>(())
    })
    .await;
    // Whatever happened, keep every finished sample.
    let flushed = sink.flush();
    progress.finish();
    let interrupted = interrupted?;
    flushed?;
    // The redone samples' new rows are on disk: drop the failed rows they replace. Failed
    // rows not redone (interrupted, retries exhausted) stay and still count.
    let mut plan: HashMap<PathBuf, HashSet<SampleKey>> = HashMap::new();
    for key in &to_replace {
        if replaced.contains(key) {
            if let Some(shard) = disk.latest.shard_of(key) {
                plan.entry(shard.to_path_buf())
                    .or_default()
                    .insert(key.clone());
            }
        } else {
            count_row(&mut counts, &disk.tallies[key]);
            if first_error.is_none() {
                first_error = disk.tallies[key].error.clone();
            }
        }
    }
    remove_superseded::<TraceRow>(&plan)?;
    counts.unfinished = counts.expected_rows - counts.rows;
    manifest.counts = counts.clone();
    manifest.status = if counts.unfinished == 0 {
        RunStatus::Complete
    } else if interrupted {
        RunStatus::Interrupted
    } else {
        RunStatus::Incomplete
    };
    manifest.updated_at = provenance::now_rfc3339();
    manifest.write(out)?;
    if transient_failures > 0 {
        tracing::warn!(
            transient_failures,
            "some samples failed after all retries; rerun the same command to finish them"
        );
    }
    Ok(RunReport {
        out_dir: out.clone(),
        counts,
        interrupted,
        new_rows,
        replaced: replaced.len(),
        first_error: new_first_error.or(first_error),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_seeds_are_the_shared_derivation_scoped_by_problem() {
        assert_eq!(trace_seed(3, "p1", 2), sample_seed(3, &["p1"], 2));
        assert_ne!(trace_seed(0, "p1", 10), trace_seed(0, "p11", 0));
    }

    #[test]
    fn messages_follow_the_template() {
        let mut s = SamplingConfig::default();
        let m = build_messages(&s, "1+1?");
        assert_eq!(m.len(), 1);
        assert!(m[0].content.starts_with("1+1?\nPlease reason step by step"));
        s.system_prompt = Some("sys".into());
        assert_eq!(build_messages(&s, "x")[0], Message::system("sys"));
    }
}
