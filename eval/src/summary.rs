//! Per-run summaries: every metric of one model on each benchmark, computed from the stored
//! per-sample records, and written as `summary.json` (machine-readable, read back by
//! `eval compare`) and `summary.md` (for people).

use std::collections::BTreeMap;
use std::path::Path;

use datasets::eval_records::EvalRecord;
use datasets::records::{FinishReason, Verdict};
use serde::{Deserialize, Serialize};

use crate::metrics::{
    bootstrap_ci, majority_vote, mean, median, pass_at_k, pass_k_grid, standard_error,
};
use crate::EvalError;

/// Version of the `summary.json` layout.
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

/// Whether a model is the reference (teacher) or a model compared against it (student).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The reference model; `eval compare` reports deltas against it.
    Teacher,
    /// A model being measured against the teacher.
    #[default]
    Student,
}

impl Role {
    /// `teacher` / `student`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Student => "student",
        }
    }
}

/// Which model a run scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Label used in tables.
    pub name: String,
    /// Teacher or student.
    pub role: Role,
    /// Checkpoint directory or served model name.
    pub checkpoint: Option<String>,
    /// `native` or `openai`.
    pub backend: String,
}

/// The sampling protocol a run used, recorded so numbers are never compared across protocols
/// by accident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolInfo {
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// New-token budget.
    pub max_tokens: u32,
    /// User prompt template (`{problem}` is replaced).
    pub prompt_template: String,
    /// System prompt, if any (R1 uses none).
    pub system_prompt: Option<String>,
    /// Run seed from which per-sample seeds derive.
    pub seed: u64,
    /// Thinking budget (s1 budget forcing), when one was set; absent in older summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<inference::budget::ThinkingBudget>,
}

/// Options of the statistics (not of generation): the `[stats]` section of the eval config.
pub type SummaryOptions = crate::config::StatsConfig;

/// Accuracy of one group of problems (a MATH subject or level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStat {
    /// Group label (e.g. `Algebra`, `5`).
    pub group: String,
    /// Problems in the group.
    pub n_problems: usize,
    /// Mean pass@1 over the group's problems.
    #[serde(rename = "pass@1")]
    pub pass_at_1: f64,
}

/// Accuracy of the samples whose response length falls in one bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthBin {
    /// Shortest response in the bin (tokens).
    pub min_tokens: u32,
    /// Longest response in the bin (tokens).
    pub max_tokens: u32,
    /// Mean response length in the bin (the plot's x value).
    pub mean_tokens: f64,
    /// Samples in the bin.
    pub n_samples: usize,
    /// Fraction of them graded correct.
    pub accuracy: f64,
}

/// One problem's outcome, kept so `eval compare` can compute per-problem agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemStat {
    /// Problem id.
    pub id: String,
    /// Samples scored.
    pub n: usize,
    /// Correct samples.
    pub correct: usize,
    /// Whether the majority-vote answer was correct.
    pub cons: bool,
    /// Mean response tokens.
    pub mean_tokens: f64,
}

/// Every metric of one model on one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkSummary {
    /// Mean over problems of the per-problem fraction of correct samples.
    #[serde(rename = "pass@1")]
    pub pass_at_1: f64,
    /// Standard error of pass@1 across problems.
    #[serde(rename = "pass@1_se")]
    pub pass_at_1_se: f64,
    /// Percentile-bootstrap 95% interval of pass@1 over problems.
    #[serde(rename = "pass@1_ci95")]
    pub pass_at_1_ci95: [f64; 2],
    /// Majority-vote accuracy over the k samples.
    #[serde(rename = "cons@k")]
    pub cons_at_k: f64,
    /// Samples per problem (the smallest count when a run is incomplete).
    pub k: usize,
    /// Problems scored.
    pub n_problems: usize,
    /// Samples scored.
    pub n_samples: usize,
    /// Unbiased pass@k for k in 1, 2, 4, …, k (keys are k as text).
    #[serde(rename = "pass@k")]
    pub pass_at_k: BTreeMap<String, f64>,
    /// Mean response length in tokens.
    pub mean_response_tokens: f64,
    /// Median response length in tokens.
    pub median_response_tokens: f64,
    /// Mean length of correct responses (None when there are none).
    pub mean_tokens_correct: Option<f64>,
    /// Mean length of incorrect responses (None when there are none).
    pub mean_tokens_incorrect: Option<f64>,
    /// Fraction of samples that hit the token budget (`finish_reason == "length"`).
    pub truncation_rate: f64,
    /// Fraction of samples with no extracted answer.
    pub no_answer_rate: f64,
    /// Fraction of samples the backend failed permanently (counted as incorrect).
    pub error_rate: f64,
    /// Problems whose gold answer the grader could not parse (never counted correct).
    pub unparseable_gold_problems: usize,
    /// pass@1 by `subject` and by `level` where the problem set has them (MATH-500).
    pub breakdown: BTreeMap<String, Vec<GroupStat>>,
    /// Accuracy in equal-count bins of response length.
    pub accuracy_by_length: Vec<LengthBin>,
    /// Per-problem outcomes in problem order.
    pub problems: Vec<ProblemStat>,
}

/// `summary.json`: one model, its protocol, and every benchmark it was scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Layout version ([`SUMMARY_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The model scored.
    pub model: ModelInfo,
    /// How it was sampled.
    pub protocol: ProtocolInfo,
    /// Benchmark name → metrics.
    pub benchmarks: BTreeMap<String, BenchmarkSummary>,
}

struct ProblemAcc<'a> {
    samples: Vec<&'a EvalRecord>,
}

/// Computes every metric of one benchmark from its records (one row per problem × sample).
/// Duplicate (problem, sample) rows keep the last one, which is how a resumed run that redid a
/// failed sample supersedes the failure. Problems keep their first-seen order.
pub fn summarize_benchmark(records: &[EvalRecord], opts: &SummaryOptions) -> BenchmarkSummary {
    let mut order: Vec<&str> = Vec::new();
    let mut by_problem: BTreeMap<&str, BTreeMap<u32, &EvalRecord>> = BTreeMap::new();
    for r in records {
        let entry = by_problem.entry(&r.problem_id).or_insert_with(|| {
            order.push(&r.problem_id);
            BTreeMap::new()
        });
        entry.insert(r.sample_index, r);
    }
    let problems: Vec<ProblemAcc> = order
        .iter()
        .map(|id| ProblemAcc { samples: by_problem[id].values().copied().collect() })
        .collect();

    let all: Vec<&EvalRecord> = problems.iter().flat_map(|p| p.samples.iter().copied()).collect();
    let n_samples = all.len();
    let k = problems.iter().map(|p| p.samples.len()).min().unwrap_or(0);
    let frac = |f: &dyn Fn(&EvalRecord) -> bool| {
        if n_samples == 0 {
            0.0
        } else {
            all.iter().filter(|r| f(r)).count() as f64 / n_samples as f64
        }
    };

    let mut per_problem = Vec::with_capacity(problems.len());
    let mut pass1 = Vec::with_capacity(problems.len());
    let mut cons = Vec::with_capacity(problems.len());
    let mut unparseable_gold_problems = 0;
    for p in &problems {
        let n = p.samples.len();
        let c = p.samples.iter().filter(|r| r.correct()).count();
        let answers: Vec<Option<String>> =
            p.samples.iter().map(|r| r.extracted_answer.clone()).collect();
        let classes = grader::cluster_answers(&answers);
        let correct: Vec<bool> = p.samples.iter().map(|r| r.correct()).collect();
        let vote = majority_vote(&classes, &correct);
        if p.samples.iter().any(|r| r.verdict == Verdict::UnparseableGold) {
            unparseable_gold_problems += 1;
        }
        let tokens: Vec<f64> = p.samples.iter().map(|r| r.completion_tokens as f64).collect();
        pass1.push(c as f64 / n as f64);
        cons.push(if vote { 1.0 } else { 0.0 });
        per_problem.push(ProblemStat {
            id: p.samples[0].problem_id.clone(),
            n,
            correct: c,
            cons: vote,
            mean_tokens: mean(&tokens),
        });
    }

    let mut pass_k = BTreeMap::new();
    for kk in pass_k_grid(k) {
        let vals: Vec<f64> = per_problem
            .iter()
            .filter_map(|p| pass_at_k(p.n, p.correct, kk))
            .collect();
        pass_k.insert(kk.to_string(), mean(&vals));
    }

    let tokens: Vec<f64> = all.iter().map(|r| r.completion_tokens as f64).collect();
    let tok_where = |want: bool| {
        let v: Vec<f64> =
            all.iter().filter(|r| r.correct() == want).map(|r| r.completion_tokens as f64).collect();
        (!v.is_empty()).then(|| mean(&v))
    };
    let (lo, hi) = bootstrap_ci(&pass1, opts.bootstrap_resamples, opts.bootstrap_seed, 0.95);

    let mut breakdown = BTreeMap::new();
    for (key, get) in [
        ("subject", (|r: &EvalRecord| r.subject.clone()) as fn(&EvalRecord) -> Option<String>),
        ("level", |r: &EvalRecord| r.level.clone()),
    ] {
        let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (p, v) in problems.iter().zip(&pass1) {
            if let Some(g) = get(p.samples[0]) {
                groups.entry(g).or_default().push(*v);
            }
        }
        if !groups.is_empty() {
            let stats = groups
                .into_iter()
                .map(|(group, v)| GroupStat { group, n_problems: v.len(), pass_at_1: mean(&v) })
                .collect();
            breakdown.insert(key.to_string(), stats);
        }
    }

    BenchmarkSummary {
        pass_at_1: mean(&pass1),
        pass_at_1_se: standard_error(&pass1),
        pass_at_1_ci95: [lo, hi],
        cons_at_k: mean(&cons),
        k,
        n_problems: problems.len(),
        n_samples,
        pass_at_k: pass_k,
        mean_response_tokens: mean(&tokens),
        median_response_tokens: median(&tokens),
        mean_tokens_correct: tok_where(true),
        mean_tokens_incorrect: tok_where(false),
        truncation_rate: frac(&|r| r.finish_reason == FinishReason::Length),
        no_answer_rate: frac(&|r| r.extracted_answer.is_none()),
        error_rate: frac(&|r| r.error.is_some()),
        unparseable_gold_problems,
        breakdown,
        accuracy_by_length: length_bins(&all, opts.length_bins),
        problems: per_problem,
    }
}

/// Equal-count bins over samples sorted by length (ties may straddle bins).
fn length_bins(samples: &[&EvalRecord], bins: usize) -> Vec<LengthBin> {
    if samples.is_empty() || bins == 0 {
        return Vec::new();
    }
    let mut sorted: Vec<(u32, bool)> =
        samples.iter().map(|r| (r.completion_tokens, r.correct())).collect();
    sorted.sort_unstable();
    let bins = bins.min(sorted.len());
    (0..bins)
        .map(|b| {
            let start = b * sorted.len() / bins;
            let end = (b + 1) * sorted.len() / bins;
            let chunk = &sorted[start..end];
            let n = chunk.len();
            LengthBin {
                min_tokens: chunk[0].0,
                max_tokens: chunk[n - 1].0,
                mean_tokens: chunk.iter().map(|c| c.0 as f64).sum::<f64>() / n as f64,
                n_samples: n,
                accuracy: chunk.iter().filter(|c| c.1).count() as f64 / n as f64,
            }
        })
        .collect()
}

impl RunSummary {
    /// Reads `summary.json` from a run directory.
    pub fn load(run_dir: &Path) -> Result<Self, EvalError> {
        let path = run_dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| EvalError::Json(datasets::PathError::new(path, source)))
    }

    /// Writes `summary.json` and `summary.md` into `run_dir` atomically.
    pub fn save(&self, run_dir: &Path) -> Result<(), EvalError> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| EvalError::serialize("summary", e))?;
        datasets::atomic::write_atomic(&run_dir.join("summary.json"), json.as_bytes())?;
        Ok(datasets::atomic::write_atomic(&run_dir.join("summary.md"), self.to_markdown().as_bytes())?)
    }

    /// Human-readable report of the run.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let m = &self.model;
        let p = &self.protocol;
        let _ = writeln!(s, "# Evaluation: {}\n", m.name);
        let _ = writeln!(
            s,
            "- role: {} · backend: {} · checkpoint: {}",
            m.role.as_str(),
            m.backend,
            m.checkpoint.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            s,
            "- protocol: temperature {} · top-p {} · max {} new tokens · seed {} · system prompt: {}",
            p.temperature,
            p.top_p,
            p.max_tokens,
            p.seed,
            p.system_prompt.as_deref().map(|x| format!("`{}`", x.escape_debug())).unwrap_or("none".into())
        );
        if let Some(b) = &p.thinking {
            let n = |x: Option<u32>| x.map_or_else(|| "none".to_string(), |v| v.to_string());
            let _ = writeln!(
                s,
                "- thinking budget: max {} · min {} (wait token `{}`, at most {} waits)",
                n(b.max_thinking_tokens),
                n(b.min_thinking_tokens),
                b.wait_token.escape_debug(),
                b.max_waits
            );
        }
        let _ = writeln!(s, "- prompt: `{}`\n", p.prompt_template.escape_debug());
        let _ = writeln!(
            s,
            "| benchmark | problems | k | pass@1 | ± SE | 95% CI | cons@k | mean tokens | median tokens | truncated | no answer | errors |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
        for (name, b) in &self.benchmarks {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | [{}, {}] | {} | {:.0} | {:.0} | {} | {} | {} |",
                b.n_problems,
                b.k,
                pct(b.pass_at_1),
                pct(b.pass_at_1_se),
                pct(b.pass_at_1_ci95[0]),
                pct(b.pass_at_1_ci95[1]),
                pct(b.cons_at_k),
                b.mean_response_tokens,
                b.median_response_tokens,
                pct(b.truncation_rate),
                pct(b.no_answer_rate),
                pct(b.error_rate),
            );
        }
        for (name, b) in &self.benchmarks {
            if b.pass_at_k.len() > 1 {
                let _ = writeln!(s, "\n## {name}: pass@k (unbiased estimator)\n");
                let ks: Vec<(usize, f64)> = {
                    let mut v: Vec<(usize, f64)> =
                        b.pass_at_k.iter().filter_map(|(k, v)| Some((k.parse().ok()?, *v))).collect();
                    v.sort_by_key(|x| x.0);
                    v
                };
                let _ = writeln!(s, "| {} |", ks.iter().map(|(k, _)| format!("pass@{k}")).collect::<Vec<_>>().join(" | "));
                let _ = writeln!(s, "|{}", "---:|".repeat(ks.len()));
                let _ = writeln!(s, "| {} |", ks.iter().map(|(_, v)| pct(*v)).collect::<Vec<_>>().join(" | "));
            }
            for (key, groups) in &b.breakdown {
                let _ = writeln!(s, "\n## {name}: pass@1 by {key}\n");
                let _ = writeln!(s, "| {key} | problems | pass@1 |\n|---|---:|---:|");
                for g in groups {
                    let _ = writeln!(s, "| {} | {} | {} |", g.group, g.n_problems, pct(g.pass_at_1));
                }
            }
            if b.unparseable_gold_problems > 0 {
                let _ = writeln!(
                    s,
                    "\n> {name}: {} problem(s) have a gold answer the grader cannot parse; they count as unsolved.",
                    b.unparseable_gold_problems
                );
            }
        }
        s
    }
}

/// A fraction as a percentage with one decimal, the way R1-style tables print accuracy.
pub fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rec(pid: &str, i: u32, answer: Option<&str>, correct: bool, tokens: u32) -> EvalRecord {
        EvalRecord {
            sample: datasets::records::SampleRecord {
                problem_id: pid.into(),
                sample_index: i,
                reference_answer: "1".into(),
                extracted_answer: answer.map(str::to_string),
                verdict: if correct { Verdict::Correct } else { Verdict::Incorrect },
                prompt_tokens: 5,
                completion_tokens: tokens,
                finish_reason: if tokens >= 100 { FinishReason::Length } else { FinishReason::Stop },
                seed: 0,
                temperature: 0.6,
                top_p: 0.95,
                max_tokens: 100,
                latency_ms: 1,
                error: None,
            },
            benchmark: "b".into(),
            subject: Some(if pid < "p2" { "Algebra" } else { "Geometry" }.into()),
            level: Some("3".into()),
            response: String::new(),
            reasoning: None,
            model: "m".into(),
            thinking_tokens: None,
            forced_waits: None,
            forced_closes: None,
        }
    }

    #[test]
    fn hand_computed_benchmark() {
        // p0: 3/4 correct, answers 1,1,2,1 → vote 1 (correct)
        // p1: 1/4 correct; answers 2, 1/1 (≡1, correct? no: sample 1 correct), 3, 3 → vote 3 wrong
        // p2: 0/4; no answers → vote wrong
        let recs = vec![
            rec("p0", 0, Some("1"), true, 10),
            rec("p0", 1, Some("1"), true, 20),
            rec("p0", 2, Some("2"), false, 30),
            rec("p0", 3, Some("1"), true, 40),
            rec("p1", 0, Some("2"), false, 50),
            rec("p1", 1, Some("1"), true, 60),
            rec("p1", 2, Some("3"), false, 70),
            rec("p1", 3, Some("3"), false, 80),
            rec("p2", 0, None, false, 100),
            rec("p2", 1, None, false, 100),
            rec("p2", 2, None, false, 100),
            rec("p2", 3, None, false, 100),
        ];
        let s = summarize_benchmark(&recs, &SummaryOptions { bootstrap_resamples: 500, ..Default::default() });
        assert_eq!((s.n_problems, s.n_samples, s.k), (3, 12, 4));
        assert!((s.pass_at_1 - (0.75 + 0.25 + 0.0) / 3.0).abs() < 1e-12);
        assert!((s.cons_at_k - 1.0 / 3.0).abs() < 1e-12);
        // pass@4: p0 and p1 have a correct sample → 2/3.
        assert!((s.pass_at_k["4"] - 2.0 / 3.0).abs() < 1e-12);
        // pass@2 for p0: 1 - C(1,2)/C(4,2) = 1; p1: 1 - C(3,2)/C(4,2) = 0.5; p2: 0.
        assert!((s.pass_at_k["2"] - 0.5).abs() < 1e-12);
        assert!((s.truncation_rate - 4.0 / 12.0).abs() < 1e-12);
        assert!((s.no_answer_rate - 4.0 / 12.0).abs() < 1e-12);
        assert!((s.mean_response_tokens - 760.0 / 12.0).abs() < 1e-9);
        assert_eq!(s.median_response_tokens, 65.0);
        assert_eq!(s.mean_tokens_correct, Some(130.0 / 4.0));
        assert!(s.pass_at_1_ci95[0] <= s.pass_at_1 && s.pass_at_1 <= s.pass_at_1_ci95[1]);
        let subj = &s.breakdown["subject"];
        assert_eq!(subj[0].group, "Algebra");
        assert_eq!(subj[0].n_problems, 2);
        assert!((subj[0].pass_at_1 - 0.5).abs() < 1e-12);
        assert_eq!(s.accuracy_by_length.iter().map(|b| b.n_samples).sum::<usize>(), 12);
        assert_eq!(s.problems[1].id, "p1");
        assert!(s.problems[0].cons && !s.problems[1].cons);
    }

    #[test]
    fn later_rows_supersede_earlier_ones() {
        let mut failed = rec("p0", 0, None, false, 0);
        failed.error = Some("boom".into());
        let recs = vec![failed, rec("p0", 0, Some("1"), true, 10)];
        let s = summarize_benchmark(&recs, &SummaryOptions::default());
        assert_eq!(s.n_samples, 1);
        assert_eq!(s.pass_at_1, 1.0);
        assert_eq!(s.error_rate, 0.0);
    }

    #[test]
    fn protocols_without_a_budget_read_and_write_as_before() {
        // run.json / summary.json written before thinking budgets existed.
        let old = r#"{"temperature":0.6,"top_p":0.95,"max_tokens":64,"prompt_template":"{problem}","system_prompt":null,"seed":0}"#;
        let p: ProtocolInfo = serde_json::from_str(old).unwrap();
        assert_eq!(p.thinking, None);
        assert_eq!(serde_json::to_string(&p).unwrap(), old, "no new key for budget-less runs");
        let with = ProtocolInfo {
            thinking: Some(inference::budget::ThinkingBudget { max_thinking_tokens: Some(512), ..Default::default() }),
            ..p.clone()
        };
        assert_ne!(with, p, "a budget run never resumes into a plain run's directory");
    }

    #[test]
    fn markdown_lists_every_benchmark() {
        let recs = vec![rec("p0", 0, Some("1"), true, 10), rec("p2", 0, Some("2"), false, 10)];
        let b = summarize_benchmark(&recs, &SummaryOptions::default());
        let run = RunSummary {
            schema_version: SUMMARY_SCHEMA_VERSION,
            model: ModelInfo { name: "tiny".into(), role: Role::Student, checkpoint: None, backend: "native".into() },
            protocol: ProtocolInfo {
                temperature: 0.6,
                top_p: 0.95,
                max_tokens: 100,
                prompt_template: "{problem}".into(),
                system_prompt: None,
                seed: 0,
                thinking: None,
            },
            benchmarks: [("math500".to_string(), b)].into_iter().collect(),
        };
        let md = run.to_markdown();
        assert!(md.contains("| math500 | 2 | 1 | 50.0 |"), "{md}");
        assert!(md.contains("pass@1 by subject"));
        let dir = tempfile::tempdir().unwrap();
        run.save(dir.path()).unwrap();
        assert_eq!(RunSummary::load(dir.path()).unwrap(), run);
    }
}
