//! Shared fixtures of the drift tests, and tests of `column_drift` and `dataset_drift`.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

use super::*;

/// Twenty values from N(0, 1): `np.round(np.random.default_rng(97).normal(0, 1, 20), 2)`.
pub(crate) const A: [f64; 20] = [
    -0.26, 1.16, -0.43, -0.99, -1.27, -0.92, -0.49, -1.35, 1.01, -1.33, 1.08, -0.46, -0.54, -1.73, 0.31, 0.75, 0.07,
    -0.12, -0.24, 0.03,
];
/// The next twenty values of the same generator.
pub(crate) const B: [f64; 20] = [
    -0.48, 0.55, 1.29, 0.94, -2.15, -0.74, -0.67, 0.52, -1.8, -0.88, 0.15, -1.76, 1.35, 1.03, -0.95, -0.33, -0.36,
    -0.59, -1.32, 1.82,
];

/// `v` sorted ascending.
pub(crate) fn sorted(v: &[f64]) -> Vec<f64> {
    super::sort::sorted(v.to_vec())
}

/// `v` + `by`, as numpy's `B + 1.5` computes it.
pub(crate) fn shifted(v: &[f64], by: f64) -> Vec<f64> {
    v.iter().map(|x| x + by).collect()
}

/// Asserts `got` is within `rel` (relative) of `want`.
pub(crate) fn close(got: f64, want: f64, rel: f64) {
    assert!((got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE), "got {got:e}, want {want:e}");
}

fn normal(seed: u64, n: usize, mean: f64) -> Column {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = Normal::new(mean, 1.0).expect("normal");
    Column::Numeric((0..n).map(|_| d.sample(&mut rng)).collect())
}

fn categories(seed: u64, n: usize, weights: &[f64]) -> Column {
    let mut rng = StdRng::seed_from_u64(seed);
    let total: f64 = weights.iter().sum();
    let cells: Vec<String> = (0..n)
        .map(|_| {
            let mut u = rand::Rng::random::<f64>(&mut rng) * total;
            let i = weights.iter().position(|&w| {
                u -= w;
                u < 0.0
            });
            format!("c{}", i.unwrap_or(weights.len() - 1))
        })
        .collect();
    Column::categorical(&cells)
}

#[test]
fn same_distribution_does_not_drift_and_a_shift_does() {
    // 2000 rows each: enough for every distance's sampling noise to stay well under 0.1.
    let (reference, same, moved) = (normal(1, 2000, 0.0), normal(2, 2000, 0.0), normal(3, 2000, 1.0));
    for test in [Test::Ks, Test::Wasserstein, Test::JensenShannon, Test::Psi, Test::Hellinger] {
        let d = column_drift("x", &reference, &same, Some(test)).expect("same");
        assert!(!d.drifted, "{test:?} on the same distribution: {d:?}");
        assert_eq!((d.kind, d.reference_rows, d.current_rows), ("numeric", 2000, 2000));
        let d = column_drift("x", &reference, &moved, Some(test)).expect("moved");
        assert!(d.drifted, "{test:?} on a shifted mean: {d:?}");
    }
    let (reference, same) = (categories(4, 800, &[5.0, 3.0, 2.0]), categories(5, 800, &[5.0, 3.0, 2.0]));
    let moved = categories(6, 800, &[3.0, 3.0, 4.0]);
    for test in [Test::ChiSquare, Test::JensenShannon, Test::Psi, Test::Hellinger] {
        let d = column_drift("g", &reference, &same, Some(test)).expect("same");
        assert!(!d.drifted, "{test:?} on the same categories: {d:?}");
        assert!(column_drift("g", &reference, &moved, Some(test)).expect("moved").drifted, "{test:?} moved");
    }
    let (reference, same, moved) =
        (categories(7, 500, &[6.0, 4.0]), categories(8, 500, &[6.0, 4.0]), categories(9, 500, &[4.0, 6.0]));
    assert!(!column_drift("b", &reference, &same, Some(Test::Z)).expect("same").drifted);
    assert!(column_drift("b", &reference, &moved, Some(Test::Z)).expect("moved").drifted);
}

#[test]
fn the_chosen_test_and_its_outputs() {
    let d = column_drift("x", &Column::Numeric(A.to_vec()), &Column::Numeric(shifted(&B, 1.5)), None).expect("ks");
    assert_eq!((d.test, d.kind, d.threshold), (Test::Ks, "numeric", 0.05));
    close(d.statistic, 0.6, 1e-15);
    close(d.p_value.expect("p"), 0.0007252860301701252, 1e-12);
    assert!(d.drifted);
    let edges = d.histogram.edges.as_ref().expect("numeric edges");
    assert_eq!((edges.len(), d.histogram.labels.len(), d.histogram.reference.len()), (8, 7, 7));
    // A numeric flag counts as categorical, its values as the categories.
    let flag = |v: &[f64]| Column::Numeric(v.to_vec());
    let d = column_drift("f", &flag(&[0.0, 1.0, 1.0, 0.0, 1.0, 1.0]), &flag(&[1.0, 1.0, 0.0]), None).expect("z");
    assert_eq!((d.test, d.kind), (Test::Z, "categorical"));
    assert_eq!(d.histogram.labels, ["0", "1"]);
    assert_eq!(d.histogram.edges, None);
    let json = serde_json::to_value(&d).expect("json");
    let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
    for key in ["column", "kind", "test", "statistic", "p_value", "threshold", "drifted", "reference_rows"] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert_eq!(json["test"], "z");
    assert_eq!(json["histogram"]["labels"][1], "1");
}

#[test]
fn bad_columns_are_errors_naming_them() {
    let num = Column::Numeric(A.to_vec());
    let text = Column::categorical(&["a", "b", "c", "a", "b", "c"]);
    let err = |r: &Column, c: &Column, t: Option<Test>| column_drift("col", r, c, t).expect_err("an error").to_string();
    assert_eq!(err(&num, &text, None), "column `col`: is numeric in the reference but not in the current data");
    assert_eq!(err(&text, &num, None), "column `col`: is numeric in the current data but not in the reference");
    assert!(err(&text, &text, Some(Test::Ks)).contains("is categorical; the Kolmogorov–Smirnov test needs a numeric"));
    assert!(err(&text, &text, Some(Test::Wasserstein)).contains("needs a numeric column"));
    assert!(err(&text, &text, Some(Test::Z)).contains("has 3 categories in the reference and current data together"));
    assert_eq!(err(&Column::Numeric(vec![]), &num, None), "column `col`: has no values in the reference");
    let empty = Column::categorical::<&str>(&[]);
    assert_eq!(err(&text, &empty, None), "column `col`: has no values in the current data");
    let four = Column::Numeric(vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(
        err(&four, &num, None),
        "column `col`: has 4 values in the reference; the Kolmogorov–Smirnov test needs at least 5"
    );
    // The distances take any size.
    assert!(column_drift("col", &four, &num, Some(Test::Psi)).is_ok());
}

#[test]
fn data_sets_drift_when_half_their_columns_do() {
    let frame = |cols: Vec<Column>| Frame {
        names: vec!["a".into(), "b".into(), "c".into()],
        rows: cols[0].len(),
        columns: cols,
    };
    let reference = frame(vec![normal(1, 600, 0.0), normal(2, 600, 0.0), normal(3, 600, 0.0)]);
    let current = frame(vec![normal(4, 600, 0.0), normal(5, 600, 1.0), normal(6, 600, 0.0)]);
    let d = dataset_drift(&reference, &current, None, None).expect("drift");
    assert_eq!(d.columns.iter().map(|c| c.drifted).collect::<Vec<_>>(), [false, true, false]);
    assert_eq!((d.drifted_columns, d.threshold, d.drifted), (1, 0.5, false));
    close(d.share, 1.0 / 3.0, 1e-15);
    let two = ["b".to_owned(), "c".to_owned()];
    let d = dataset_drift(&reference, &current, Some(&two), Some(Test::Wasserstein)).expect("two");
    assert_eq!((d.columns.len(), d.drifted_columns, d.share, d.drifted), (2, 1, 0.5, true));
    assert_eq!(d.columns[0].test, Test::Wasserstein);
    let mut fewer = current.clone();
    fewer.names[2] = "z".into();
    let err = dataset_drift(&reference, &fewer, None, None).expect_err("missing").to_string();
    assert_eq!(err, "column `c`: is not in the current data");
    let err = dataset_drift(&fewer, &reference, None, None).expect_err("missing").to_string();
    assert_eq!(err, "column `z`: is not in the current data");
    let err = dataset_drift(&reference, &fewer, Some(&["z".to_owned()]), None).expect_err("missing").to_string();
    assert_eq!(err, "column `z`: is not in the reference data");
    assert!(dataset_drift(&reference, &current, Some(&[]), None).is_err());
    let twice = ["a".to_owned(), "a".to_owned()];
    assert!(dataset_drift(&reference, &current, Some(&twice), None).is_err());
}
