//! Hand-written SVG plots for comparison reports: accuracy with confidence intervals per
//! benchmark, and accuracy against response length. Plain SVG 1.1 with no scripts or external
//! fonts, so the files render the same in browsers, GitHub and notebooks.

use std::fmt::Write;

/// Colours for successive models (colour-blind-safe Okabe–Ito palette).
const PALETTE: &[&str] = &["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

/// Colour of the i-th model.
pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for SVG/XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

/// One bar of the accuracy chart: a value in [0, 1] and its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// pass@1.
    pub value: f64,
    /// 95% interval.
    pub ci: [f64; 2],
}

/// Grouped bar chart: one group per benchmark, one bar per model (None = not evaluated),
/// error bars for the CI, y axis 0–100%.
pub fn accuracy_chart(benchmarks: &[String], models: &[String], bars: &[Vec<Option<Bar>>]) -> String {
    let (left, top, bottom, plot_h) = (60.0, 40.0, 50.0, 280.0);
    let bar_w = 22.0;
    // Groups and the whole chart have minimum widths so that one benchmark with two models
    // still leaves room for the title and the axis labels.
    let group_w = ((models.len().max(1) as f64) * bar_w + 30.0).max(110.0);
    let legend_h = 18.0 * models.len() as f64;
    let width = (left + group_w * benchmarks.len().max(1) as f64 + 20.0).max(360.0);
    let height = top + plot_h + bottom + legend_h;
    let y = |v: f64| top + plot_h * (1.0 - v.clamp(0.0, 1.0));
    let mut s = header(width, height, "pass@1 with 95% bootstrap CI");
    axes_y(&mut s, left, top, plot_h, width - 20.0, "pass@1 (%)");
    for (bi, bench) in benchmarks.iter().enumerate() {
        let gx = left + 15.0 + group_w * bi as f64;
        for (mi, _) in models.iter().enumerate() {
            let Some(b) = bars.get(mi).and_then(|row| row.get(bi)).copied().flatten() else { continue };
            let x = gx + bar_w * mi as f64;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {:.1}% [{:.1}, {:.1}]</title></rect>"#,
                y(b.value),
                bar_w - 4.0,
                y(0.0) - y(b.value),
                color(mi),
                escape(&models[mi]),
                100.0 * b.value,
                100.0 * b.ci[0],
                100.0 * b.ci[1]
            );
            let cx = x + (bar_w - 4.0) / 2.0;
            let _ = write!(
                s,
                r##"<path d="M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}H{:.1}M{:.1} {:.1}H{:.1}" stroke="#222" stroke-width="1.2" fill="none"/>"##,
                y(b.ci[0]),
                y(b.ci[1]),
                cx - 4.0,
                y(b.ci[0]),
                cx + 4.0,
                cx - 4.0,
                y(b.ci[1]),
                cx + 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"#,
            gx + (group_w - 30.0) / 2.0,
            top + plot_h + 18.0,
            escape(bench)
        );
    }
    legend(&mut s, models, left, top + plot_h + 36.0);
    s.push_str("</svg>\n");
    s
}

/// One model's curve on one benchmark panel: (mean tokens, accuracy) points of length bins and
/// the overall (mean tokens, pass@1) marker.
#[derive(Debug, Clone, PartialEq)]
pub struct LengthSeries {
    /// Bin points, ascending in tokens.
    pub points: Vec<(f64, f64)>,
    /// Overall mean response length and pass@1.
    pub overall: (f64, f64),
}

/// One panel per benchmark: accuracy of each length bin (lines) and each model's overall
/// (mean length, pass@1) as a larger dot. x is linear in tokens from 0 to the panel maximum.
pub fn length_chart(benchmarks: &[String], models: &[String], series: &[Vec<Option<LengthSeries>>]) -> String {
    let (panel_w, panel_h, left, top, gap) = (300.0, 220.0, 60.0, 40.0, 50.0);
    let legend_h = 18.0 * models.len() as f64;
    let width = (left + (panel_w + gap) * benchmarks.len().max(1) as f64).max(600.0);
    let height = top + panel_h + 80.0 + legend_h;
    let mut s = header(width, height, "accuracy vs response length (tokens)");
    for (bi, bench) in benchmarks.iter().enumerate() {
        let x0 = left + (panel_w + gap) * bi as f64;
        let data_max = series
            .iter()
            .filter_map(|row| row.get(bi).and_then(|x| x.as_ref()))
            .flat_map(|ls| ls.points.iter().map(|p| p.0).chain(std::iter::once(ls.overall.0)))
            .fold(1.0f64, f64::max);
        let step = nice_step(data_max / 4.0);
        let max_x = (data_max / step).ceil().max(1.0) * step;
        let px = |t: f64| x0 + panel_w * (t / max_x).clamp(0.0, 1.0);
        let py = |a: f64| top + panel_h * (1.0 - a.clamp(0.0, 1.0));
        axes_y(&mut s, x0, top, panel_h, x0 + panel_w, if bi == 0 { "accuracy (%)" } else { "" });
        let ticks = (max_x / step).round() as usize;
        for t in 0..=ticks {
            let v = step * t as f64;
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{:.0}</text>"#,
                px(v),
                top + panel_h + 14.0,
                v
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{} — response tokens</text>"#,
            x0 + panel_w / 2.0,
            top + panel_h + 32.0,
            escape(bench)
        );
        for (mi, row) in series.iter().enumerate() {
            let Some(ls) = row.get(bi).and_then(|x| x.as_ref()) else { continue };
            if !ls.points.is_empty() {
                let d: Vec<String> = ls
                    .points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("{}{:.1} {:.1}", if i == 0 { "M" } else { "L" }, px(p.0), py(p.1)))
                    .collect();
                let _ = write!(
                    s,
                    r#"<path d="{}" stroke="{}" stroke-width="1.5" fill="none"/>"#,
                    d.join(""),
                    color(mi)
                );
                for p in &ls.points {
                    let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#, px(p.0), py(p.1), color(mi));
                }
            }
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="6" fill="{}" stroke="#222"><title>{}: pass@1 {:.1}% at {:.0} tokens</title></circle>"##,
                px(ls.overall.0),
                py(ls.overall.1),
                color(mi),
                escape(&models[mi]),
                100.0 * ls.overall.1,
                ls.overall.0
            );
        }
    }
    legend(&mut s, models, left, top + panel_h + 50.0);
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">lines: accuracy of equal-count response-length bins · large dot: pass@1 at mean length</text>"##,
        left,
        top + panel_h + 50.0 + legend_h + 14.0
    );
    s.push_str("</svg>\n");
    s
}

/// A round tick spacing (1, 2 or 5 × 10^n) at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

fn header(w: f64, h: f64, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="Helvetica, Arial, sans-serif"><rect width="100%" height="100%" fill="#fff"/><text x="{:.1}" y="22" text-anchor="middle" font-size="15">{}</text>"##,
        w / 2.0,
        escape(title)
    )
}

fn axes_y(s: &mut String, x0: f64, top: f64, h: f64, x1: f64, label: &str) {
    for t in 0..=5 {
        let v = t as f64 / 5.0;
        let y = top + h * (1.0 - v);
        let _ = write!(
            s,
            r##"<path d="M{x0:.1} {y:.1}H{x1:.1}" stroke="#ddd" stroke-width="1"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{:.0}</text>"##,
            x0 - 4.0,
            y + 3.0,
            100.0 * v
        );
    }
    let _ = write!(s, r##"<path d="M{x0:.1} {top:.1}V{:.1}" stroke="#222" stroke-width="1"/>"##, top + h);
    if !label.is_empty() {
        let _ = write!(
            s,
            r#"<text transform="translate({:.1} {:.1}) rotate(-90)" text-anchor="middle" font-size="12">{}</text>"#,
            x0 - 40.0,
            top + h / 2.0,
            escape(label)
        );
    }
}

fn legend(s: &mut String, models: &[String], x: f64, y: f64) {
    for (i, m) in models.iter().enumerate() {
        let yy = y + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            yy - 10.0,
            color(i),
            x + 18.0,
            yy,
            escape(m)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn well_formed(svg: &str) {
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Every opened element is closed or self-closed: count tags crudely.
        let opens = svg.matches("<rect").count() + svg.matches("<circle").count();
        let closes = svg.matches("/>").count() + svg.matches("</rect>").count() + svg.matches("</circle>").count();
        assert!(closes >= opens, "{opens} opens, {closes} closes");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn accuracy_chart_has_a_bar_per_evaluated_pair_and_escapes_names() {
        let b = Bar { value: 0.5, ci: [0.4, 0.6] };
        let svg = accuracy_chart(
            &["aime2024".into(), "math500".into()],
            &["teacher <R1>".into(), "student".into()],
            &[vec![Some(b), Some(b)], vec![Some(b), None]],
        );
        well_formed(&svg);
        assert_eq!(svg.matches("<rect x=").count() - 2, 3, "3 bars + 2 legend swatches");
        assert!(svg.contains("teacher &lt;R1&gt;"));
        assert!(!svg.contains("<R1>"));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(nice_step(6772.0), 10000.0);
        assert_eq!(nice_step(1800.0), 2000.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn length_chart_draws_lines_and_markers() {
        let ls = LengthSeries { points: vec![(10.0, 1.0), (50.0, 0.5), (90.0, 0.0)], overall: (50.0, 0.5) };
        let svg = length_chart(&["x".into()], &["m".into()], &[vec![Some(ls)]]);
        well_formed(&svg);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("<path d=\"M"));
    }
}
