//! `eval compare`: several run directories side by side — a Markdown table (models as rows,
//! benchmarks × metrics as columns, deltas against the teacher), per-problem agreement with the
//! teacher, SVG plots, and `report.json` in the shape the quickstart and scripts read:
//! `{"models": [{"name", "role", "checkpoint", "benchmarks": {"<name>": {"pass@1",
//! "pass@1_ci95", "cons@k", "k", "n_problems", "mean_response_tokens"}}}], …}`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::summary::{pct, BenchmarkSummary, Role, RunSummary};
use crate::svg;
use crate::EvalError;

/// Options of a comparison.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompareOptions {
    /// Directory receiving `report.md`, `report.json` and the SVG plots.
    pub out_dir: PathBuf,
    /// Model name to use as the reference; default: the first run whose role is `teacher`.
    pub teacher: Option<String>,
}

/// A model's headline numbers on one benchmark, as written to `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBenchmark {
    /// Mean over problems of the fraction of correct samples.
    #[serde(rename = "pass@1")]
    pub pass_at_1: f64,
    /// Bootstrap 95% CI of pass@1.
    #[serde(rename = "pass@1_ci95")]
    pub pass_at_1_ci95: [f64; 2],
    /// Standard error of pass@1.
    #[serde(rename = "pass@1_se")]
    pub pass_at_1_se: f64,
    /// Majority-vote accuracy.
    #[serde(rename = "cons@k")]
    pub cons_at_k: f64,
    /// Samples per problem.
    pub k: usize,
    /// Problems scored.
    pub n_problems: usize,
    /// Mean response tokens.
    pub mean_response_tokens: f64,
    /// Fraction of responses cut at the token budget.
    pub truncation_rate: f64,
}

impl From<&BenchmarkSummary> for ReportBenchmark {
    fn from(b: &BenchmarkSummary) -> Self {
        Self {
            pass_at_1: b.pass_at_1,
            pass_at_1_ci95: b.pass_at_1_ci95,
            pass_at_1_se: b.pass_at_1_se,
            cons_at_k: b.cons_at_k,
            k: b.k,
            n_problems: b.n_problems,
            mean_response_tokens: b.mean_response_tokens,
            truncation_rate: b.truncation_rate,
        }
    }
}

/// One model in `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportModel {
    /// Label (made unique across runs).
    pub name: String,
    /// `teacher` or `student`.
    pub role: Role,
    /// Training stage that produced the model, when the caller knows it (the quickstart:
    /// `sft` / `grpo` for students; the teacher has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Checkpoint directory or served model name.
    pub checkpoint: Option<String>,
    /// Run directory the numbers come from.
    pub run_dir: String,
    /// Benchmark → numbers.
    pub benchmarks: BTreeMap<String, ReportBenchmark>,
}

/// Per-problem agreement of one model with the teacher on one benchmark. A problem counts as
/// solved by a model when at least half of its samples are correct (pass@1 ≥ 0.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// The compared model.
    pub model: String,
    /// Benchmark.
    pub benchmark: String,
    /// Solved by the teacher only.
    pub teacher_only: usize,
    /// Solved by the model only.
    pub student_only: usize,
    /// Solved by both.
    pub both: usize,
    /// Solved by neither.
    pub neither: usize,
    /// Ids solved by the teacher only (what distillation lost).
    pub teacher_only_ids: Vec<String>,
    /// Ids solved by the model only.
    pub student_only_ids: Vec<String>,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Every model, in the order given.
    pub models: Vec<ReportModel>,
    /// Name of the reference model, if any.
    pub teacher: Option<String>,
    /// model → benchmark → metric → (model − teacher), for non-teacher models.
    pub deltas: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// Per-problem agreement of every other model with the teacher.
    pub agreement: Vec<Agreement>,
    /// Notes such as protocol mismatches between runs.
    pub warnings: Vec<String>,
    /// Plot files written next to the report.
    pub plots: Vec<String>,
}

/// Loads the runs' `summary.json`, writes `report.md`, `report.json`, `accuracy.svg` and
/// `accuracy_vs_length.svg` (each with a `.png` beside it) into `opts.out_dir`, and returns the
/// report.
pub fn compare_runs(run_dirs: &[PathBuf], opts: &CompareOptions) -> Result<CompareReport, EvalError> {
    if run_dirs.is_empty() {
        return Err(EvalError::Invalid("eval compare: give at least one run directory".into()));
    }
    let mut runs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for dir in run_dirs {
        let mut s = RunSummary::load(dir)?;
        let count = seen.entry(s.model.name.clone()).or_default();
        *count += 1;
        if *count > 1 {
            s.model.name = format!("{} ({})", s.model.name, dir.display());
        }
        runs.push((dir.clone(), s));
    }
    let report = build_report(&runs, opts.teacher.as_deref())?;
    let out = &opts.out_dir;
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    write_plots(&runs, out)?;
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| EvalError::serialize("report", e))?;
    datasets::atomic::write_atomic(&out.join("report.json"), json.as_bytes())?;
    datasets::atomic::write_atomic(&out.join("report.md"), render_markdown(&runs, &report).as_bytes())?;
    Ok(report)
}

fn benchmark_names(runs: &[(PathBuf, RunSummary)]) -> Vec<String> {
    let set: BTreeSet<&String> = runs.iter().flat_map(|(_, r)| r.benchmarks.keys()).collect();
    set.into_iter().cloned().collect()
}

fn solved(p: &crate::summary::ProblemStat) -> bool {
    p.n > 0 && 2 * p.correct >= p.n
}

/// Builds the report from loaded summaries (no files touched).
pub fn build_report(runs: &[(PathBuf, RunSummary)], teacher: Option<&str>) -> Result<CompareReport, EvalError> {
    let teacher_idx = match teacher {
        Some(name) => Some(runs.iter().position(|(_, r)| r.model.name == name).ok_or_else(|| {
            EvalError::Invalid(format!("eval compare: no run is named `{name}` (--teacher)"))
        })?),
        None => runs.iter().position(|(_, r)| r.model.role == Role::Teacher),
    };
    let models: Vec<ReportModel> = runs
        .iter()
        .enumerate()
        .map(|(i, (dir, r))| ReportModel {
            name: r.model.name.clone(),
            role: if Some(i) == teacher_idx { Role::Teacher } else if teacher_idx.is_some() { Role::Student } else { r.model.role },
            stage: None,
            checkpoint: r.model.checkpoint.clone(),
            run_dir: dir.display().to_string(),
            benchmarks: r.benchmarks.iter().map(|(k, b)| (k.clone(), b.into())).collect(),
        })
        .collect();

    let mut warnings = Vec::new();
    if let Some((_, first)) = runs.first() {
        for (dir, r) in &runs[1..] {
            if r.protocol != first.protocol {
                warnings.push(format!(
                    "{} used a different protocol than {} (T={} top-p={} max={} vs T={} top-p={} max={}); deltas mix protocols",
                    dir.display(),
                    runs[0].0.display(),
                    r.protocol.temperature,
                    r.protocol.top_p,
                    r.protocol.max_tokens,
                    first.protocol.temperature,
                    first.protocol.top_p,
                    first.protocol.max_tokens
                ));
            }
        }
    }

    let mut deltas = BTreeMap::new();
    let mut agreement = Vec::new();
    if let Some(t) = teacher_idx {
        let tr = &runs[t].1;
        for (i, (_, r)) in runs.iter().enumerate() {
            if i == t {
                continue;
            }
            let mut per_bench = BTreeMap::new();
            for (name, b) in &r.benchmarks {
                let Some(tb) = tr.benchmarks.get(name) else { continue };
                let d: BTreeMap<String, f64> = [
                    ("pass@1".to_string(), b.pass_at_1 - tb.pass_at_1),
                    ("cons@k".to_string(), b.cons_at_k - tb.cons_at_k),
                    ("mean_response_tokens".to_string(), b.mean_response_tokens - tb.mean_response_tokens),
                ]
                .into_iter()
                .collect();
                per_bench.insert(name.clone(), d);
                let teacher_solved: HashMap<&str, bool> =
                    tb.problems.iter().map(|p| (p.id.as_str(), solved(p))).collect();
                let mut a = Agreement {
                    model: r.model.name.clone(),
                    benchmark: name.clone(),
                    teacher_only: 0,
                    student_only: 0,
                    both: 0,
                    neither: 0,
                    teacher_only_ids: Vec::new(),
                    student_only_ids: Vec::new(),
                };
                for p in &b.problems {
                    let Some(&ts) = teacher_solved.get(p.id.as_str()) else { continue };
                    match (ts, solved(p)) {
                        (true, true) => a.both += 1,
                        (false, false) => a.neither += 1,
                        (true, false) => {
                            a.teacher_only += 1;
                            a.teacher_only_ids.push(p.id.clone());
                        }
                        (false, true) => {
                            a.student_only += 1;
                            a.student_only_ids.push(p.id.clone());
                        }
                    }
                }
                agreement.push(a);
            }
            deltas.insert(r.model.name.clone(), per_bench);
        }
    }
    Ok(CompareReport {
        teacher: teacher_idx.map(|t| runs[t].1.model.name.clone()),
        models,
        deltas,
        agreement,
        warnings,
        plots: ["accuracy.svg", "accuracy.png", "accuracy_vs_length.svg", "accuracy_vs_length.png"].map(String::from).to_vec(),
    })
}

fn signed_pct(d: f64) -> String {
    let v = 100.0 * d;
    if v.abs() < 0.05 {
        "±0.0".into()
    } else if v > 0.0 {
        format!("+{v:.1}")
    } else {
        format!("−{:.1}", -v)
    }
}

/// Renders `report.md`.
pub fn render_markdown(runs: &[(PathBuf, RunSummary)], report: &CompareReport) -> String {
    let benches = benchmark_names(runs);
    let mut s = String::from("# Evaluation comparison\n\n");
    if let Some(t) = &report.teacher {
        let _ = writeln!(s, "Reference (teacher): **{t}**. Deltas are percentage points against it.\n");
    }
    if let Some((_, r)) = runs.first() {
        let p = &r.protocol;
        let _ = writeln!(
            s,
            "Protocol: temperature {} · top-p {} · max {} new tokens · pass@1 averaged over k samples per problem; \
             CI = 95% percentile bootstrap over problems; cons@k = majority vote over equivalent answers.\n",
            p.temperature, p.top_p, p.max_tokens
        );
    }
    for w in &report.warnings {
        let _ = writeln!(s, "> **Warning:** {w}\n");
    }
    // Main table.
    let mut head = String::from("| model | role |");
    let mut rule = String::from("|---|---|");
    for b in &benches {
        let k = runs.iter().find_map(|(_, r)| r.benchmarks.get(b).map(|x| x.k)).unwrap_or(0);
        let _ = write!(head, " {b} pass@1 [95% CI] | {b} cons@{k} | {b} tokens |");
        rule.push_str("---:|---:|---:|");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for (m, (_, r)) in report.models.iter().zip(runs) {
        let _ = write!(s, "| {} | {} |", m.name, m.role.as_str());
        for b in &benches {
            match r.benchmarks.get(b) {
                None => s.push_str(" – | – | – |"),
                Some(x) => {
                    let d = report.deltas.get(&m.name).and_then(|d| d.get(b));
                    let dp = d.and_then(|d| d.get("pass@1")).map(|v| format!(" ({})", signed_pct(*v))).unwrap_or_default();
                    let dc = d.and_then(|d| d.get("cons@k")).map(|v| format!(" ({})", signed_pct(*v))).unwrap_or_default();
                    let _ = write!(
                        s,
                        " {}{dp} [{}, {}] | {}{dc} | {:.0} |",
                        pct(x.pass_at_1),
                        pct(x.pass_at_1_ci95[0]),
                        pct(x.pass_at_1_ci95[1]),
                        pct(x.cons_at_k),
                        x.mean_response_tokens
                    );
                }
            }
        }
        s.push('\n');
    }
    if !report.agreement.is_empty() {
        let _ = writeln!(
            s,
            "\n## Per-problem agreement with the teacher\n\nA problem is solved when at least half of a model's samples are correct.\n"
        );
        let _ = writeln!(s, "| model | benchmark | teacher only | model only | both | neither |\n|---|---|---:|---:|---:|---:|");
        for a in &report.agreement {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                a.model, a.benchmark, a.teacher_only, a.student_only, a.both, a.neither
            );
        }
        for a in report.agreement.iter().filter(|a| !a.teacher_only_ids.is_empty()) {
            let shown: Vec<&str> = a.teacher_only_ids.iter().take(20).map(String::as_str).collect();
            let more = a.teacher_only_ids.len().saturating_sub(shown.len());
            let _ = writeln!(
                s,
                "\n{} on {} misses what the teacher solves: {}{}",
                a.model,
                a.benchmark,
                shown.join(", "),
                if more > 0 { format!(" … and {more} more") } else { String::new() }
            );
        }
    }
    let _ = writeln!(s, "\n![pass@1 with 95% CI](accuracy.svg)\n\n![accuracy vs response length](accuracy_vs_length.svg)");
    s
}

/// Draws the accuracy and accuracy-vs-length charts into `out` as SVG and PNG.
fn write_plots(runs: &[(PathBuf, RunSummary)], out: &Path) -> Result<(), EvalError> {
    let benches = benchmark_names(runs);
    let models: Vec<String> = runs.iter().map(|(_, r)| r.model.name.clone()).collect();
    let bars: Vec<Vec<Option<svg::Bar>>> = runs
        .iter()
        .map(|(_, r)| {
            benches
                .iter()
                .map(|b| r.benchmarks.get(b).map(|x| svg::Bar { value: x.pass_at_1, ci: x.pass_at_1_ci95 }))
                .collect()
        })
        .collect();
    let series: Vec<Vec<Option<svg::LengthSeries>>> = runs
        .iter()
        .map(|(_, r)| {
            benches
                .iter()
                .map(|b| {
                    r.benchmarks.get(b).map(|x| svg::LengthSeries {
                        points: x.accuracy_by_length.iter().map(|l| (l.mean_tokens, l.accuracy)).collect(),
                        overall: (x.mean_response_tokens, x.pass_at_1),
                    })
                })
                .collect()
        })
        .collect();
    let acc = (svg::accuracy_chart(&benches, &models, &bars)?, svg::accuracy_chart_png(&benches, &models, &bars)?);
    svg::write_plot(out, "accuracy", &acc.0, &acc.1)?;
    let len = (svg::length_chart(&benches, &models, &series)?, svg::length_chart_png(&benches, &models, &series)?);
    svg::write_plot(out, "accuracy_vs_length", &len.0, &len.1)?;
    Ok(())
}

/// Convenience for callers holding paths as `&Path`.
pub fn compare_paths(run_dirs: &[&Path], opts: &CompareOptions) -> Result<CompareReport, EvalError> {
    let v: Vec<PathBuf> = run_dirs.iter().map(|p| p.to_path_buf()).collect();
    compare_runs(&v, opts)
}
