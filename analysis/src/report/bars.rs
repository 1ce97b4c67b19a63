//! Horizontal bars with interval whiskers: a metric per slice with its bootstrap interval, the
//! slices that differ significantly highlighted; also feature importances (no intervals).

use super::chart::{Canvas, Chart, PALETTE, Scale, WIDTH, clip, extent, nice_domain, num, px, text_width};

/// The most bars a chart draws; callers pick which (the largest slices, the top features).
pub const MAX_BARS: usize = 50;
/// Bar labels longer than this are cut (the tooltip keeps them whole).
const LABEL_CHARS: usize = 32;
const ROW: f64 = 20.0;
const BAR: f64 = 12.0;
/// Room on the right for the value and its interval.
const VALUES: f64 = 150.0;

/// A bar per label, from zero to `values[i]`, with a whisker from `low[i]` to `high[i]`; bars
/// with `highlight[i]` are drawn in the accent colour. `low`, `high` and `highlight` may be empty
/// (no whiskers, nothing highlighted); otherwise they hold one entry per label. Values that are
/// not finite draw no bar (and whiskers no whisker) and read `n/a`. Only the first [`MAX_BARS`]
/// labels are drawn, and a note says how many were left out.
pub fn bars_with_intervals(
    title: &str,
    labels: &[String],
    values: &[f64],
    low: &[f64],
    high: &[f64],
    highlight: &[bool],
) -> Chart {
    debug_assert_eq!(labels.len(), values.len(), "bars `{title}`: one value per label");
    debug_assert!(low.is_empty() || low.len() == labels.len(), "bars `{title}`: one low per label");
    debug_assert!(high.is_empty() || high.len() == labels.len(), "bars `{title}`: one high per label");
    debug_assert!(highlight.is_empty() || highlight.len() == labels.len(), "bars `{title}`: one flag per label");
    let n = labels.len().min(values.len()).min(MAX_BARS);
    let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    let marked = |i: usize| highlight.get(i).copied().unwrap_or(false);
    let mut canvas = Canvas::new("bars", title);
    let mut top = 30.0;
    if (0..n).any(marked) {
        let entries = [("differs significantly".to_owned(), PALETTE[3]), ("other".to_owned(), PALETTE[0])];
        top += canvas.legend(&entries, 8.0, 36.0, WIDTH - 8.0);
    }
    let label_chars = labels[..n].iter().map(|l| l.chars().count().min(LABEL_CHARS)).max().unwrap_or(0);
    let left = (text_width(label_chars) + 16.0).max(60.0);
    let right = WIDTH - VALUES;
    let (lo, hi) = extent((0..n).flat_map(|i| [at(values, i), at(low, i), at(high, i)])).unwrap_or((0.0, 1.0));
    let (d0, d1) = nice_domain(lo.min(0.0), hi.max(0.0), 5);
    let x = Scale { d0, d1, r0: left, r1: right };
    let axis = top + n as f64 * ROW + 4.0;
    canvas.x_axis(x, axis, top, 5, "");
    let zero = x.at(0.0);
    for (i, label) in labels.iter().enumerate().take(n) {
        let y = top + i as f64 * ROW + (ROW - BAR) / 2.0;
        let mid = y + BAR / 2.0;
        let (v, l, h) = (at(values, i), at(low, i), at(high, i));
        canvas.text(left - 6.0, mid + 4.0, "end", &clip(label, LABEL_CHARS));
        let interval =
            if l.is_finite() && h.is_finite() { format!(" [{}, {}]", num(l), num(h)) } else { String::new() };
        canvas.text(WIDTH - 8.0, mid + 4.0, "end", &format!("{}{interval}", num(v)));
        if v.is_finite() {
            let (a, b) = (zero.min(x.at(v)), zero.max(x.at(v)));
            let (series, colour) = if marked(i) { (0, PALETTE[3]) } else { (1, PALETTE[0]) };
            let attrs = format!(
                r#"data-series="{series}" x="{}" y="{}" width="{}" height="{}" fill="{colour}""#,
                px(a),
                px(y),
                px((b - a).max(1.0)),
                px(BAR)
            );
            canvas.mark("rect", "", &attrs, Some(&format!("{label}: {}{interval}", num(v))));
        }
        if l.is_finite() && h.is_finite() {
            let (a, b) = (px(x.at(l)), px(x.at(h)));
            let (t, m, u) = (px(mid - 4.0), px(mid), px(mid + 4.0));
            canvas.raw(&format!(r#"<path class="whisker" d="M{a} {m}H{b}M{a} {t}V{u}M{b} {t}V{u}"/>"#));
        }
    }
    if labels.len() > n {
        canvas.note(format!("the first {n} of {} shown; {} left out", labels.len(), labels.len() - n));
    }
    canvas.finish(axis + 24.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_skip_what_is_not_finite_and_cap_their_count() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let c = bars_with_intervals(
            "acc",
            &labels,
            &[0.9, f64::NAN, 0.5],
            &[0.8, 0.1, f64::INFINITY],
            &[0.95, 0.2, 0.6],
            &[false, false, true],
        );
        assert_eq!((c.kind(), c.marks()), ("bars", 2));
        let svg = c.svg();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains(r#"data-chart="bars" data-marks="2""#));
        assert!(svg.contains(">n/a [0.1, 0.2]</text>") && svg.contains("differs significantly"));
        // Two whiskers: c's low is not finite.
        assert_eq!(svg.matches(r#"class="whisker""#).count(), 2);
        let many: Vec<String> = (0..MAX_BARS + 7).map(|i| format!("s{i}")).collect();
        let c = bars_with_intervals("imp", &many, &vec![1.0; many.len()], &[], &[], &[]);
        assert_eq!(c.marks(), MAX_BARS);
        assert_eq!(c.notes(), ["the first 50 of 57 shown; 7 left out"]);
        assert!(!c.svg().contains("whisker") && !c.svg().contains("legend"));
        assert_eq!(bars_with_intervals("none", &[], &[], &[], &[], &[]).marks(), 0);
    }

    #[test]
    fn negative_values_grow_left_from_zero() {
        let labels = vec!["neg".to_owned(), "pos".to_owned()];
        let c = bars_with_intervals("bias", &labels, &[-1.0, 1.0], &[], &[], &[]);
        // Three-character labels take the 60 px minimum: domain -1..1 over 60..570, zero at 315.
        let rects: Vec<&str> =
            c.svg().match_indices("<rect class=\"mark\"").map(|(i, _)| &c.svg()[i..i + 90]).collect();
        assert!(rects[0].contains(r#"width="255""#), "{rects:?}");
        assert!(rects[1].contains(r#"x="315""#), "{rects:?}");
    }
}
