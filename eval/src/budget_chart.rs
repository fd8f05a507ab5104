//! The accuracy-vs-thinking-budget chart of `eval sweep` (s1's test-time scaling plot): pass@1
//! with its 95% CI against the budget on a log₂ axis, one line per benchmark.
//!
//! Written as plain SVG: the `plotters` crate is not in this environment's package lists, so it
//! cannot be a dependency here; the chart is kept to lines, circles, whiskers and text, which
//! every viewer renders.

use std::fmt::Write;

use crate::sweep::BudgetCurve;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the curve as an SVG document.
pub fn render(curve: &BudgetCurve) -> String {
    let (lo, hi) = curve
        .budgets
        .iter()
        .map(|&b| f64::from(b.max(1)).log2())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(x), h.max(x))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x_of = |b: u32| {
        if hi > lo {
            LEFT + (f64::from(b.max(1)).log2() - lo) / span * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let y_of = |acc: f64| TOP + (1.0 - acc.clamp(0.0, 1.0)) * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">pass@1 vs thinking budget — {}</text>"#,
        LEFT + plot_w / 2.0,
        esc(&curve.model)
    );
    // Horizontal grid and y labels every 20%.
    for i in 0..=5 {
        let acc = f64::from(i) * 0.2;
        let y = y_of(acc);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            acc * 100.0
        );
    }
    // One x tick per budget.
    for &b in &curve.budgets {
        let x = x_of(b);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{b}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 5.0,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">thinking budget (tokens, log scale)</text>"##,
        LEFT + plot_w / 2.0,
        H - 12.0
    );
    for (i, (name, points)) in curve.benchmarks.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x_of(p.budget), y_of(p.pass_at_1)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for p in points {
            let (x, y) = (x_of(p.budget), y_of(p.pass_at_1));
            let (y_lo, y_hi) = (y_of(p.pass_at_1_ci95[0]), y_of(p.pass_at_1_ci95[1]));
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{y_lo:.1}" x2="{x:.1}" y2="{y_hi:.1}" stroke="{color}"/><circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{color}"><title>{} @ {}: {:.1}% [{:.1}, {:.1}]</title></circle>"#,
                esc(name),
                p.budget,
                p.pass_at_1 * 100.0,
                p.pass_at_1_ci95[0] * 100.0,
                p.pass_at_1_ci95[1] * 100.0
            );
        }
        let ly = TOP + 10.0 + 18.0 * i as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
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

    #[test]
    fn one_line_per_benchmark_with_points_ordered_by_budget() {
        let curve = BudgetCurve {
            model: "m<1>".into(),
            budgets: vec![512, 1024, 4096],
            benchmarks: [(
                "aime".to_string(),
                vec![point(512, 0.2), point(1024, 0.4), point(4096, 0.5)],
            )]
            .into_iter()
            .collect(),
        };
        let svg = render(&curve);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("m&lt;1&gt;"), "labels are escaped");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        // log2 axis: 512 → 1024 is one third of the way from 512 to 4096.
        let xs: Vec<f64> = svg
            .split("<circle cx=\"")
            .skip(1)
            .map(|t| t.split('"').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            ((xs[1] - xs[0]) / (xs[2] - xs[0]) - 1.0 / 3.0).abs() < 2e-3,
            "{xs:?}"
        );
        assert!(xs[0] < xs[1] && xs[1] < xs[2]);
    }
}
