//! The sampling run: problems × k requests through a [`Backend`], graded, written to Parquet.
//!
//! Identity and resume: a sample is (problem id, sample index); its seed is derived from the
//! base seed and that identity only, so a rerun asks exactly the same questions. Completed rows
//! are buffered and written in whole shards (temp file + rename); a rerun reads the shards on
//! disk, skips what they hold, and redoes everything else — the samples that were in flight or
//! buffered when the previous run died. A kill at any instant therefore neither loses a written
//! sample nor duplicates one.
//!
//! [`drive`] is the reusable core (bounded concurrency, cancellation) that `eval` also uses.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datasets::traces::{self, TraceMessage, TraceRow};
use datasets::Problem;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendError, ChatRequest, Completion, Message, Prompt};
use crate::config::{SamplingConfig, TeacherConfig};
use crate::manifest::{self, InputHash, Manifest, RunCounts};
use crate::TeacherError;

/// Prefix of shard file names (`part-00000.parquet`, …).
pub const SHARD_PREFIX: &str = "part-";

/// Deterministic per-sample seed: the first 8 bytes of SHA-256(base seed, problem id, sample
/// index), length-prefixed so distinct identities cannot collide by concatenation.
pub fn sample_seed(base_seed: u64, problem_id: &str, sample_index: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(base_seed.to_le_bytes());
    h.update((problem_id.len() as u64).to_le_bytes());
    h.update(problem_id.as_bytes());
    h.update(sample_index.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The chat messages for one problem: optional system prompt, then the user message from the
/// template (`{problem}` replaced).
pub fn build_messages(sampling: &SamplingConfig, problem: &str) -> Vec<Message> {
    let mut msgs = Vec::with_capacity(2);
    if let Some(s) = &sampling.system_prompt {
        msgs.push(Message::system(s.clone()));
    }
    msgs.push(Message::user(
        sampling.prompt_template.replace("{problem}", problem),
    ));
    msgs
}

/// Runs `jobs` through `backend` with at most `concurrency` requests in flight, handing each
/// result to `on_result` as it arrives (in completion order). Returns `Ok(true)` when `stop`
/// fired first: in-flight requests are then dropped (cancelled) and never reported, so the
/// caller can treat everything not reported as not done. An error from `on_result` stops the
/// run and is returned.
pub async fn drive<J, E>(
    backend: Arc<dyn Backend>,
    jobs: impl IntoIterator<Item = (J, ChatRequest)>,
    concurrency: usize,
    stop: impl Future<Output = ()>,
    mut on_result: impl FnMut(J, Result<Completion, BackendError>) -> Result<(), E>,
) -> Result<bool, E> {
    let mut results = futures::stream::iter(jobs)
        .map(|(job, request)| {
            let backend = backend.clone();
            async move {
                let out = backend.complete(request).await;
                (job, out)
            }
        })
        .buffer_unordered(concurrency.max(1));
    let stop = std::pin::pin!(stop);
    let mut stop = futures::FutureExt::fuse(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(true),
            next = results.next() => match next {
                Some((job, out)) => on_result(job, out)?,
                None => return Ok(false),
            },
        }
    }
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

/// Buffers rows and writes whole shards, numbered after those already present.
struct ShardSink {
    dir: PathBuf,
    next: usize,
    pending: Vec<TraceRow>,
    shard_size: usize,
}

impl ShardSink {
    fn flush(&mut self) -> Result<(), TeacherError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self
            .dir
            .join(format!("{SHARD_PREFIX}{:05}.parquet", self.next));
        traces::write_trace_shard(&path, &self.pending)?;
        tracing::debug!(shard = %path.display(), rows = self.pending.len(), "wrote shard");
        self.next += 1;
        self.pending.clear();
        Ok(())
    }

    fn push(&mut self, row: TraceRow) -> Result<(), TeacherError> {
        self.pending.push(row);
        if self.pending.len() >= self.shard_size {
            self.flush()?;
        }
        Ok(())
    }
}

fn shard_number(path: &Path) -> Option<usize> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(SHARD_PREFIX)?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

/// Removes temp files a killed run left behind (hidden `.…tmp` names); they are never data.
fn remove_stale_temps(dir: &Path) -> Result<(), TeacherError> {
    for entry in std::fs::read_dir(dir).map_err(|e| TeacherError::io(dir, e))? {
        let entry = entry.map_err(|e| TeacherError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn make_row(job: &Job, c: Completion, teacher: &str, s: &SamplingConfig) -> TraceRow {
    let (verdict, extracted) = if c.error.is_some() {
        ("error".to_string(), None)
    } else {
        let g = grader::grade(&job.problem.answer, &c.content);
        (g.verdict.as_str().to_string(), g.extracted)
    };
    TraceRow {
        problem_id: job.problem.id.clone(),
        sample_index: job.sample_index,
        source: job.problem.source.clone(),
        problem: job.problem.problem.clone(),
        reference_answer: job.problem.answer.clone(),
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
        finish_reason: c.finish_reason.as_str().to_string(),
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens,
        extracted_answer: extracted,
        verdict,
        teacher: teacher.to_string(),
        temperature: s.temperature,
        top_p: s.top_p,
        max_tokens: s.max_tokens,
        seed: job.seed,
        latency_ms: c.latency_ms,
        error: c.error,
        created_at: now_micros(),
    }
}

fn count_row(counts: &mut RunCounts, row: &TraceRow) {
    counts.rows += 1;
    counts.correct += usize::from(row.verdict == "correct");
    counts.truncated += usize::from(row.finish_reason == "length");
    counts.failed += usize::from(row.error.is_some());
    counts.completion_tokens += u64::from(row.completion_tokens);
}

/// Runs (or resumes) a sampling run as configured, until done or until `stop` fires. Complete
/// rows are always flushed before returning, also on interruption.
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
    let inputs: Vec<InputHash> = vec![manifest::hash_file(&cfg.problems)?];
    let out = &cfg.out_dir;
    std::fs::create_dir_all(out).map_err(|e| TeacherError::io(out, e))?;
    remove_stale_temps(out)?;

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

    // What is already on disk.
    let wanted: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    let mut done: HashSet<(String, u32)> = HashSet::new();
    let mut next_shard = 0;
    for shard in traces::list_trace_shards(out)? {
        if let Some(n) = shard_number(&shard) {
            next_shard = next_shard.max(n + 1);
        }
        for row in traces::read_trace_file(&shard)? {
            if row.sample_index < k && wanted.contains(row.problem_id.as_str()) {
                let key = (row.problem_id.clone(), row.sample_index);
                if done.insert(key) {
                    count_row(&mut counts, &row);
                } else {
                    tracing::warn!(problem = %row.problem_id, sample = row.sample_index,
                        shard = %shard.display(), "duplicate sample on disk; readers should keep one");
                }
            }
        }
    }
    let mut manifest = Manifest {
        schema_version: traces::TRACE_SCHEMA_VERSION,
        distill_version: env!("CARGO_PKG_VERSION").to_string(),
        git_rev: manifest::git_rev(),
        teacher: teacher.clone(),
        backend: cfg.backend.as_str().to_string(),
        status: "running".into(),
        config: cfg.clone(),
        inputs,
        counts: counts.clone(),
        created_at: previous
            .as_ref()
            .map(|m| m.created_at.clone())
            .unwrap_or_else(manifest::now_rfc3339),
        updated_at: manifest::now_rfc3339(),
    };
    manifest.write(out)?;

    let mut jobs = Vec::new();
    for p in problems.into_iter().map(Arc::new) {
        let prompt = build_messages(&cfg.sampling, &p.problem);
        for i in 0..k {
            if done.contains(&(p.id.clone(), i)) {
                continue;
            }
            let seed = sample_seed(cfg.sampling.seed, &p.id, i);
            let request = ChatRequest {
                prompt: Prompt::Messages(prompt.clone()),
                max_tokens: cfg.sampling.max_tokens,
                temperature: cfg.sampling.temperature,
                top_p: cfg.sampling.top_p,
                seed: Some(seed),
                stop: cfg.sampling.stop.clone(),
            };
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
    tracing::info!(out = %out.display(), already = done.len(), todo, teacher = %teacher, "sampling");

    let progress =
        crate::progress::Progress::new(cfg.run.progress, counts.expected_rows, counts.rows);
    let mut sink = ShardSink {
        dir: out.clone(),
        next: next_shard,
        pending: Vec::new(),
        shard_size: cfg.run.shard_size,
    };
    let mut new_rows = 0usize;
    let mut transient_failures = 0usize;
    let sampling = cfg.sampling.clone();
    let interrupted = drive(backend, jobs, cfg.run.concurrency, stop, |job, result| {
        match result {
            Ok(c) => {
                let row = make_row(&job, c, &teacher, &sampling);
                count_row(&mut counts, &row);
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
    counts.unfinished = counts.expected_rows - counts.rows;
    manifest.counts = counts.clone();
    manifest.status = if counts.unfinished == 0 {
        "complete"
    } else if interrupted {
        "interrupted"
    } else {
        "incomplete"
    }
    .into();
    manifest.updated_at = manifest::now_rfc3339();
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
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_stable_and_distinct() {
        let a = sample_seed(0, "p1", 0);
        assert_eq!(a, sample_seed(0, "p1", 0));
        assert_ne!(a, sample_seed(0, "p1", 1));
        assert_ne!(a, sample_seed(1, "p1", 0));
        assert_ne!(sample_seed(0, "p1", 10), sample_seed(0, "p11", 0));
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

    #[test]
    fn shard_numbers_parse() {
        assert_eq!(shard_number(Path::new("/x/part-00012.parquet")), Some(12));
        assert_eq!(shard_number(Path::new("/x/other.parquet")), None);
    }
}
