//! What every chart shares: the [`Chart`] a primitive hands to a page, and the canvas it is drawn
//! on (linear scales with round ticks, axes, a legend, compact numbers). Coordinates are written
//! with one decimal and only ever from finite values, so no `NaN` reaches an attribute.

use std::fmt::Write;

use super::page::escape;

/// The width of every chart's view box; pages scale charts to their column.
pub(crate) const WIDTH: f64 = 720.0;
/// Series colours, in legend order; a series past the last reuses them from the start.
pub(crate) const PALETTE: [&str; 10] =
    ["#2f6db5", "#d9782d", "#3b9a5a", "#c23b4a", "#7d5ab5", "#8c6239", "#d163a6", "#6f7782", "#a5a21f", "#2aa0b0"];
/// Approximate width of one character of 11 px chart text, for laying out labels.
const CHAR: f64 = 6.2;

/// One chart, drawn: an `<svg data-chart="KIND" data-marks="N">` whose data marks carry the class
/// `mark`, with notes shown under it (what was left out, how to read it).
#[derive(Clone, Debug)]
pub struct Chart {
    kind: &'static str,
    title: String,
    svg: String,
    marks: usize,
    notes: Vec<String>,
}

impl Chart {
    /// The chart kind: `bars`, `lines`, `histograms` or `stream`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// How many data marks (bars, lines, markers) were drawn; zero for a chart without finite data.
    pub fn marks(&self) -> usize {
        self.marks
    }

    /// The `<svg>` element.
    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// The notes shown under the chart.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Adds a line of text shown under the chart.
    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.notes.push(text.into());
        self
    }
}

/// A linear map from a data domain onto a pixel range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn at(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span == 0.0 { (self.r0 + self.r1) / 2.0 } else { self.r0 + (v - self.d0) / span * (self.r1 - self.r0) }
    }
}

/// A round tick step giving about `count` ticks over `span`: 1, 2 or 5 times a power of ten.
fn step(span: f64, count: usize) -> f64 {
    let raw = span / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let factor = match raw / magnitude {
        r if r < 1.5 => 1.0,
        r if r < 3.0 => 2.0,
        r if r < 7.0 => 5.0,
        _ => 10.0,
    };
    factor * magnitude
}

/// The smallest and largest finite values of `values`, if any is finite.
pub(crate) fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values.into_iter().filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// `lo..hi` widened to round ticks (about `count` of them); an empty or a point range is widened
/// around its value so a scale never divides by zero.
pub(crate) fn nice_domain(lo: f64, hi: f64, count: usize) -> (f64, f64) {
    let (lo, hi) = match (lo, hi) {
        (lo, hi) if !(lo.is_finite() && hi.is_finite()) || lo > hi => (0.0, 1.0),
        (lo, hi) if lo == hi && lo == 0.0 => (0.0, 1.0),
        (lo, hi) if lo == hi => (lo - lo.abs() / 2.0, hi + hi.abs() / 2.0),
        other => other,
    };
    let s = step(hi - lo, count);
    ((lo / s).floor() * s, (hi / s).ceil() * s)
}

/// Round values between `lo` and `hi`, about `count` of them.
pub(crate) fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return if lo.is_finite() { vec![lo] } else { Vec::new() };
    }
    let s = step(hi - lo, count);
    let first = (lo / s - 1e-9).ceil() as i64;
    let last = (hi / s + 1e-9).floor() as i64;
    // Multiplying the index by the step avoids accumulated rounding (0.30000000000000004).
    (first..=last).map(|i| i as f64 * s).map(|v| if v == 0.0 { 0.0 } else { v }).collect()
}

/// A number for people: at most four significant digits, exponents past 10⁶ or under 10⁻³,
/// `n/a` when not finite.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{x:.2e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// A coordinate with one decimal (0 for a value that is not finite, which callers never pass).
pub(crate) fn px(x: f64) -> String {
    debug_assert!(x.is_finite(), "a coordinate is not finite");
    if !x.is_finite() {
        return "0".into();
    }
    let s = format!("{:.1}", x);
    let s = s.strip_suffix(".0").unwrap_or(&s);
    if s == "-0" { "0".into() } else { s.to_owned() }
}

/// A line through `points` (`None` is a gap, which breaks it); a lone point between gaps is a
/// zero-length segment, which round line caps draw as a dot.
pub(crate) fn polyline(points: impl Iterator<Item = Option<(f64, f64)>>) -> String {
    let mut d = String::new();
    let mut run = 0;
    for p in points {
        match p {
            Some((x, y)) => {
                let _ = write!(d, "{}{} {}", if run == 0 { "M" } else { "L" }, px(x), px(y));
                run += 1;
            }
            None => {
                if run == 1 {
                    d.push_str("h0");
                }
                run = 0;
            }
        }
    }
    if run == 1 {
        d.push_str("h0");
    }
    d
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The width in pixels of `chars` characters of chart text.
pub(crate) fn text_width(chars: usize) -> f64 {
    chars as f64 * CHAR
}

/// A chart being drawn: its elements so far and how many are data marks.
pub(crate) struct Canvas {
    kind: &'static str,
    title: String,
    body: String,
    marks: usize,
    notes: Vec<String>,
}

impl Canvas {
    /// A chart of `kind` with `title` drawn at its top.
    pub fn new(kind: &'static str, title: &str) -> Self {
        let mut body = String::new();
        let _ = writeln!(body, r#"<text class="title" x="8" y="16">{}</text>"#, escape(title));
        Canvas { kind, title: title.to_owned(), body, marks: 0, notes: Vec::new() }
    }

    /// Appends raw SVG: decoration, not data.
    pub fn raw(&mut self, svg: &str) {
        self.body.push_str(svg);
        self.body.push('\n');
    }

    /// Appends one data mark: an element of `class` (besides `mark`, added here) whose attributes
    /// the caller escaped, with an optional tooltip.
    pub fn mark(&mut self, tag: &str, class: &str, attrs: &str, tooltip: Option<&str>) {
        self.marks += 1;
        let class = if class.is_empty() { "mark".to_owned() } else { format!("mark {class}") };
        match tooltip {
            Some(t) => {
                let _ = writeln!(self.body, r#"<{tag} class="{class}" {attrs}><title>{}</title></{tag}>"#, escape(t));
            }
            None => {
                let _ = writeln!(self.body, r#"<{tag} class="{class}" {attrs}/>"#);
            }
        }
    }

    /// Text at (x, y); `anchor` is `start`, `middle` or `end`.
    pub fn text(&mut self, x: f64, y: f64, anchor: &str, text: &str) {
        let _ =
            writeln!(self.body, r#"<text x="{}" y="{}" text-anchor="{anchor}">{}</text>"#, px(x), px(y), escape(text));
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// A horizontal axis at `y` for `scale`, with tick labels, grid lines up to `top`, and a label.
    pub fn x_axis(&mut self, scale: Scale, y: f64, top: f64, tick_count: usize, label: &str) {
        let mut grid = String::new();
        for t in ticks(scale.d0.min(scale.d1), scale.d0.max(scale.d1), tick_count) {
            let x = px(scale.at(t));
            let _ = write!(grid, "M{x} {}V{}", px(top), px(y));
            self.text(scale.at(t), y + 14.0, "middle", &num(t));
        }
        self.raw(&format!(r#"<path class="grid" d="{grid}"/>"#));
        self.raw(&format!(r#"<path class="axis" d="M{} {}H{}"/>"#, px(scale.r0), px(y), px(scale.r1)));
        if !label.is_empty() {
            self.text((scale.r0 + scale.r1) / 2.0, y + 30.0, "middle", label);
        }
    }

    /// A vertical axis at `x` for `scale`, with tick labels and grid lines across to `right`.
    pub fn y_axis(&mut self, scale: Scale, x: f64, right: f64, tick_count: usize) {
        let mut grid = String::new();
        for t in ticks(scale.d0.min(scale.d1), scale.d0.max(scale.d1), tick_count) {
            let y = scale.at(t);
            let _ = write!(grid, "M{} {}H{}", px(x), px(y), px(right));
            self.text(x - 5.0, y + 4.0, "end", &num(t));
        }
        self.raw(&format!(r#"<path class="grid" d="{grid}"/>"#));
        self.raw(&format!(r#"<path class="axis" d="M{} {}V{}"/>"#, px(x), px(scale.r0), px(scale.r1)));
    }

    /// A legend of coloured entries from (`x`, `y`), wrapping before `right`; each entry toggles
    /// the marks of its series (`data-series="i"`) when clicked. Returns the height it took.
    pub fn legend(&mut self, entries: &[(String, &str)], x: f64, y: f64, right: f64) -> f64 {
        let (mut cx, mut cy) = (x, y);
        for (i, (name, colour)) in entries.iter().enumerate() {
            let name = clip(name, 30);
            let w = 16.0 + text_width(name.chars().count()) + 14.0;
            if cx + w > right && cx > x {
                (cx, cy) = (x, cy + 16.0);
            }
            let _ = writeln!(
                self.body,
                r#"<g class="legend" data-toggle="{i}"><rect x="{}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{}</text></g>"#,
                px(cx),
                px(cy - 9.0),
                px(cx + 14.0),
                px(cy),
                escape(&name)
            );
            cx += w;
        }
        if entries.is_empty() { 0.0 } else { cy - y + 16.0 }
    }

    /// The finished chart, `height` pixels tall.
    pub fn finish(self, height: f64) -> Chart {
        let svg = format!(
            "<svg data-chart=\"{}\" data-marks=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n{}</svg>",
            self.kind,
            self.marks,
            px(WIDTH),
            px(height.ceil()),
            escape(&self.title),
            self.body
        );
        Chart { kind: self.kind, title: self.title, svg, marks: self.marks, notes: self.notes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_domain() {
        assert_eq!(ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(
            ticks(0.0, 1.0, 5).iter().map(|&t| num(t)).collect::<Vec<_>>(),
            ["0", "0.2", "0.4", "0.6", "0.8", "1"]
        );
        assert_eq!(ticks(-3.0, 7.0, 5), vec![-2.0, 0.0, 2.0, 4.0, 6.0]);
        assert_eq!(nice_domain(0.03, 0.87, 5), (0.0, 1.0));
        assert_eq!(nice_domain(2.0, 2.0, 5), (1.0, 3.0));
        assert_eq!(nice_domain(f64::NAN, 1.0, 5), (0.0, 1.0));
        assert!(ticks(f64::NAN, 1.0, 5).is_empty());
    }

    #[test]
    fn gaps_break_lines_and_lone_points_are_dots() {
        let d = polyline([Some((1.0, 2.0)), Some((3.0, 4.0)), None, Some((5.0, 6.0)), None].into_iter());
        assert_eq!(d, "M1 2L3 4M5 6h0");
        assert_eq!(polyline([None, None].into_iter()), "");
    }

    #[test]
    fn numbers_are_short_and_never_nan() {
        assert_eq!(num(0.93751), "0.9375");
        assert_eq!(num(1234.56), "1235");
        assert_eq!(num(-0.5), "-0.5");
        assert_eq!(num(2.5e-5), "2.50e-5");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(num(f64::INFINITY), "n/a");
        assert_eq!(px(12.345), "12.3");
        assert_eq!(px(-0.01), "0");
        assert_eq!(px(40.0), "40");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(extent([f64::NAN, 2.0, f64::NEG_INFINITY, -1.0]), Some((-1.0, 2.0)));
        assert_eq!(extent([f64::NAN]), None);
    }
}
