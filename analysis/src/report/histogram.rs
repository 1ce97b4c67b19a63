//! Two histograms overlaid on the same bins, semi-transparent: a column's reference and current
//! shares, for drift.

use std::fmt::Write;

use super::chart::{Canvas, Chart, PALETTE, Scale, WIDTH, clip, extent, nice_domain, px};

/// The most bins a chart draws; the drift histograms have at most 50.
pub const MAX_BINS: usize = 100;
const PLOT_HEIGHT: f64 = 180.0;
/// Category labels longer than this are cut.
const LABEL_CHARS: usize = 14;
/// At most this many category labels are written under the axis; the others are skipped evenly.
const MAX_LABELS: usize = 25;

/// The bins' positions: numeric edges (one more than the bins, ascending) or one label per bin.
#[derive(Clone, Copy, Debug)]
pub enum Bins<'a> {
    Edges(&'a [f64]),
    Labels(&'a [String]),
}

/// Bars from `base` up to each finite positive share, as one path.
fn bars(spans: &[(f64, f64)], shares: &[f64], y: Scale) -> String {
    let mut d = String::new();
    let base = px(y.at(0.0));
    for (&(a, b), &s) in spans.iter().zip(shares) {
        if s.is_finite() && s > 0.0 {
            let _ = write!(d, "M{} {base}V{}H{}V{base}Z", px(a), px(y.at(s)), px(b));
        }
    }
    d
}

/// The reference and current shares per bin overlaid; the legend toggles either. Shares that are
/// not finite draw nothing. Edges that are not finite and ascending are drawn as numbered bins.
/// At most [`MAX_BINS`] bins are drawn, and a note says how many were left out.
pub fn overlaid_histograms(title: &str, bins: Bins<'_>, reference: &[f64], current: &[f64]) -> Chart {
    debug_assert_eq!(reference.len(), current.len(), "histograms `{title}`: one share of each per bin");
    let all = reference.len().min(current.len());
    let k = all.min(MAX_BINS);
    let (left, right) = (56.0, WIDTH - 16.0);
    let mut canvas = Canvas::new("histograms", title);
    let entries = [("reference".to_owned(), PALETTE[0]), ("current".to_owned(), PALETTE[1])];
    let top = 30.0 + canvas.legend(&entries, 8.0, 36.0, WIDTH - 8.0) + 16.0;
    let bottom = top + PLOT_HEIGHT;
    let (_, max) = extent(reference[..k].iter().chain(&current[..k]).copied()).unwrap_or((0.0, 1.0));
    let (_, y1) = nice_domain(0.0, max.max(0.0), 4);
    let y = Scale { d0: 0.0, d1: y1, r0: bottom, r1: top };
    canvas.y_axis(y, left, right, 4);
    canvas.text(left - 5.0, top - 10.0, "end", "share");
    let edges = match bins {
        Bins::Edges(e)
            if e.len() > k && e[..=k].iter().all(|v| v.is_finite()) && e[..=k].windows(2).all(|w| w[0] < w[1]) =>
        {
            Some(&e[..=k])
        }
        _ => None,
    };
    let (spans, height) = match edges {
        Some(e) => {
            let x = Scale { d0: e[0], d1: e[k], r0: left, r1: right };
            canvas.x_axis(x, bottom, top, 8, "");
            // Half a pixel apart so neighbouring bins stay distinguishable.
            let spans = e.windows(2).map(|w| (x.at(w[0]) + 0.25, x.at(w[1]) - 0.25)).collect();
            (spans, bottom + 24.0)
        }
        None => {
            let width = (right - left) / k.max(1) as f64;
            let spans: Vec<(f64, f64)> =
                (0..k).map(|i| (left + (i as f64 + 0.1) * width, left + (i as f64 + 0.9) * width)).collect();
            let names: Vec<String> = match bins {
                Bins::Labels(l) => {
                    (0..k).map(|i| l.get(i).map_or_else(|| i.to_string(), |s| clip(s, LABEL_CHARS))).collect()
                }
                Bins::Edges(_) => (0..k).map(|i| format!("bin {}", i + 1)).collect(),
            };
            let every = k.div_ceil(MAX_LABELS).max(1);
            let turned = k > 8 || names.iter().any(|n| n.chars().count() > 8);
            for (i, name) in names.iter().enumerate().filter(|(i, _)| i % every == 0) {
                let cx = (spans[i].0 + spans[i].1) / 2.0;
                if turned {
                    let (tx, ty) = (px(cx + 3.0), px(bottom + 10.0));
                    canvas.raw(&format!(
                        r#"<text x="{tx}" y="{ty}" text-anchor="end" transform="rotate(-40 {tx} {ty})">{}</text>"#,
                        super::page::escape(name)
                    ));
                } else {
                    canvas.text(cx, bottom + 14.0, "middle", name);
                }
            }
            canvas.raw(&format!(r#"<path class="axis" d="M{} {}H{}"/>"#, px(left), px(bottom), px(right)));
            (spans, bottom + if turned { 70.0 } else { 24.0 })
        }
    };
    for (series, (name, shares)) in [("reference", reference), ("current", current)].into_iter().enumerate() {
        let d = bars(&spans, &shares[..k], y);
        if !d.is_empty() {
            let attrs = format!(r#"data-series="{series}" fill="{}" fill-opacity="0.45" d="{d}""#, PALETTE[series]);
            canvas.mark("path", "", &attrs, Some(name));
        }
    }
    if all > k {
        canvas.note(format!("the first {k} of {all} bins shown; {} left out", all - k));
    }
    canvas.finish(height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_bins_follow_their_edges() {
        let edges = [0.0, 1.0, 2.0, 3.0];
        let c = overlaid_histograms("x", Bins::Edges(&edges), &[0.5, 0.5, 0.0], &[0.0, 0.25, 0.75]);
        assert_eq!((c.kind(), c.marks()), ("histograms", 2));
        let svg = c.svg();
        // Domain 0..3 over 56..704: the first bin ends at 272 (less the quarter-pixel gap).
        assert!(svg.contains("M56.2 "), "{svg}");
        assert!(svg.contains("H271.8V"), "{svg}");
        assert!(svg.contains(">reference</text>") && svg.contains(">current</text>"));
    }

    #[test]
    fn categories_skip_what_is_not_finite() {
        let labels: Vec<String> = ["red", "<green>", "blue"].map(String::from).to_vec();
        let c = overlaid_histograms("colour", Bins::Labels(&labels), &[0.2, f64::NAN, 0.8], &[f64::NAN; 3]);
        assert_eq!(c.marks(), 1);
        assert!(!c.svg().contains("NaN") && c.svg().contains("&lt;green&gt;"));
        // Edges that are not ascending fall back to numbered bins.
        let c = overlaid_histograms("bad", Bins::Edges(&[0.0, f64::NAN]), &[1.0], &[1.0]);
        assert!(c.svg().contains(">bin 1</text>") && !c.svg().contains("NaN"));
        let many = vec![0.01; MAX_BINS + 5];
        let c = overlaid_histograms("many", Bins::Labels(&[]), &many, &many);
        assert_eq!(c.notes(), ["the first 100 of 105 bins shown; 5 left out"]);
    }
}
