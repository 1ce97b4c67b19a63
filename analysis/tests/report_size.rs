//! Report pages stay small: charts draw aggregates and cap their bars, series, bins and points,
//! so a page's size follows the slices, groups and columns (capped too), not the rows.

use shoal_analysis::drift::dataset_drift;
use shoal_analysis::evaluate::{Scored, evaluate};
use shoal_analysis::fairness::fairness;
use shoal_analysis::report::{drift_page, evaluation_page};
use shoal_analysis::slice::Slicing;
use shoal_analysis::{Column, Frame};

/// The budget the requirement sets for one page.
const BUDGET: usize = 300 * 1024;

/// The evaluation page of `rows` rows of three classes, sliced by 300 ids, 12 regions and their
/// cross, with fairness across 40 groups; its size in bytes.
fn evaluation_bytes(rows: u32) -> usize {
    let (mut labels, mut probs, mut positive, mut score) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut id, mut region, mut group) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rows {
        let y = i % 3;
        let right = (i / 7) % 4 != 0;
        let mut p = [0.2f32; 3];
        p[if right { y } else { (y + 1) % 3 } as usize] = 0.6;
        labels.push(y);
        probs.extend(p);
        positive.push(y == 0);
        score.push(f64::from(p[0]));
        id.push(i % 300);
        region.push((i / 300) % 12);
        group.push((i / 11) % 40);
    }
    let named = |name: &str, n: u32, codes: Vec<u32>| {
        Slicing::new(name, (0..n).map(|k| format!("{name}-{k}")).collect(), codes)
    };
    let cross = named("id*region", 3600, id.iter().zip(&region).map(|(a, b)| a * 12 + b).collect());
    let slicings = [named("id", 300, id), named("region", 12, region), cross];
    let scored = Scored::Classes { classes: vec!["a".into(), "b".into(), "c".into()], labels, probs };
    let e = evaluate(&scored, &slicings, 30, 1).expect("evaluation");
    let f = fairness(&named("group", 40, group), &positive, &score, "a", None, 30, 2).expect("fairness");
    evaluation_page(&e, Some(&f)).render().len()
}

/// The drift page of 30 columns, 20 numeric and 10 of 80 categories (charted as 50 bars), of
/// `rows` rows each; its size in bytes.
fn drift_bytes(rows: usize) -> usize {
    let frame = |shift: usize| {
        let mut names = Vec::new();
        let mut columns = Vec::new();
        for c in 0..30 {
            names.push(format!("column_{c}"));
            columns.push(if c < 20 {
                Column::Numeric((0..rows).map(|r| ((r * (c + 7) + shift) % 1009) as f64 / 10.0).collect())
            } else {
                let cells: Vec<String> =
                    (0..rows).map(|r| format!("category {}", (r * (c + 1) + shift) % 80)).collect();
                Column::categorical(&cells)
            });
        }
        Frame { names, columns, rows }
    };
    let d = dataset_drift(&frame(0), &frame(13), None, None).expect("drift");
    drift_page(&d).render().len()
}

#[test]
fn an_evaluation_page_is_small_and_does_not_grow_with_rows() {
    let (small, large) = (evaluation_bytes(7_200), evaluation_bytes(72_000));
    eprintln!("evaluation page: {small} bytes at 7200 rows, {large} at 72000");
    assert!(large < BUDGET, "{large} bytes");
    // Ten times the rows: the row counts printed get a digit longer and a few more slices differ
    // significantly (more power), within the caps; nothing per row.
    assert!(large.abs_diff(small) * 10 < small, "{small} -> {large}");
}

#[test]
fn a_drift_page_of_30_columns_is_small() {
    let (small, large) = (drift_bytes(2_000), drift_bytes(50_000));
    eprintln!("drift page: {small} bytes at 2000 rows, {large} at 50000");
    assert!(large < BUDGET, "{large} bytes");
    // Sturges' rule adds a bin per doubling of the rows, up to 50; nothing else grows.
    assert!(large < small * 5 / 4, "{small} -> {large}");
}
