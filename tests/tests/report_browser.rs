//! The report pages of `shoal-analysis` in a real headless browser (see `shoal_tests::browser`):
//! every chart kind renders and the page's own check passes, and a page with a broken script or
//! with missing chart marks is caught by the same check.

use shoal_analysis::drift::dataset_drift;
use shoal_analysis::evaluate::{Scored, evaluate};
use shoal_analysis::fairness::fairness;
use shoal_analysis::report::{
    Bins, Page, bars_with_intervals, drift_page, evaluation_page, lines, overlaid_histograms, stream,
};
use shoal_analysis::slice::Slicing;
use shoal_analysis::{Column, Frame};
use shoal_tests::browser::{assert_ok, browser, dump, folder, root_attr};

/// An evaluation of 900 rows of two classes, sliced two ways, with fairness by region.
fn evaluation() -> Page {
    let (mut labels, mut probs, mut region, mut size, mut positive, mut score) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..900u32 {
        let y = i % 2;
        let r = (i / 2) % 3;
        // Region 2 is right on one row in three, the others on four in five.
        let right = if r == 2 { i % 3 == 0 } else { i % 5 != 0 };
        let p1: f32 = if right == (y == 1) { 0.8 } else { 0.3 };
        labels.push(y);
        probs.extend([1.0 - p1, p1]);
        region.push(r);
        size.push(i % 4);
        positive.push(y == 1);
        score.push(f64::from(p1));
    }
    let scored = Scored::Classes { classes: vec!["no".into(), "yes".into()], labels, probs };
    let by_region = Slicing::new("region", vec!["north".into(), "south".into(), "<east>".into()], region);
    let by_size = Slicing::new("size", (0..4).map(|s| format!("s{s}")).collect(), size);
    let e = evaluate(&scored, &[by_region.clone(), by_size], 100, 3).expect("evaluation");
    let f = fairness(&by_region, &positive, &score, "yes", None, 100, 4).expect("fairness");
    evaluation_page(&e, Some(&f))
}

/// Drift between two frames of a numeric and a categorical column, the current one shifted.
fn drift() -> Page {
    let frame = |shift: f64, skew: usize| {
        let x: Vec<f64> = (0..400).map(|i| f64::from((i * 37) % 101) + shift).collect();
        let colour: Vec<&str> = (0..400).map(|i| ["red", "green", "blue"][(i + i % (skew + 1)) % 3]).collect();
        Frame {
            names: vec!["x".into(), "colour".into()],
            columns: vec![Column::Numeric(x), Column::categorical(&colour)],
            rows: 400,
        }
    };
    let d = dataset_drift(&frame(0.0, 0), &frame(30.0, 2), None, None).expect("drift");
    drift_page(&d)
}

/// One chart of each kind, with values that are not finite among the data.
fn primitives() -> Page {
    let mut page = Page::new("Charts");
    let labels: Vec<String> = ["age", "income", "region"].map(String::from).to_vec();
    page.section("Importances").chart(bars_with_intervals(
        "importance",
        &labels,
        &[0.4, 0.25, f64::NAN],
        &[0.35, 0.2, 0.0],
        &[0.45, 0.3, 0.1],
        &[true, false, false],
    ));
    let x: Vec<f64> = (1..=9).map(|t| f64::from(t) / 10.0).collect();
    let series = vec![("a".to_owned(), x.iter().map(|t| 1.0 - t).collect()), ("b".to_owned(), vec![f64::NAN; 9])];
    page.section("Curves").chart(lines("tpr", "threshold", &x, &series, None));
    page.section("Distribution").chart(overlaid_histograms(
        "x",
        Bins::Edges(&[0.0, 1.0, 2.0, 3.0]),
        &[0.2, 0.5, 0.3],
        &[0.1, f64::INFINITY, 0.6],
    ));
    let points: Vec<(usize, f64)> = (0..50).map(|i| (i * 100, if i < 25 { 0.1 } else { 0.4 })).collect();
    page.section("Stream").chart(stream("error rate", &points, &[(2530, "adwin drift".to_owned())]));
    page
}

#[test]
fn report_pages_render_in_a_browser_with_their_charts() {
    let Some(browser) = browser() else { return };
    let (dir, _temp) = folder("render");
    let page = evaluation();
    let dom = dump(&browser, &dir, "evaluation", &page.render());
    assert_ok(&dom, page.charts().count(), &["bars", "lines"]);
    // Two slice sets, seven fairness rates, the AUCs.
    assert_eq!(page.charts().count(), 10);
    let page = drift();
    let dom = dump(&browser, &dir, "drift", &page.render());
    assert_ok(&dom, page.charts().count(), &["histograms"]);
    let page = primitives();
    let dom = dump(&browser, &dir, "primitives", &page.render());
    assert_ok(&dom, page.charts().count(), &["bars", "lines", "histograms", "stream"]);
    assert_eq!(root_attr(&dom, "data-charts").as_deref(), Some("4"));
}

#[test]
fn a_broken_page_is_caught() {
    let Some(browser) = browser() else { return };
    let (dir, _temp) = folder("broken");
    // A script that throws before the page's own check runs.
    let html = evaluation().render().replacen("<main>", "<main>\n<script>null.answer;</script>", 1);
    let dom = dump(&browser, &dir, "throws", &html);
    assert_eq!(root_attr(&dom, "data-report").as_deref(), Some("error"));
    let message = root_attr(&dom, "data-error").expect("the error message");
    assert!(message.contains("TypeError"), "{message}");
    // A chart whose marks did not make it into the document: the check itself throws.
    let html = primitives().render().replacen(r#"<rect class="mark""#, r#"<rect class="lost""#, 1);
    let dom = dump(&browser, &dir, "marks", &html);
    assert_eq!(root_attr(&dom, "data-report").as_deref(), Some("error"));
    let message = root_attr(&dom, "data-error").expect("the error message");
    assert!(message.contains("bars chart 1 (importance): 1 of 2 marks in the document"), "{message}");
}
