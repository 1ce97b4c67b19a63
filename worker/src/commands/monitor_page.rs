//! The HTML page of `monitor --html` for one window: the library's drift page, with the model's
//! drift and its error stream with alarms. Aggregates only: no page holds a row of the data.

use shoal_analysis::report::{Page, drift_page, histogram_chart, stream};

use super::model::ModelDrift;
use super::monitor::Window;

/// `monitor`'s page for one window.
pub fn page(w: &Window) -> Page {
    let mut page = drift_page(&w.data);
    page.paragraph(format!(
        "Reference {}, current {} (window {}, {} rows): {}.",
        w.reference,
        w.current,
        w.window,
        w.rows,
        if w.drifted { format!("drifted ({})", w.reasons.join(", ")) } else { "no drift".into() }
    ));
    if let Some(m) = &w.model {
        model(&mut page, m);
    }
    page
}

fn model(page: &mut Page, m: &ModelDrift) {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    page.section("Model");
    page.pairs(vec![
        ("artifact".into(), format!("{} ({})", m.artifact, m.format)),
        ("prediction test".into(), format!("{} {:.4}", m.prediction.test.label(), m.prediction.statistic)),
        ("predictions drifted".into(), yes(m.prediction.drifted)),
    ]);
    page.chart(histogram_chart("predictions", &m.prediction.histogram));
    if let Some(d) = &m.margin_density {
        page.pairs(vec![
            ("margin".into(), d.margin.to_string()),
            ("margin density, reference".into(), format!("{:.4}", d.reference)),
            ("margin density, current".into(), format!("{:.4}", d.current)),
            ("margin density drifted".into(), yes(d.drift.drifted)),
        ]);
    }
    if let Some(e) = &m.errors {
        page.section("Error stream");
        page.paragraph(format!(
            "Error rate {:.4} over {} rows{}; detectors: {}.",
            e.error_rate,
            e.rows,
            e.reference_error_rate.map_or(String::new(), |r| format!(" (reference {r:.4})")),
            e.detectors.join(", ")
        ));
        let points: Vec<(usize, f64)> = e.series.iter().map(|p| (p.row, p.rate)).collect();
        let alarms: Vec<(usize, String)> =
            e.alarms.iter().map(|a| (a.row, format!("{} {}", a.detector, a.kind))).collect();
        page.chart(stream("error rate", &points, &alarms));
    }
}
