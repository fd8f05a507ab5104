//! `distill eval sweep`: s1's test-time scaling curve. The same eval runs once per thinking
//! budget (`protocol.max_thinking_tokens` = each budget, everything else from the config), each
//! into its own resumable run directory `OUT/budget-<N>/`, then `OUT/report.json` (a
//! `thinking_budget_curve` entry), `OUT/report.md` and `OUT/thinking_budget.svg` (+ `.png`) give pass@1
//! with its 95% CI per benchmark and budget, next to the thinking tokens actually spent.

use std::collections::BTreeMap;
use std::path::Path;

use datasets::eval_records::{read_eval_record_dir, EvalRecord};
use serde::{Deserialize, Serialize};

use crate::backends::LoadedModel;
use crate::config::EvalConfig;
use crate::runner::{records_dir, summarize_run};
use crate::summary::pct;
use crate::EvalError;

/// File name of the accuracy-vs-budget chart.
pub const CHART_FILE: &str = "thinking_budget.svg";

/// File stem of the chart: `thinking_budget.svg` and `thinking_budget.png`.
const CHART_STEM: &str = "thinking_budget";

/// One benchmark at one budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetPoint {
    /// `protocol.max_thinking_tokens` of the run.
    pub budget: u32,
    /// Mean over problems of the fraction of correct samples.
    #[serde(rename = "pass@1")]
    pub pass_at_1: f64,
    /// Bootstrap 95% CI of pass@1.
    #[serde(rename = "pass@1_ci95")]
    pub pass_at_1_ci95: [f64; 2],
    /// Standard error of pass@1.
    #[serde(rename = "pass@1_se")]
    pub pass_at_1_se: f64,
    /// Problems scored.
    pub n_problems: usize,
    /// Samples scored.
    pub n_samples: usize,
    /// Mean thinking tokens per sample (s1 plots accuracy against this); `None` when the
    /// records carry no budget columns.
    pub mean_thinking_tokens: Option<f64>,
    /// Fraction of samples whose thinking was closed at the budget.
    pub forced_close_rate: Option<f64>,
    /// Mean wait tokens forced per sample (with `protocol.min_thinking_tokens`).
    pub mean_forced_waits: Option<f64>,
    /// Mean completion tokens per sample.
    pub mean_response_tokens: f64,
    /// The budget's run directory.
    pub run_dir: String,
}

/// Accuracy against thinking budget: `report.json`'s `thinking_budget_curve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetCurve {
    /// Model label.
    pub model: String,
    /// Budgets, ascending.
    pub budgets: Vec<u32>,
    /// Per benchmark, one point per budget (ascending).
    pub benchmarks: BTreeMap<String, Vec<BudgetPoint>>,
}

/// `OUT/report.json` of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// The curve.
    pub thinking_budget_curve: BudgetCurve,
    /// Chart files written next to the report.
    pub plots: Vec<String>,
}

/// Parses `512,1024,2048`: positive integers, returned sorted without duplicates.
pub fn parse_budgets(text: &str) -> Result<Vec<u32>, EvalError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(n) if n > 0 => out.push(n),
            _ => {
                return Err(EvalError::Invalid(format!(
                    "--thinking-budgets: `{part}` is not a positive token count (expected e.g. 512,1024,2048)"
                )))
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(EvalError::Invalid(
            "--thinking-budgets is empty (expected e.g. 512,1024,2048)".into(),
        ));
    }
    Ok(out)
}

/// The run config of one budget: `base` with `max_thinking_tokens = budget`, writing into
/// `base.out_dir/budget-<budget>`.
pub fn budget_run_config(base: &EvalConfig, budget: u32) -> Result<EvalConfig, EvalError> {
    let mut cfg = base.clone();
    cfg.out_dir = base.out_dir.join(format!("budget-{budget}"));
    cfg.protocol.max_thinking_tokens = Some(budget);
    cfg.validate_config()
        .map_err(|e| EvalError::Invalid(format!("thinking budget {budget}: {e}")))?;
    Ok(cfg)
}

/// Runs (or resumes) every budget on the loaded model, then writes the report.
pub async fn run_sweep(
    base: &EvalConfig,
    budgets: &[u32],
    model: &LoadedModel,
) -> Result<SweepReport, EvalError> {
    let cfgs = budgets
        .iter()
        .map(|&b| budget_run_config(base, b))
        .collect::<Result<Vec<_>, _>>()?;
    for cfg in &cfgs {
        tracing::info!(budget = cfg.protocol.max_thinking_tokens, out = %cfg.out_dir.display(), "thinking budget run");
        crate::run_eval(cfg, model.backend(cfg)?).await?;
    }
    write_sweep_report(base, budgets)
}

/// Builds the curve from the budget runs' records and writes `report.json`, `report.md` and
/// the chart into `base.out_dir`.
pub fn write_sweep_report(base: &EvalConfig, budgets: &[u32]) -> Result<SweepReport, EvalError> {
    let mut benchmarks: BTreeMap<String, Vec<BudgetPoint>> = BTreeMap::new();
    for &budget in budgets {
        let cfg = budget_run_config(base, budget)?;
        let summary = summarize_run(&cfg)?;
        for (name, b) in &summary.benchmarks {
            let records = read_eval_record_dir(&records_dir(&cfg.out_dir, name))?;
            let (thinking, closes, waits) = budget_means(&records);
            benchmarks
                .entry(name.clone())
                .or_default()
                .push(BudgetPoint {
                    budget,
                    pass_at_1: b.pass_at_1,
                    pass_at_1_ci95: b.pass_at_1_ci95,
                    pass_at_1_se: b.pass_at_1_se,
                    n_problems: b.n_problems,
                    n_samples: b.n_samples,
                    mean_thinking_tokens: thinking,
                    forced_close_rate: closes,
                    mean_forced_waits: waits,
                    mean_response_tokens: b.mean_response_tokens,
                    run_dir: cfg.out_dir.display().to_string(),
                });
        }
    }
    let curve = BudgetCurve {
        model: base.model.display_name(),
        budgets: budgets.to_vec(),
        benchmarks,
    };
    let report = SweepReport {
        thinking_budget_curve: curve,
        plots: vec![CHART_FILE.into(), format!("{CHART_STEM}.png")],
    };
    save_report(&base.out_dir, &report)?;
    Ok(report)
}

fn save_report(out: &Path, report: &SweepReport) -> Result<(), EvalError> {
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| EvalError::serialize("sweep report", e))?;
    let svg = crate::budget_chart::render(&report.thinking_budget_curve)?;
    let png = crate::budget_chart::render_png(&report.thinking_budget_curve)?;
    crate::svg::write_plot(out, CHART_STEM, &svg, &png)?;
    datasets::atomic::write_atomic(&out.join("report.json"), json.as_bytes())?;
    datasets::atomic::write_atomic(&out.join("report.md"), render_markdown(report).as_bytes())?;
    Ok(())
}

/// Means of the budget columns over the latest successful row of each sample.
fn budget_means(records: &[EvalRecord]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let mut latest: BTreeMap<(&str, u32), &EvalRecord> = BTreeMap::new();
    for r in records {
        latest.insert((r.problem_id.as_str(), r.sample_index), r);
    }
    let ok: Vec<&EvalRecord> = latest.into_values().filter(|r| r.error.is_none()).collect();
    let mean = |f: &dyn Fn(&EvalRecord) -> Option<u32>| {
        let v: Vec<f64> = ok.iter().filter_map(|r| f(r)).map(f64::from).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    (
        mean(&|r| r.thinking_tokens),
        mean(&|r| r.forced_closes),
        mean(&|r| r.forced_waits),
    )
}

/// `report.md` of a sweep: one table per benchmark.
pub fn render_markdown(report: &SweepReport) -> String {
    let c = &report.thinking_budget_curve;
    let mut md = format!(
        "# Thinking budget sweep: {}\n\nEach row is one eval run with `protocol.max_thinking_tokens` = budget \
         (s1 budget forcing: at the budget `</think>` is appended and the model answers). pass@1 in %, \
         95% bootstrap CI over problems.\n\n![accuracy vs thinking budget]({CHART_FILE})\n",
        c.model
    );
    let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or_else(|| "–".to_string(), f);
    for (name, points) in &c.benchmarks {
        md.push_str(&format!(
            "\n## {name}\n\n| budget | pass@1 | 95% CI | mean thinking tokens | forced closes | waits / sample | mean tokens | samples |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n"
        ));
        for p in points {
            md.push_str(&format!(
                "| {} | {} | [{}, {}] | {} | {} | {} | {:.0} | {} |\n",
                p.budget,
                pct(p.pass_at_1),
                pct(p.pass_at_1_ci95[0]),
                pct(p.pass_at_1_ci95[1]),
                opt(p.mean_thinking_tokens, &|x| format!("{x:.0}")),
                opt(p.forced_close_rate, &|x| format!("{}%", pct(x))),
                opt(p.mean_forced_waits, &|x| format!("{x:.2}")),
                p.mean_response_tokens,
                p.n_samples
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_sorted_and_reject_junk() {
        assert_eq!(
            parse_budgets("1024, 512,512,2048").unwrap(),
            [512, 1024, 2048]
        );
        assert!(parse_budgets("512,x")
            .unwrap_err()
            .to_string()
            .contains("`x`"));
        assert!(parse_budgets("0").is_err());
        assert!(parse_budgets(" , ").is_err());
    }

    #[test]
    fn budget_runs_get_their_own_dirs_and_budgets() {
        let base = EvalConfig::new(
            "runs/s",
            "ckpt",
            vec![crate::config::BenchmarkConfig::file("t", "t.jsonl", 1)],
        );
        let c = budget_run_config(&base, 512).unwrap();
        assert_eq!(c.out_dir, Path::new("runs/s/budget-512"));
        assert_eq!(c.protocol.max_thinking_tokens, Some(512));
        let mut bad = base.clone();
        bad.protocol.min_thinking_tokens = Some(1000);
        assert!(budget_run_config(&bad, 512)
            .unwrap_err()
            .to_string()
            .contains("thinking budget 512"));
    }

    #[test]
    fn means_use_the_latest_successful_row_per_sample() {
        let mut a = crate::summary::tests::rec("p0", 0, Some("1"), true, 10);
        a.thinking_tokens = Some(100);
        a.forced_closes = Some(0);
        let mut b = a.clone();
        b.thinking_tokens = Some(40);
        b.forced_closes = Some(1);
        let mut c = crate::summary::tests::rec("p1", 0, None, false, 10);
        c.error = Some("HTTP 400".into());
        c.thinking_tokens = Some(7);
        let (t, closes, waits) = budget_means(&[a, b, c]);
        assert_eq!((t, closes, waits), (Some(40.0), Some(1.0), None));
    }
}
