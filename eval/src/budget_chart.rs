//! The accuracy-vs-thinking-budget chart of `eval sweep` (s1's test-time scaling plot): pass@1
//! with its 95% CI against the budget on a log₂ axis, one line per benchmark. Drawn with
//! `plotters` like every other report chart ([`crate::svg`]), as SVG and PNG.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::svg::{self, DrawResult, FAMILY};
use crate::sweep::BudgetCurve;
use crate::EvalError;

/// Pixel size of the chart (both formats).
pub const SIZE: (u32, u32) = (640, 400);

/// Renders the curve as an SVG document.
pub fn render(curve: &BudgetCurve) -> Result<String, EvalError> {
    svg::to_svg("thinking-budget chart", SIZE, |a| draw(a, curve))
}

/// [`render`] as PNG.
pub fn render_png(curve: &BudgetCurve) -> Result<Vec<u8>, EvalError> {
    svg::to_png("thinking-budget chart", SIZE, |a| draw(a, curve))
}

/// The x range on the log axis: the budgets with a quarter octave of room either side
/// (a single budget gets one octave each way so it sits in the middle).
fn x_range(budgets: &[u32]) -> (f64, f64) {
    let lo = budgets.iter().copied().min().unwrap_or(1).max(1) as f64;
    let hi = budgets.iter().copied().max().unwrap_or(1).max(1) as f64;
    if hi > lo {
        (lo / 2f64.powf(0.25), hi * 2f64.powf(0.25))
    } else {
        (lo / 2.0, lo * 2.0)
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curve: &BudgetCurve) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (x0, x1) = x_range(&curve.budgets);
    let mut chart = ChartBuilder::on(root)
        .caption(format!("pass@1 vs thinking budget — {}", curve.model), (FAMILY, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((x0..x1).log_scale().base(2.0), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("max thinking tokens (log₂)")
        .y_desc("pass@1")
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .y_label_formatter(&|y: &f64| format!("{:.0}%", y * 100.0))
        .draw()?;
    for (i, (name, points)) in curve.benchmarks.iter().enumerate() {
        let col = svg::rgb(i);
        let mut pts: Vec<(f64, f64)> = points.iter().map(|p| (f64::from(p.budget.max(1)), p.pass_at_1)).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        svg::draw_curve(&mut chart, i, name, &pts, 4)?;
        // 95% CI whiskers.
        chart.draw_series(points.iter().map(|p| {
            let x = f64::from(p.budget.max(1));
            let [lo, hi] = p.pass_at_1_ci95.map(|v| v.clamp(0.0, 1.0));
            PathElement::new(vec![(x, lo), (x, hi)], col.stroke_width(1))
        }))?;
    }
    svg::draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::BudgetPoint;

    fn point(budget: u32, acc: f64) -> BudgetPoint {
        BudgetPoint {
            budget,
            pass_at_1: acc,
            pass_at_1_ci95: [acc - 0.1, acc + 0.1],
            pass_at_1_se: 0.05,
            n_problems: 10,
            n_samples: 10,
            mean_thinking_tokens: Some(f64::from(budget) * 0.9),
            forced_close_rate: Some(0.5),
            mean_forced_waits: None,
            mean_response_tokens: 100.0,
            run_dir: "x".into(),
        }
    }

    fn curve() -> BudgetCurve {
        BudgetCurve {
            model: "m<1>".into(),
            budgets: vec![512, 1024, 4096],
            benchmarks: [("aime".to_string(), vec![point(512, 0.2), point(1024, 0.4), point(4096, 0.5)])].into_iter().collect(),
        }
    }

    #[test]
    fn one_line_per_benchmark_with_points_on_a_log2_axis() {
        let svg = render(&curve()).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("m&lt;1&gt;"), "labels are escaped");
        assert!(svg.contains("aime"), "legend names the benchmark");
        let stroke = format!("stroke=\"{}\"", svg::color(0)).to_uppercase();
        assert!(svg.to_uppercase().matches(&stroke).count() > 4, "the curve, three whiskers and the legend swatch (5 strokes)");
        // The points are the filled circles of radius 4 (the mesh draws none).
        let xs: Vec<f64> = svg
            .split("<circle cx=\"")
            .skip(1)
            .filter(|t| t.contains("r=\"4\""))
            .map(|t| t.split('"').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), 3, "{svg}");
        // log2 axis: 512 → 1024 is one third of the way from 512 to 4096 (pixel rounding).
        assert!(((xs[1] - xs[0]) / (xs[2] - xs[0]) - 1.0 / 3.0).abs() < 0.02, "{xs:?}");
        assert!(xs[0] < xs[1] && xs[1] < xs[2]);
    }

    #[test]
    fn png_has_the_chart_size_and_a_single_budget_draws() {
        let png = render_png(&curve()).unwrap();
        assert_eq!(crate::png::dimensions(&png), Some(SIZE));
        let one = BudgetCurve { model: "m".into(), budgets: vec![256], benchmarks: [("b".to_string(), vec![point(256, 1.0)])].into_iter().collect() };
        let svg = render(&one).unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_eq!(x_range(&[256]), (128.0, 512.0));
    }
}
