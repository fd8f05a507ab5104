//! The quickstart's additions to the comparison report: each model's training `stage`
//! (`sft` / `grpo`; the teacher's entry has no stage) in `report.json`, and the GRPO run's
//! reward and held-out pass@1 over steps as a plot (SVG + PNG) with a section in `report.md`.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use eval::compare::CompareReport;
use eval::svg::{line_chart, line_chart_png, write_plot, Curve};
use student::grpo::GrpoStepMetrics;

/// File stem of the reward plot.
const REWARD_PLOT: &str = "grpo_reward";

/// Sets `stage` on the models named in `stages`, draws the reward plot from
/// `grpo_dir/metrics.jsonl`, and rewrites `report.json` and `report.md` in `out` (atomically).
pub fn add_grpo(out: &Path, grpo_dir: &Path, report: &mut CompareReport, stages: &[(&str, &str)]) -> anyhow::Result<()> {
    for m in &mut report.models {
        if let Some((_, stage)) = stages.iter().find(|(name, _)| *name == m.name) {
            m.stage = Some(stage.to_string());
        }
    }
    let steps = student::grpo::read_grpo_metrics(grpo_dir).with_context(|| format!("reading the GRPO metrics in {}", grpo_dir.display()))?;
    let curves = reward_curves(&steps);
    let title = "GRPO: reward and held-out pass@1 over steps";
    let svg = line_chart(title, "optimizer step", "reward / pass@1", &curves)?;
    let png = line_chart_png(title, "optimizer step", "reward / pass@1", &curves)?;
    for name in write_plot(out, REWARD_PLOT, &svg, &png)? {
        if !report.plots.contains(&name) {
            report.plots.push(name);
        }
    }
    let json = serde_json::to_string_pretty(report)?;
    datasets::atomic::write_atomic(&out.join("report.json"), json.as_bytes())?;
    let md_path = out.join("report.md");
    let mut md = std::fs::read_to_string(&md_path).with_context(|| format!("reading {}", md_path.display()))?;
    md.push_str(&markdown_section(report, &steps));
    datasets::atomic::write_atomic(&md_path, md.as_bytes())?;
    Ok(())
}

/// Mean reward per step, its 10-step moving average, and held-out pass@1 where evaluated.
fn reward_curves(steps: &[GrpoStepMetrics]) -> Vec<Curve> {
    let reward: Vec<(f64, f64)> = steps.iter().map(|m| (m.step as f64, m.reward_mean)).collect();
    let smooth: Vec<(f64, f64)> = reward
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            let w = &reward[i.saturating_sub(9)..=i];
            (x, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64)
        })
        .collect();
    let eval: Vec<(f64, f64)> = steps.iter().filter_map(|m| m.eval_pass1.map(|p| (m.step as f64, p))).collect();
    let mut curves = vec![
        Curve { name: "batch reward (mean)".into(), points: reward },
        Curve { name: "reward, 10-step average".into(), points: smooth },
    ];
    if !eval.is_empty() {
        curves.push(Curve { name: "held-out pass@1".into(), points: eval });
    }
    curves
}

/// The `## GRPO` section of `report.md`: stages, first/last rewards, the plot.
fn markdown_section(report: &CompareReport, steps: &[GrpoStepMetrics]) -> String {
    let mut s = String::from("\n## Training stages and GRPO\n\n| model | role | stage |\n|---|---|---|\n");
    for m in &report.models {
        let _ = writeln!(s, "| {} | {} | {} |", m.name, m.role.as_str(), m.stage.as_deref().unwrap_or("–"));
    }
    if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
        let evals: Vec<String> = steps.iter().filter_map(|m| m.eval_pass1.map(|p| format!("{}: {:.3}", m.step, p))).collect();
        let _ = writeln!(
            s,
            "\nGRPO ran {} steps: batch reward {:.3} at step {} → {:.3} at step {}; {} resampled groups (dynamic sampling). \
             Held-out pass@1 during training (step: pass@1): {}.",
            last.step,
            first.reward_mean,
            first.step,
            last.reward_mean,
            last.step,
            steps.iter().map(|m| m.resampled_groups).sum::<u64>(),
            if evals.is_empty() { "not measured".to_string() } else { evals.join(", ") }
        );
    }
    let _ = writeln!(s, "\n![GRPO reward over steps]({REWARD_PLOT}.svg)");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, reward: f64, eval: Option<f64>) -> GrpoStepMetrics {
        let line = serde_json::json!({
            "step": step, "loss": 0.0, "grad_norm": 0.0, "lr": 0.0, "reward_mean": reward, "reward_std": 0.0,
            "zero_std_share": 0.0, "clip_low": 0.0, "clip_high": 0.0, "clip_region": 0.0, "kl": 0.0, "entropy": 0.0,
            "completion_length_mean": 0.0, "completion_length_max": 0, "truncated_share": 0.0, "loss_tokens": 0,
            "iteration": 0, "generate_s": 0.0, "score_s": 0.0, "train_s": 0.0, "eval_pass1": eval
        });
        serde_json::from_value(line).unwrap()
    }

    #[test]
    fn reward_curves_average_and_keep_eval_points() {
        let steps: Vec<_> = (1..=12).map(|s| step(s, if s % 2 == 0 { 1.0 } else { 0.0 }, (s % 6 == 0).then_some(0.5))).collect();
        let c = reward_curves(&steps);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].points.len(), 12);
        assert_eq!(c[1].points[1], (2.0, 0.5));
        assert_eq!(c[1].points[11], (12.0, 0.5), "10-step window");
        assert_eq!(c[2].points, vec![(6.0, 0.5), (12.0, 0.5)]);
    }
}
