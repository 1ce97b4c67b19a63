//! The report page of a drift comparison: the data set's verdict, a table of every column's test,
//! and each column's reference and current distributions overlaid.

use crate::drift::{ColumnDrift, DatasetDrift, Histogram};

use super::chart::{Chart, num};
use super::histogram::{Bins, overlaid_histograms};
use super::page::{Page, Table};

/// The most columns that get a distribution chart; drifted columns come first.
pub const MAX_DRIFT_CHARTS: usize = 60;

/// The overlaid reference and current shares of `histogram`: on its edges when it has them, on
/// its labels otherwise.
pub fn histogram_chart(title: &str, histogram: &Histogram) -> Chart {
    let bins = match &histogram.edges {
        Some(edges) => Bins::Edges(edges),
        None => Bins::Labels(&histogram.labels),
    };
    overlaid_histograms(title, bins, &histogram.reference, &histogram.current)
}

/// The chart of one column, titled with its verdict.
fn column_chart(c: &ColumnDrift) -> Chart {
    let verdict = if c.drifted { "drifted" } else { "no drift" };
    let title = format!("{}: {verdict} ({} {})", c.column, c.test.label(), num(c.statistic));
    histogram_chart(&title, &c.histogram)
        .note(format!("{} reference and {} current values", c.reference_rows, c.current_rows))
}

/// The page of `drift`.
pub fn drift_page(drift: &DatasetDrift) -> Page {
    let mut page = Page::new("Data drift");
    let n = drift.columns.len();
    page.paragraph(format!(
        "{} of {n} columns drifted ({}%); the data set counts as drifted when at least {}% of its columns do: {}.",
        drift.drifted_columns,
        num(drift.share * 100.0),
        num(drift.threshold * 100.0),
        if drift.drifted { "it drifted" } else { "it did not drift" }
    ));
    page.pairs(vec![
        ("columns tested".into(), n.to_string()),
        ("drifted columns".into(), drift.drifted_columns.to_string()),
        ("share drifted".into(), num(drift.share)),
        ("threshold".into(), num(drift.threshold)),
        ("data set drifted".into(), if drift.drifted { "yes" } else { "no" }.into()),
    ]);
    page.section("Columns");
    let mut table = Table::new(&[
        "column",
        "kind",
        "test",
        "statistic",
        "p-value",
        "threshold",
        "drifted",
        "reference rows",
        "current rows",
    ]);
    for c in &drift.columns {
        let cells = vec![
            c.column.clone(),
            c.kind.to_owned(),
            c.test.label().to_owned(),
            num(c.statistic),
            c.p_value.map_or("—".into(), num),
            num(c.threshold),
            if c.drifted { "yes" } else { "no" }.into(),
            c.reference_rows.to_string(),
            c.current_rows.to_string(),
        ];
        table = table.row_marked(cells, c.drifted);
    }
    page.table(table);
    page.section("Distributions");
    let (drifted, steady): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| drift.columns[i].drifted);
    let mut charted: Vec<usize> = drifted.into_iter().chain(steady).take(MAX_DRIFT_CHARTS).collect();
    charted.sort_unstable();
    if charted.len() < n {
        page.paragraph(format!(
            "Distributions of {} of the {n} columns, the drifted ones first; the table lists them all.",
            charted.len()
        ));
    }
    for i in charted {
        page.chart(column_chart(&drift.columns[i]));
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::dataset_drift;
    use crate::frame::{Column, Frame};

    fn frame(columns: usize, rows: usize, shift: f64) -> Frame {
        Frame {
            names: (0..columns).map(|c| format!("x{c}")).collect(),
            columns: (0..columns)
                .map(|c| {
                    Column::Numeric((0..rows).map(|r| ((r * (c + 3)) % 97) as f64 + shift * (c % 2) as f64).collect())
                })
                .collect(),
            rows,
        }
    }

    #[test]
    fn every_column_gets_a_row_and_a_chart() {
        let d = dataset_drift(&frame(4, 300, 0.0), &frame(4, 300, 40.0), None, None).expect("drift");
        let page = drift_page(&d);
        let charts: Vec<_> = page.charts().collect();
        assert_eq!(charts.len(), 4);
        assert!(charts.iter().all(|c| c.kind() == "histograms" && c.marks() == 2));
        assert!(charts[1].title().starts_with("x1: drifted"), "{}", charts[1].title());
        let html = page.render();
        assert_eq!(html.matches(r#"<tr class="marked">"#).count(), d.drifted_columns);
        assert!(html.contains("Kolmogorov–Smirnov"));
    }

    #[test]
    fn categorical_histograms_chart_their_labels() {
        let h = Histogram {
            edges: None,
            labels: vec!["a".into(), "b".into()],
            reference: vec![0.5, 0.5],
            current: vec![0.9, 0.1],
        };
        let c = histogram_chart("cat", &h);
        assert!(c.svg().contains(">a</text>") && c.marks() == 2);
    }
}
