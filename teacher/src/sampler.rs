//! The sampling run: problems × k requests through a [`Backend`], graded, written to Parquet.
//!
//! Identity and resume: a sample is (problem id, sample index); its seed is derived from the
//! base seed and that identity only, so a rerun asks exactly the same questions. Completed rows
//! are buffered and written in whole shards (temp file + rename); a rerun reads the shards on
//! disk, skips what they hold, and redoes everything else — the samples that were in flight or
//! buffered when the previous run died. A kill at any instant therefore neither loses a written
//! sample nor duplicates one.
//!
//! Requests go out through [`inference::drive`] (bounded concurrency, cancellation).

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datasets::records::provenance::{self, InputHash};
use datasets::records::{
    sample_seed, FinishReason, ResumeIndex, RunStatus, SampleRecord, ShardWriter, Verdict,
};
use datasets::traces::{self, TraceMessage, TraceRow};
use datasets::Problem;
use inference::{drive, Backend, ChatRequest, Completion, Message, Prompt};

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
    let mut msgs = Vec::with_capacity(2);
    if let Some(s) = &sampling.system_prompt {
        msgs.push(Message::system(s.clone()));
    }
    msgs.push(Message::user(
        sampling.prompt_template.replace("{problem}", problem),
    ));
    msgs
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

fn make_row(job: &Job, c: Completion, teacher: &str, s: &SamplingConfig) -> TraceRow {
    let (verdict, extracted) = if c.error.is_some() {
        (Verdict::Error, None)
    } else {
        let g = grader::grade(&job.problem.answer, &c.content);
        (Verdict::from(g.verdict), g.extracted)
    };
    TraceRow {
        sample: SampleRecord {
            problem_id: job.problem.id.clone(),
            sample_index: job.sample_index,
            reference_answer: job.problem.answer.clone(),
            extracted_answer: extracted,
            verdict,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            finish_reason: c.finish_reason,
            seed: job.seed,
            temperature: s.temperature,
            top_p: s.top_p,
            max_tokens: s.max_tokens,
            latency_ms: c.latency_ms,
            error: c.error,
        },
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

fn count_row(counts: &mut RunCounts, row: &TraceRow) {
    counts.rows += 1;
    counts.correct += usize::from(row.correct());
    counts.truncated += usize::from(row.finish_reason == FinishReason::Length);
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

    // What is already on disk. Every row counts as done, permanent failures included: a bad
    // prompt is recorded once, not retried forever.
    let wanted: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    let mut done = ResumeIndex::new();
    for shard in traces::list_trace_shards(out)? {
        for row in traces::read_trace_file(&shard)? {
            if row.sample_index < k && wanted.contains(row.problem_id.as_str()) {
                if done.record(&row, true) {
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
    manifest.write(out)?;

    let mut jobs = Vec::new();
    for p in problems.into_iter().map(Arc::new) {
        let prompt = build_messages(&cfg.sampling, &p.problem);
        for i in 0..k {
            if done.is_done(&p.id, i) {
                continue;
            }
            let seed = trace_seed(cfg.sampling.seed, &p.id, i);
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
    tracing::info!(out = %out.display(), already = done.done_count(), todo, teacher = %teacher, "sampling");

    let progress =
        crate::progress::Progress::new(cfg.run.progress, counts.expected_rows, counts.rows);
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
