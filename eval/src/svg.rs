//! Charts for comparison reports, drawn with `plotters`: accuracy with confidence intervals per
//! benchmark, accuracy against response length, and line charts (GRPO reward over steps).
//! Each chart is drawn once per backend: SVG (text as `<text>` elements, no scripts) and PNG
//! (rasterised in memory, text set in the bundled DejaVu Sans so no system font is looked up).

use std::error::Error;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::EvalError;

/// DejaVu Sans (Bitstream Vera licence, see assets/DejaVuSans.LICENSE): text layout for both
/// backends and glyphs for PNG.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Family every chart's text uses (registered with [`FONT`]).
pub(crate) const FAMILY: &str = "sans-serif";

/// Colours for successive models (colour-blind-safe Okabe–Ito palette).
const PALETTE: &[&str] = &["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

pub(crate) type DrawResult = Result<(), Box<dyn Error + Send + Sync>>;

/// Colour of the i-th model (`#rrggbb`).
pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub(crate) fn rgb(i: usize) -> RGBColor {
    let h = color(i).trim_start_matches('#');
    let c = |k: usize| u8::from_str_radix(&h[k..k + 2], 16).unwrap_or(0);
    RGBColor(c(0), c(2), c(4))
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

/// Registers the bundled font for every style once (plotters looks fonts up by family+style).
fn fonts() -> Result<(), EvalError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique]
            .into_iter()
            .all(|s| plotters::style::register_font(FAMILY, s, FONT).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(EvalError::Invalid("the bundled chart font does not parse".into()))
    }
}

/// Draws a chart into an SVG string.
pub(crate) fn to_svg(what: &'static str, size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult) -> Result<String, EvalError> {
    fonts()?;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        draw(&root).and_then(|_| root.present().map_err(Into::into)).map_err(|source| EvalError::Serialize { what, source })?;
    }
    Ok(s)
}

/// Draws a chart into PNG bytes (RGB, 8 bit).
pub(crate) fn to_png(what: &'static str, size: (u32, u32), draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult) -> Result<Vec<u8>, EvalError> {
    fonts()?;
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(&root).and_then(|_| root.present().map_err(Into::into)).map_err(|source| EvalError::Serialize { what, source })?;
    }
    crate::png::encode_rgb(&buf, size.0, size.1).map_err(|e| EvalError::Serialize { what, source: Box::new(e) })
}

/// Writes `<stem>.svg` and `<stem>.png` into `dir` (each atomically) and returns their names.
pub fn write_plot(dir: &Path, stem: &str, svg: &str, png: &[u8]) -> Result<Vec<String>, EvalError> {
    let names = vec![format!("{stem}.svg"), format!("{stem}.png")];
    datasets::atomic::write_atomic(&dir.join(&names[0]), svg.as_bytes())?;
    datasets::atomic::write_atomic(&dir.join(&names[1]), png)?;
    Ok(names)
}

/// One bar of the accuracy chart: a value in [0, 1] and its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// pass@1.
    pub value: f64,
    /// 95% interval.
    pub ci: [f64; 2],
}

fn accuracy_size(benchmarks: &[String], models: &[String]) -> (u32, u32) {
    let group_w = (models.len().max(1) as u32 * 26 + 40).max(120);
    ((90 + group_w * benchmarks.len().max(1) as u32).max(420), 380 + 18 * models.len() as u32)
}

/// Grouped bar chart: one group per benchmark, one bar per model (None = not evaluated),
/// error bars for the CI, y axis 0–100%.
pub fn accuracy_chart(benchmarks: &[String], models: &[String], bars: &[Vec<Option<Bar>>]) -> Result<String, EvalError> {
    to_svg("accuracy chart", accuracy_size(benchmarks, models), |a| draw_accuracy(a, benchmarks, models, bars))
}

/// [`accuracy_chart`] as PNG.
pub fn accuracy_chart_png(benchmarks: &[String], models: &[String], bars: &[Vec<Option<Bar>>]) -> Result<Vec<u8>, EvalError> {
    to_png("accuracy chart", accuracy_size(benchmarks, models), |a| draw_accuracy(a, benchmarks, models, bars))
}

fn draw_accuracy<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, benchmarks: &[String], models: &[String], bars: &[Vec<Option<Bar>>]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let nb = benchmarks.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption("pass@1 with 95% bootstrap CI", (FAMILY, 17))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..nb, 0f64..1f64)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_desc("pass@1 (%)")
        .y_label_formatter(&|v| format!("{:.0}", 100.0 * v))
        .draw()?;
    let slot = 0.8 / models.len().max(1) as f64;
    for (mi, name) in models.iter().enumerate() {
        let c = rgb(mi);
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        for bi in 0..benchmarks.len() {
            let Some(b) = bars.get(mi).and_then(|row| row.get(bi)).copied().flatten() else { continue };
            let x0 = bi as f64 + 0.1 + slot * mi as f64;
            let (x1, cx, w) = (x0 + slot * 0.85, x0 + slot * 0.425, slot * 0.15);
            rects.push(Rectangle::new([(x0, 0.0), (x1, b.value.clamp(0.0, 1.0))], c.filled()));
            let (lo, hi) = (b.ci[0].clamp(0.0, 1.0), b.ci[1].clamp(0.0, 1.0));
            for seg in [vec![(cx, lo), (cx, hi)], vec![(cx - w, lo), (cx + w, lo)], vec![(cx - w, hi), (cx + w, hi)]] {
                whiskers.push(PathElement::new(seg, BLACK.stroke_width(1)));
            }
        }
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        chart.draw_series(whiskers)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    // Benchmark names under their groups, in pixel coordinates of the whole chart.
    let style = TextStyle::from((FAMILY, 13).into_font()).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Top,
    ));
    for (bi, bench) in benchmarks.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(bi as f64 + 0.5, 0.0));
        root.draw(&Text::new(bench.clone(), (px, py + 8), style.clone()))?;
    }
    Ok(())
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

/// A monotone x axis that spreads the pooled token values evenly: piecewise linear through
/// their sorted distinct values, so bins that cluster in a narrow length range (short
/// synthetic answers) are still told apart, and a long tail does not squeeze the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileAxis {
    knots: Vec<f64>,
}

impl QuantileAxis {
    /// The axis through `values` (non-finite ones ignored).
    pub fn new(values: impl IntoIterator<Item = f64>) -> Self {
        let mut knots: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        knots.sort_by(f64::total_cmp);
        knots.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        Self { knots }
    }

    /// Position in [0, 1] of `tokens`.
    pub fn pos(&self, tokens: f64) -> f64 {
        let k = &self.knots;
        match k.len() {
            0 => 0.5,
            1 => 0.5,
            n => {
                let i = k.partition_point(|&v| v <= tokens).clamp(1, n - 1);
                let frac = ((tokens - k[i - 1]) / (k[i] - k[i - 1])).clamp(0.0, 1.0);
                ((i - 1) as f64 + frac) / (n - 1) as f64
            }
        }
    }

    /// Tokens at position `p` (the inverse of [`QuantileAxis::pos`]).
    pub fn tokens(&self, p: f64) -> f64 {
        let k = &self.knots;
        match k.len() {
            0 => 0.0,
            1 => k[0],
            n => {
                let x = p.clamp(0.0, 1.0) * (n - 1) as f64;
                let i = (x.floor() as usize).min(n - 2);
                k[i] + (x - i as f64) * (k[i + 1] - k[i])
            }
        }
    }
}

fn length_size(benchmarks: &[String], models: &[String]) -> (u32, u32) {
    ((380 * benchmarks.len().max(1) as u32).max(480), 360 + 18 * models.len() as u32)
}

/// One panel per benchmark: accuracy of each (equal-count) length bin as a line and each
/// model's overall (mean length, pass@1) as a larger dot. The x axis is quantile-spaced
/// ([`QuantileAxis`]) and labelled in tokens.
pub fn length_chart(benchmarks: &[String], models: &[String], series: &[Vec<Option<LengthSeries>>]) -> Result<String, EvalError> {
    to_svg("accuracy-vs-length chart", length_size(benchmarks, models), |a| draw_length(a, benchmarks, models, series))
}

/// [`length_chart`] as PNG.
pub fn length_chart_png(benchmarks: &[String], models: &[String], series: &[Vec<Option<LengthSeries>>]) -> Result<Vec<u8>, EvalError> {
    to_png("accuracy-vs-length chart", length_size(benchmarks, models), |a| draw_length(a, benchmarks, models, series))
}

fn draw_length<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, benchmarks: &[String], models: &[String], series: &[Vec<Option<LengthSeries>>]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled("accuracy vs response length", (FAMILY, 17))?;
    let panels = root.split_evenly((1, benchmarks.len().max(1)));
    for (bi, (bench, panel)) in benchmarks.iter().zip(&panels).enumerate() {
        let present = || series.iter().filter_map(move |row| row.get(bi).and_then(|x| x.as_ref()));
        let axis = QuantileAxis::new(present().flat_map(|ls| ls.points.iter().map(|p| p.0).chain(std::iter::once(ls.overall.0))));
        let mut chart = ChartBuilder::on(panel)
            .caption(bench.as_str(), (FAMILY, 14))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.05f64..1.05f64, 0f64..1.02f64)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_desc("response tokens (quantile-spaced)")
            .y_desc(if bi == 0 { "accuracy (%)" } else { "" })
            .x_label_formatter(&|p| format!("{:.0}", axis.tokens(*p)))
            .y_label_formatter(&|v| format!("{:.0}", 100.0 * v))
            .draw()?;
        for (mi, name) in models.iter().enumerate() {
            let Some(ls) = series.get(mi).and_then(|row| row.get(bi)).and_then(|x| x.as_ref()) else { continue };
            let c = rgb(mi);
            let pts: Vec<(f64, f64)> = ls.points.iter().map(|&(t, a)| (axis.pos(t), a.clamp(0.0, 1.0))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2)));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            let o = (axis.pos(ls.overall.0), ls.overall.1.clamp(0.0, 1.0));
            chart.draw_series([Circle::new(o, 7, c.filled()), Circle::new(o, 7, BLACK.stroke_width(1))])?;
        }
        if bi == 0 {
            draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
        }
    }
    Ok(())
}

/// One named curve of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend label.
    pub name: String,
    /// (x, y) points, ascending in x.
    pub points: Vec<(f64, f64)>,
}

/// The y range of `curves`, always covering [0, 1] (rewards and accuracies live there).
fn y_range(curves: &[Curve]) -> (f64, f64) {
    let ys = curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)).filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((0.0f64, 1.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    (lo, hi + 0.02 * (hi - lo))
}

/// A line chart of `curves` (e.g. GRPO reward and held-out pass@1 over steps).
pub fn line_chart(title: &str, x_desc: &str, y_desc: &str, curves: &[Curve]) -> Result<String, EvalError> {
    to_svg("line chart", (640, 400), |a| draw_lines(a, title, x_desc, y_desc, curves))
}

/// [`line_chart`] as PNG.
pub fn line_chart_png(title: &str, x_desc: &str, y_desc: &str, curves: &[Curve]) -> Result<Vec<u8>, EvalError> {
    to_png("line chart", (640, 400), |a| draw_lines(a, title, x_desc, y_desc, curves))
}

fn draw_lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, x_desc: &str, y_desc: &str, curves: &[Curve]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let xs = || curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).filter(|x| x.is_finite());
    let x0 = xs().fold(f64::INFINITY, f64::min);
    let x1 = xs().fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x0.is_finite() && x1 > x0 { (x0, x1) } else if x0.is_finite() { (x0 - 1.0, x0 + 1.0) } else { (0.0, 1.0) };
    let (y0, y1) = y_range(curves);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw()?;
    for (i, c) in curves.iter().enumerate() {
        let pts: Vec<(f64, f64)> = c.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
        let markers = if pts.len() <= 60 { 3 } else { 0 };
        draw_curve(&mut chart, i, &c.name, &pts, markers)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// One labelled curve in the i-th colour, with filled markers of `marker_radius` px at its
/// points (0 = none).
pub(crate) fn draw_curve<'a, DB, X, Y>(chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>, i: usize, name: &str, pts: &[(f64, f64)], marker_radius: u32) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let col = rgb(i);
    chart
        .draw_series(LineSeries::new(pts.to_vec(), col.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], col.stroke_width(2)));
    if marker_radius > 0 {
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, marker_radius, col.filled())))?;
    }
    Ok(())
}

/// The series legend every chart uses, at `position`.
pub(crate) fn draw_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>, position: SeriesLabelPosition) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn well_formed(svg: &str) {
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..svg.len().min(200)]);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    fn is_png(bytes: &[u8], size: (u32, u32)) {
        assert_eq!(crate::png::dimensions(bytes), Some(size));
    }

    #[test]
    fn accuracy_chart_has_a_bar_per_evaluated_pair_and_escapes_names() {
        let b = Bar { value: 0.5, ci: [0.4, 0.6] };
        let (benches, models) = (vec!["aime2024".to_string(), "math500".into()], vec!["teacher <R1>".to_string(), "student".into()]);
        let bars = vec![vec![Some(b), Some(b)], vec![Some(b), None]];
        let svg = accuracy_chart(&benches, &models, &bars).unwrap();
        well_formed(&svg);
        // 3 bars, each with three whisker paths; names escaped
        let bar_fill = format!("fill=\"{}\"", color(0)).to_uppercase();
        assert!(svg.to_uppercase().matches(&bar_fill).count() >= 2, "model 0's two bars");
        assert!(svg.contains("teacher &lt;R1&gt;") && !svg.contains("<R1>"));
        assert!(svg.contains("aime2024") && svg.contains("math500"));
        is_png(&accuracy_chart_png(&benches, &models, &bars).unwrap(), accuracy_size(&benches, &models));
    }

    #[test]
    fn quantile_axis_spreads_clustered_lengths() {
        // Bins clustered at 40..44 tokens and one outlier at 400: a linear axis from 0 would
        // put the five clustered bins within 1% of its width.
        let ax = QuantileAxis::new([40.0, 41.0, 42.0, 44.0, 400.0]);
        let pos: Vec<f64> = [40.0, 41.0, 42.0, 44.0, 400.0].iter().map(|&t| ax.pos(t)).collect();
        assert_eq!(pos, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!((ax.tokens(0.625) - 43.0).abs() < 1e-9 && ax.tokens(1.0) == 400.0);
        assert!((ax.pos(222.0) - 0.875).abs() < 1e-9, "linear between knots");
        assert_eq!(QuantileAxis::new([7.0]).pos(7.0), 0.5);
    }

    #[test]
    fn length_chart_draws_lines_and_markers() {
        let ls = LengthSeries { points: vec![(10.0, 1.0), (11.0, 0.5), (90.0, 0.0)], overall: (30.0, 0.5) };
        let (b, m, s) = (vec!["x".to_string()], vec!["m".to_string()], vec![vec![Some(ls)]]);
        let svg = length_chart(&b, &m, &s).unwrap();
        well_formed(&svg);
        assert!(svg.matches("<circle").count() >= 4, "3 bin points + the overall marker");
        assert!(svg.contains("<polyline"), "the bins' line");
        assert!(svg.contains("quantile-spaced"));
        is_png(&length_chart_png(&b, &m, &s).unwrap(), length_size(&b, &m));
    }

    #[test]
    fn line_chart_of_rewards() {
        let curves = vec![
            Curve { name: "reward".into(), points: (1..=20).map(|s| (s as f64, s as f64 / 25.0)).collect() },
            Curve { name: "held-out pass@1".into(), points: vec![(10.0, 0.5), (20.0, 0.7)] },
        ];
        let svg = line_chart("GRPO", "step", "reward", &curves).unwrap();
        well_formed(&svg);
        assert!(svg.contains("held-out pass@1") && svg.matches("<polyline").count() >= 2);
        is_png(&line_chart_png("GRPO", "step", "reward", &curves).unwrap(), (640, 400));
        assert_eq!(y_range(&curves[..1]).0, 0.0);
    }
}
