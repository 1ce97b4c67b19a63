//! A monitored error stream: the windowed error rate by row as a line, and every alarm of the
//! change detectors as a vertical marker coloured by its label.

use super::chart::{Canvas, Chart, PALETTE, Scale, WIDTH, extent, nice_domain, polyline, px};

/// The most points the line has; more are averaged in consecutive groups.
pub const MAX_POINTS: usize = 1000;
/// The most alarm markers drawn; a note counts the others.
pub const MAX_ALARMS: usize = 200;
/// The most alarm labels told apart by colour; the rest share one entry.
const MAX_LABELS: usize = PALETTE.len() - 2;
const PLOT_HEIGHT: f64 = 200.0;

/// `points` averaged in consecutive groups down to at most [`MAX_POINTS`]: each group's last row
/// and the mean of its finite rates (not finite when none is). Returns the group size too.
fn thin(points: &[(usize, f64)]) -> (Vec<(usize, f64)>, usize) {
    let per = points.len().div_ceil(MAX_POINTS).max(1);
    if per == 1 {
        return (points.to_vec(), 1);
    }
    let thinned = points
        .chunks(per)
        .map(|group| {
            let finite: Vec<f64> = group.iter().map(|p| p.1).filter(|v| v.is_finite()).collect();
            let mean = if finite.is_empty() { f64::NAN } else { finite.iter().sum::<f64>() / finite.len() as f64 };
            (group[group.len() - 1].0, mean)
        })
        .collect();
    (thinned, per)
}

/// The error-rate line over `points` (row, rate: already windowed), breaking where a rate is not
/// finite, and a marker at each alarm's row, coloured by its label (`"adwin drift"`). The rows
/// are those of the stream; at most [`MAX_POINTS`] points and [`MAX_ALARMS`] alarms are drawn.
pub fn stream(title: &str, points: &[(usize, f64)], alarms: &[(usize, String)]) -> Chart {
    let (line, per) = thin(points);
    let shown = &alarms[..alarms.len().min(MAX_ALARMS)];
    let mut labels: Vec<&str> = Vec::new();
    for (_, label) in shown {
        if !labels.contains(&label.as_str()) {
            labels.push(label);
        }
    }
    let series_of = |label: &str| 1 + labels.iter().position(|l| *l == label).unwrap_or(0).min(MAX_LABELS);
    let mut entries = vec![("error rate".to_owned(), PALETTE[0])];
    for (j, label) in labels.iter().enumerate().take(MAX_LABELS + 1) {
        let name = if j == MAX_LABELS { "other alarms".to_owned() } else { (*label).to_owned() };
        entries.push((name, PALETTE[1 + j]));
    }
    let mut canvas = Canvas::new("stream", title);
    let top = 30.0 + canvas.legend(&entries, 8.0, 36.0, WIDTH - 8.0) + 8.0;
    let bottom = top + PLOT_HEIGHT;
    let (left, right) = (56.0, WIDTH - 16.0);
    let last = line.iter().map(|p| p.0).chain(shown.iter().map(|a| a.0)).max().unwrap_or(1).max(1);
    let x = Scale { d0: 0.0, d1: last as f64, r0: left, r1: right };
    let (lo, hi) = extent(line.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let (y0, y1) = nice_domain(lo.min(0.0), hi, 5);
    let y = Scale { d0: y0, d1: y1, r0: bottom, r1: top };
    canvas.y_axis(y, left, right, 5);
    canvas.x_axis(x, bottom, top, 8, "row");
    let d = polyline(line.iter().map(|&(row, rate)| rate.is_finite().then(|| (x.at(row as f64), y.at(rate)))));
    if !d.is_empty() {
        let attrs = format!(r#"data-series="0" stroke="{}" d="{d}""#, PALETTE[0]);
        canvas.mark("path", "line", &attrs, Some("error rate"));
    }
    for (row, label) in shown {
        let series = series_of(label);
        let ax = px(x.at(*row as f64));
        let attrs = format!(
            r#"data-series="{series}" stroke="{}" x1="{ax}" x2="{ax}" y1="{}" y2="{}""#,
            PALETTE[series],
            px(top),
            px(bottom)
        );
        canvas.mark("line", "alarm", &attrs, Some(&format!("{label} at row {row}")));
    }
    if per > 1 {
        canvas.note(format!("{} points averaged in groups of {per}", points.len()));
    }
    if alarms.len() > shown.len() {
        canvas.note(format!(
            "the first {} of {} alarms shown; {} left out",
            shown.len(),
            alarms.len(),
            alarms.len() - shown.len()
        ));
    }
    canvas.finish(bottom + 40.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_draws_its_rate_and_alarms() {
        let points: Vec<(usize, f64)> = (0..40).map(|i| (i * 100, if i == 7 { f64::NAN } else { 0.1 })).collect();
        let alarms =
            vec![(2100, "adwin drift".to_owned()), (2050, "ddm warning".to_owned()), (2300, "adwin drift".to_owned())];
        let c = stream("errors", &points, &alarms);
        assert_eq!((c.kind(), c.marks()), ("stream", 4));
        let svg = c.svg();
        assert!(!svg.contains("NaN") && svg.contains("<title>ddm warning at row 2050</title>"));
        // Two labels, two legend colours besides the rate's.
        assert!(svg.contains(r#"data-toggle="2""#) && !svg.contains(r#"data-toggle="3""#));
        assert!(c.notes().is_empty());
    }

    #[test]
    fn long_streams_are_averaged_and_alarms_capped() {
        let points: Vec<(usize, f64)> = (0..10_000).map(|i| (i, if i < 5000 { 0.0 } else { 1.0 })).collect();
        let (line, per) = thin(&points);
        assert_eq!((line.len(), per), (1000, 10));
        assert_eq!((line[0], line[999]), ((9, 0.0), (9999, 1.0)));
        let alarms: Vec<(usize, String)> = (0..MAX_ALARMS + 1).map(|i| (i, format!("d{}", i % 12))).collect();
        let c = stream("many", &points, &alarms);
        assert_eq!(c.marks(), 1 + MAX_ALARMS);
        assert_eq!(
            c.notes(),
            ["10000 points averaged in groups of 10", "the first 200 of 201 alarms shown; 1 left out"]
        );
        assert!(c.svg().contains("other alarms"));
        assert!(c.svg().len() < 60_000, "{}", c.svg().len());
        assert_eq!(stream("empty", &[], &[]).marks(), 0);
    }
}
