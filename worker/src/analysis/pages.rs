//! The HTML page of `evaluate --html` and `[evaluate]` jobs: the library's evaluation page, with
//! the explanations only this command has, drawn from the same report the JSON holds. Aggregates
//! only: no page holds a row of the data.

use shoal_analysis::report::{Page, Table, bars_with_intervals, evaluation_page, lines};

use super::evaluate::Report;
use super::explain::Explanation;

/// `evaluate`'s page.
pub fn evaluation(report: &Report) -> Page {
    let mut page = evaluation_page(&report.evaluation, report.fairness.as_ref());
    page.paragraph(format!("Artifact {} ({}), data {}.", report.artifact, report.format, report.data));
    if let Some(e) = &report.explanation {
        explanation(&mut page, e);
    }
    page
}

fn explanation(page: &mut Page, e: &Explanation) {
    let imp = &e.importance.importances;
    page.section("Feature importance");
    page.paragraph(format!(
        "The drop in {} when one feature's values are shuffled ({} shuffles each, {} rows), with 95% intervals.",
        if e.importance.higher_is_better { "accuracy" } else { "RMSE (its rise)" },
        e.importance.repeats,
        e.rows
    ));
    let labels: Vec<String> = imp.iter().map(|i| i.feature.clone()).collect();
    let pick = |f: fn(&shoal_analysis::explain::Importance) -> f64| imp.iter().map(f).collect::<Vec<_>>();
    page.chart(bars_with_intervals(
        "permutation importance",
        &labels,
        &pick(|i| i.importance),
        &pick(|i| i.low),
        &pick(|i| i.high),
        &[],
    ));
    let ig = &e.integrated_gradients;
    page.section("Integrated gradients");
    page.paragraph(format!(
        "Mean |attribution| of the {} of {} samples (baseline: {}); the largest completeness error was {:.2e}, {} samples unconverged.",
        ig.target,
        ig.samples.len(),
        ig.baseline,
        ig.max_error,
        ig.unconverged
    ));
    let labels: Vec<String> = ig.features.iter().map(|f| f.feature.clone()).collect();
    let values: Vec<f64> = ig.features.iter().map(|f| f.mean_abs).collect();
    page.chart(bars_with_intervals("mean |attribution|", &labels, &values, &[], &[], &[]));
    for s in &ig.slices {
        let mut table = Table::new(&[&format!("{} slice", s.by), "rows", "top features by mean |attribution|"]);
        for slice in &s.slices {
            let top: Vec<String> =
                slice.features.iter().take(3).map(|f| format!("{} {:.3}", f.feature, f.mean_abs)).collect();
            table = table.row(vec![slice.slice.clone(), slice.rows.to_string(), top.join(", ")]);
        }
        page.table(table);
    }
    page.section("Sensitivity");
    page.paragraph(format!(
        "The mean {} as one feature sweeps its range with the others held, between the 10th and 90th percentiles over rows.",
        e.sensitivity.target
    ));
    for c in &e.sensitivity.curves {
        let bands = [(c.low.clone(), c.high.clone())];
        page.chart(lines(&c.feature, &c.feature, &c.values, &[("mean".into(), c.mean.clone())], Some(&bands)));
    }
    if let Some(r) = &e.residuals {
        page.section("Residuals");
        page.paragraph(format!(
            "Residuals (target − prediction) have mean {:.4} and standard deviation {:.4}; their correlation with each feature:",
            r.mean, r.std
        ));
        let labels: Vec<String> = r.per_feature.iter().map(|f| f.feature.clone()).collect();
        let pearson: Vec<f64> = r.per_feature.iter().map(|f| f.pearson).collect();
        page.chart(bars_with_intervals("Pearson correlation with the residuals", &labels, &pearson, &[], &[], &[]));
    }
}
