//! The report page of an evaluation: headline metrics with intervals, the confusion matrix, a
//! chart of the main metric per slice set with the differing slices highlighted, and for fairness
//! every rate across thresholds per group.

use crate::bootstrap::Interval;
use crate::evaluate::{Evaluation, SliceSet};
use crate::fairness::{Fairness, GroupRates, RATES};

use super::bars::{MAX_BARS, bars_with_intervals};
use super::chart::num;
use super::lines::{MAX_SERIES, lines};
use super::page::{Page, Table};

/// The most classes the confusion matrix shows; the others are summed into one row and column.
pub const MAX_CONFUSION_CLASSES: usize = 20;
/// The most differing slices listed per slice set (the largest).
pub const MAX_DIFFERING: usize = 50;

/// `value [low, high]`, or just the value when the interval is not finite.
fn with_interval(value: f64, low: f64, high: f64) -> String {
    if low.is_finite() && high.is_finite() {
        format!("{} [{}, {}]", num(value), num(low), num(high))
    } else {
        num(value)
    }
}

/// The first few of `names`, saying how many there are in all when cut.
fn list(names: &[String]) -> String {
    const FEW: usize = 6;
    if names.len() > FEW {
        format!("{} … ({} in all)", names[..FEW].join(", "), names.len())
    } else {
        names.join(", ")
    }
}

/// The metric a slice chart shows: accuracy for classification, RMSE for regression.
fn main_metric(evaluation: &Evaluation) -> &'static str {
    if evaluation.task == "classification" { "accuracy" } else { "rmse" }
}

/// Indices of the `cap` largest of `sizes` (ties to the first), back in their original order.
fn largest(sizes: &[usize], cap: usize, keep: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (Some(i) == keep, sizes[i]);
        key(b).cmp(&key(a)).then(a.cmp(&b))
    });
    order.truncate(cap);
    order.sort_unstable();
    order
}

/// Headline metrics, then per-class metrics when there are classes.
fn metrics(page: &mut Page, evaluation: &Evaluation) {
    page.section("Metrics");
    let mut table = Table::new(&["metric", "value", "95% interval"]);
    for (name, m) in evaluation.metrics.iter().filter(|(n, _)| !n.contains('/')) {
        let interval = if m.low.is_finite() && m.high.is_finite() {
            format!("{} to {}", num(m.low), num(m.high))
        } else {
            "n/a".into()
        };
        table = table.row(vec![name.clone(), num(m.value), interval]);
    }
    page.table(table);
    let Some(classes) = &evaluation.classes else { return };
    let mut table = Table::new(&["class", "precision", "recall", "f1"]);
    for class in classes {
        let cell = |metric: &str| {
            evaluation
                .metrics
                .get(&format!("{metric}/{class}"))
                .map_or("n/a".into(), |m| with_interval(m.value, m.low, m.high))
        };
        table = table.row(vec![class.clone(), cell("precision"), cell("recall"), cell("f1")]);
    }
    page.paragraph("Per class, with 95% intervals:").table(table);
}

/// Counts by true class (rows) and predicted class (columns); past [`MAX_CONFUSION_CLASSES`]
/// classes, the most frequent true classes and one row and column for all others.
fn confusion(page: &mut Page, classes: &[String], counts: &[Vec<f64>]) {
    let k = classes.len().min(counts.len());
    let support: Vec<usize> = counts[..k].iter().map(|r| r.iter().sum::<f64>() as usize).collect();
    let kept =
        if k > MAX_CONFUSION_CLASSES { largest(&support, MAX_CONFUSION_CLASSES - 1, None) } else { (0..k).collect() };
    let others = k > kept.len();
    // Each class's position in the table: its own, or the last ("others").
    let slot: Vec<usize> = (0..k).map(|c| kept.iter().position(|&x| x == c).unwrap_or(kept.len())).collect();
    let n = kept.len() + usize::from(others);
    let mut grid = vec![vec![0.0; n]; n];
    for (t, row) in counts[..k].iter().enumerate() {
        for (p, &c) in row.iter().enumerate().take(k) {
            grid[slot[t]][slot[p]] += c;
        }
    }
    let mut names: Vec<String> = kept.iter().map(|&c| classes[c].clone()).collect();
    if others {
        names.push(format!("({} others)", k - kept.len()));
    }
    let mut header = vec!["true \\ predicted".to_owned()];
    header.extend(names.iter().cloned());
    let mut table = Table::new(&header);
    for (i, row) in grid.iter().enumerate() {
        let mut cells = vec![names[i].clone()];
        // Counts in full: a million rows should not read 1.00e6.
        cells.extend(row.iter().map(|&c| if c.is_finite() && c.fract() == 0.0 { format!("{c:.0}") } else { num(c) }));
        table = table.row(cells);
    }
    page.section("Confusion matrix").paragraph("Rows are true classes, columns predicted classes.").table(table);
}

/// The main metric per slice of `set`, the slices that differ from the rest highlighted, and a
/// table of the slices that differ in any metric (marked when in the main one).
fn slices(page: &mut Page, set: &SliceSet, metric: &str) {
    page.section(format!("Slices by {}", set.by));
    let sizes: Vec<usize> = set.slices.iter().map(|s| s.rows).collect();
    let shown = largest(&sizes, MAX_BARS, None);
    let pick = |f: &dyn Fn(usize) -> f64| shown.iter().map(|&i| f(i)).collect::<Vec<f64>>();
    let get = |i: usize| set.slices[i].metrics.get(metric).copied();
    let labels: Vec<String> =
        shown.iter().map(|&i| format!("{} (n={})", set.slices[i].value, set.slices[i].rows)).collect();
    let values = pick(&|i| get(i).map_or(f64::NAN, |m| m.value));
    let low = pick(&|i| get(i).map_or(f64::NAN, |m| m.low));
    let high = pick(&|i| get(i).map_or(f64::NAN, |m| m.high));
    let highlight: Vec<bool> = shown.iter().map(|&i| set.slices[i].differs.iter().any(|d| d == metric)).collect();
    let mut chart = bars_with_intervals(&format!("{metric} by {}", set.by), &labels, &values, &low, &high, &highlight);
    chart = chart.note(format!(
        "{metric} per slice with its 95% interval; highlighted: the slice's difference to the rest of the data has a 95% \
         interval excluding zero"
    ));
    if shown.len() < set.slices.len() {
        chart = chart.note(format!(
            "the {} largest of {} slices shown; {} left out",
            shown.len(),
            set.slices.len(),
            set.slices.len() - shown.len()
        ));
    }
    page.chart(chart);
    let differing: Vec<usize> = (0..set.slices.len()).filter(|&i| !set.slices[i].differs.is_empty()).collect();
    if differing.is_empty() {
        page.paragraph("No slice differs significantly from the rest of the data in any metric.");
        return;
    }
    let sizes: Vec<usize> = differing.iter().map(|&i| set.slices[i].rows).collect();
    let listed: Vec<usize> = largest(&sizes, MAX_DIFFERING, None).into_iter().map(|k| differing[k]).collect();
    let header =
        ["slice".to_owned(), "rows".into(), metric.into(), "difference to the rest".into(), "differs in".into()];
    let mut table = Table::new(&header);
    let cell = |m: Option<&Interval>| m.map_or("n/a".into(), |m| with_interval(m.value, m.low, m.high));
    for s in listed.iter().map(|&i| &set.slices[i]) {
        let cells = vec![
            s.value.clone(),
            s.rows.to_string(),
            cell(s.metrics.get(metric)),
            cell(s.difference.get(metric)),
            list(&s.differs),
        ];
        table = table.row_marked(cells, s.differs.iter().any(|d| d == metric));
    }
    page.paragraph(if listed.len() < differing.len() {
        format!(
            "{} slices differ significantly from the rest of the data in some metric; the {} largest:",
            differing.len(),
            listed.len()
        )
    } else {
        "Slices that differ significantly from the rest of the data in some metric:".to_owned()
    });
    page.table(table);
}

/// A group's label in charts.
fn group_label(g: &GroupRates) -> String {
    if g.baseline { format!("{} (baseline)", g.group) } else { g.group.clone() }
}

/// The groups' rates across thresholds, one chart per rate, and their AUCs.
fn fairness(page: &mut Page, f: &Fairness) {
    page.section(format!("Fairness by {}", f.column));
    page.paragraph(format!(
        "Rates per group at each threshold on the score of class `{}`, with 95% intervals; each group is compared with \
         the baseline group `{}`.",
        f.positive_class, f.baseline
    ));
    let mut table = Table::new(&["group", "rows", "positives", "auc", "gap to baseline", "rates that differ"]);
    for g in &f.groups {
        let cells = vec![
            group_label(g),
            g.rows.to_string(),
            g.positives.to_string(),
            with_interval(g.auc.value, g.auc.low, g.auc.high),
            if g.baseline { "—".into() } else { with_interval(g.auc.gap.value, g.auc.gap.low, g.auc.gap.high) },
            list(&g.differs),
        ];
        table = table.row_marked(cells, !g.differs.is_empty());
    }
    page.table(table);
    let sizes: Vec<usize> = f.groups.iter().map(|g| g.rows).collect();
    let base = f.groups.iter().position(|g| g.baseline);
    let shown = largest(&sizes, MAX_SERIES, base);
    let keys: Vec<String> = f.thresholds.iter().map(|t| format!("{t}")).collect();
    for rate in RATES {
        let at = |g: &GroupRates, pick: fn(&crate::fairness::Rate) -> f64| -> Vec<f64> {
            keys.iter().map(|k| g.rates.get(k).and_then(|r| r.get(rate)).map_or(f64::NAN, pick)).collect()
        };
        let series: Vec<(String, Vec<f64>)> =
            shown.iter().map(|&i| (group_label(&f.groups[i]), at(&f.groups[i], |r| r.value))).collect();
        let bands: Vec<(Vec<f64>, Vec<f64>)> =
            shown.iter().map(|&i| (at(&f.groups[i], |r| r.low), at(&f.groups[i], |r| r.high))).collect();
        let mut chart = lines(&format!("{rate} by {}", f.column), "threshold", &f.thresholds, &series, Some(&bands));
        if shown.len() < f.groups.len() {
            chart = chart.note(format!("the {} largest of {} groups shown", shown.len(), f.groups.len()));
        }
        page.chart(chart);
    }
    let labels: Vec<String> = shown.iter().map(|&i| group_label(&f.groups[i])).collect();
    let auc = |pick: fn(&GroupRates) -> f64| shown.iter().map(|&i| pick(&f.groups[i])).collect::<Vec<f64>>();
    let highlight: Vec<bool> = shown.iter().map(|&i| f.groups[i].auc.significant).collect();
    let chart = bars_with_intervals(
        &format!("auc by {}", f.column),
        &labels,
        &auc(|g| g.auc.value),
        &auc(|g| g.auc.low),
        &auc(|g| g.auc.high),
        &highlight,
    );
    page.chart(chart.note("highlighted: the gap to the baseline's AUC has a 95% interval excluding zero"));
}

/// The page of `evaluation`, with `fairness` when given.
pub fn evaluation_page(evaluation: &Evaluation, fairness_rates: Option<&Fairness>) -> Page {
    let mut page = Page::new("Model evaluation");
    page.paragraph(format!(
        "{} rows, {}; 95% intervals from {} bootstrap resamples.",
        evaluation.rows, evaluation.task, evaluation.resamples
    ));
    metrics(&mut page, evaluation);
    if let (Some(classes), Some(counts)) = (&evaluation.classes, &evaluation.confusion) {
        confusion(&mut page, classes, counts);
    }
    let metric = main_metric(evaluation);
    for set in &evaluation.slices {
        slices(&mut page, set, metric);
    }
    if let Some(f) = fairness_rates {
        fairness(&mut page, f);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{Scored, evaluate};
    use crate::slice::Slicing;

    /// 600 rows of 3 classes: the true class is predicted with p = .7 except on slice values
    /// divisible by 7, where a wrong class gets it.
    fn scored(slices: usize) -> (Scored, Slicing) {
        let (mut labels, mut probs, mut codes) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..600u32 {
            let y = i % 3;
            let s = i % slices as u32;
            let predicted = if s.is_multiple_of(7) { (y + 1) % 3 } else { y };
            let mut p = [0.15f32; 3];
            p[predicted as usize] = 0.7;
            labels.push(y);
            probs.extend(p);
            codes.push(s);
        }
        let classes = vec!["a".into(), "b".into(), "<c>".into()];
        let slicing = Slicing::new("s", (0..slices).map(|s| format!("v{s}")).collect(), codes);
        (Scored::Classes { classes, labels, probs }, slicing)
    }

    #[test]
    fn the_page_has_a_chart_per_slice_set_and_caps_its_bars() {
        let (scored, slicing) = scored(80);
        let e = evaluate(&scored, &[slicing], 50, 1).expect("evaluation");
        let page = evaluation_page(&e, None);
        let charts: Vec<_> = page.charts().collect();
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].marks(), MAX_BARS);
        assert!(charts[0].notes().iter().any(|n| n == "the 50 largest of 80 slices shown; 30 left out"));
        let html = page.render();
        assert!(html.contains("accuracy by s") && html.contains("&lt;c&gt;"));
        assert!(html.contains("slices differ significantly from the rest of the data in some metric; the 50 largest"));
    }

    #[test]
    fn a_large_confusion_matrix_folds_its_rare_classes() {
        let classes: Vec<String> = (0..30).map(|c| format!("c{c}")).collect();
        let counts: Vec<Vec<f64>> =
            (0..30).map(|t| (0..30).map(|p| if t == p { 100.0 - t as f64 } else { 1.0 }).collect()).collect();
        let mut page = Page::new("t");
        confusion(&mut page, &classes, &counts);
        let html = page.render();
        // 19 classes kept (c0..c18, the most frequent), 11 folded (c19..c29): their diagonal,
        // the sum of 100 - t = 1100 - 264, and the 11 · 10 ones between them: 946.
        assert!(html.contains("(11 others)") && !html.contains(">c19<"));
        assert!(html.contains("<td class=\"n\">946</td></tr>"), "{html}");
        assert_eq!(largest(&[5, 9, 1, 9], 2, None), vec![1, 3]);
        assert_eq!(largest(&[5, 9, 1, 9], 2, Some(2)), vec![1, 2]);
    }
}
