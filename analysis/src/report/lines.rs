//! Lines over a shared x axis, each with an optional interval band: fairness rates per group
//! across thresholds, sensitivity curves.

use std::fmt::Write;

use super::chart::{Canvas, Chart, PALETTE, Scale, WIDTH, extent, nice_domain, polyline, px};

/// The most series a chart draws (one colour each); callers pick which.
pub const MAX_SERIES: usize = PALETTE.len();
/// The most x positions drawn; longer inputs are thinned to every k-th position.
pub const MAX_POINTS: usize = 1000;
const PLOT_HEIGHT: f64 = 220.0;

/// Closed areas between `high` (left to right) and `low` (back), one per run where both are
/// finite.
fn band(points: &[(usize, f64)], low: &[f64], high: &[f64], y: Scale) -> String {
    let mut d = String::new();
    let mut run: Vec<(f64, f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64, f64)>, d: &mut String| {
        if run.len() > 1 {
            for (k, &(x, _, h)) in run.iter().enumerate() {
                let _ = write!(d, "{}{} {}", if k == 0 { "M" } else { "L" }, px(x), px(y.at(h)));
            }
            for &(x, l, _) in run.iter().rev() {
                let _ = write!(d, "L{} {}", px(x), px(y.at(l)));
            }
            d.push('Z');
        }
        run.clear();
    };
    for &(i, x) in points {
        let (l, h) = (low.get(i).copied().unwrap_or(f64::NAN), high.get(i).copied().unwrap_or(f64::NAN));
        if l.is_finite() && h.is_finite() {
            run.push((x, l, h));
        } else {
            flush(&mut run, &mut d);
        }
    }
    flush(&mut run, &mut d);
    d
}

/// One line per series over `x`, each series holding a value per x; `bands`, when given, holds a
/// (low, high) pair of vectors per series drawn as a shaded band. Values that are not finite
/// break their line. At most [`MAX_SERIES`] series are drawn (a note says how many were left
/// out); the legend toggles a series and its band.
pub fn lines(
    title: &str,
    x_label: &str,
    x: &[f64],
    series: &[(String, Vec<f64>)],
    bands: Option<&[(Vec<f64>, Vec<f64>)]>,
) -> Chart {
    debug_assert!(series.iter().all(|(_, v)| v.len() == x.len()), "lines `{title}`: one value per x");
    debug_assert!(bands.is_none_or(|b| b.len() == series.len()), "lines `{title}`: one band per series");
    let shown = &series[..series.len().min(MAX_SERIES)];
    let stride = x.len().div_ceil(MAX_POINTS).max(1);
    // Thinned positions keep the last one so a curve still ends where it should.
    let positions: Vec<usize> = (0..x.len()).filter(|&i| i % stride == 0 || i + 1 == x.len()).collect();
    let mut canvas = Canvas::new("lines", title);
    let entries: Vec<(String, &str)> =
        shown.iter().enumerate().map(|(k, (name, _))| (name.clone(), PALETTE[k % PALETTE.len()])).collect();
    let top = 30.0 + canvas.legend(&entries, 8.0, 36.0, WIDTH - 8.0) + 8.0;
    let bottom = top + PLOT_HEIGHT;
    let (left, right) = (56.0, WIDTH - 16.0);
    let band_of = |k: usize| bands.and_then(|b| b.get(k));
    let ys = shown.iter().enumerate().flat_map(|(k, (_, v))| {
        let (l, h) = band_of(k).map_or((&[][..], &[][..]), |(l, h)| (l.as_slice(), h.as_slice()));
        positions
            .iter()
            .filter(|&&i| x[i].is_finite())
            .flat_map(move |&i| [v.get(i), l.get(i), h.get(i)].into_iter().map(|p| p.copied().unwrap_or(f64::NAN)))
    });
    let (x0, x1) = extent(positions.iter().map(|&i| x[i])).unwrap_or((0.0, 1.0));
    // A single x position spans nothing: widen it so the axis has ticks around the point.
    let (x0, x1) = if x0 == x1 { nice_domain(x0, x1, 5) } else { (x0, x1) };
    let (y0, y1) = extent(ys).unwrap_or((0.0, 1.0));
    let (y0, y1) = nice_domain(y0, y1, 5);
    let xs_scale = Scale { d0: x0, d1: x1, r0: left, r1: right };
    let y = Scale { d0: y0, d1: y1, r0: bottom, r1: top };
    canvas.y_axis(y, left, right, 5);
    canvas.x_axis(xs_scale, bottom, top, 6, x_label);
    let finite: Vec<(usize, f64)> =
        positions.iter().filter(|&&i| x[i].is_finite()).map(|&i| (i, xs_scale.at(x[i]))).collect();
    for (k, (name, values)) in shown.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        if let Some((low, high)) = band_of(k) {
            let d = band(&finite, low, high, y);
            if !d.is_empty() {
                canvas.raw(&format!(r#"<path class="band" data-series="{k}" fill="{colour}" d="{d}"/>"#));
            }
        }
        let d = polyline(finite.iter().map(|&(i, px_x)| {
            let v = values.get(i).copied().unwrap_or(f64::NAN);
            v.is_finite().then(|| (px_x, y.at(v)))
        }));
        if !d.is_empty() {
            canvas.mark("path", "line", &format!(r#"data-series="{k}" stroke="{colour}" d="{d}""#), Some(name));
        }
    }
    if series.len() > shown.len() {
        canvas.note(format!(
            "{} of {} series shown; {} left out",
            shown.len(),
            series.len(),
            series.len() - shown.len()
        ));
    }
    if stride > 1 {
        canvas.note(format!("one point in {stride} of {} drawn", x.len()));
    }
    canvas.finish(bottom + 40.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_draw_finite_series_with_bands_and_cap_the_series() {
        let x = [0.1, 0.5, 0.9];
        let series = vec![("a".to_owned(), vec![0.2, f64::NAN, 0.8]), ("b".to_owned(), vec![f64::NAN; 3])];
        let bands = vec![(vec![0.1, 0.4, 0.7], vec![0.3, 0.6, 0.9]), (vec![], vec![])];
        let c = lines("tpr", "threshold", &x, &series, Some(&bands));
        // Series b has nothing finite: one mark, a's line (two dots).
        assert_eq!((c.kind(), c.marks()), ("lines", 1));
        let svg = c.svg();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches(r#"class="band""#).count(), 1);
        assert!(svg.contains("threshold") && svg.contains(r#"data-toggle="1""#));
        let many: Vec<(String, Vec<f64>)> = (0..MAX_SERIES + 2).map(|k| (format!("g{k}"), vec![k as f64; 3])).collect();
        let c = lines("fpr", "threshold", &x, &many, None);
        assert_eq!(c.marks(), MAX_SERIES);
        assert_eq!(c.notes(), ["10 of 12 series shown; 2 left out"]);
    }

    #[test]
    fn long_curves_are_thinned() {
        let x: Vec<f64> = (0..5000).map(f64::from).collect();
        let c = lines("curve", "x", &x, &[("s".to_owned(), x.clone())], None);
        assert_eq!(c.marks(), 1);
        assert_eq!(c.notes(), ["one point in 5 of 5000 drawn"]);
        assert!(c.svg().len() < 20_000, "{}", c.svg().len());
    }
}
