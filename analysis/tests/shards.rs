//! The shards of a file, each read, sliced and summed on its own and then merged, give the
//! evaluation and fairness rates the whole file gives: the same slices, counts and metrics, and
//! the same intervals (the bootstrap draws on cells in key order, so only the order of float
//! additions differs).

use std::ops::Range;

use serde_json::Value;
use shoal_analysis::evaluate::{Moments, Partial, Scored, evaluate, evaluate_sums};
use shoal_analysis::fairness::{fairness, fairness_of, fairness_sums};
use shoal_analysis::slice::{Profile, Rule, SKETCH_POINTS, Slicing};
use shoal_analysis::{Column, Frame};

const ROWS: usize = 3000;
const SPECS: [&str; 3] = ["x", "region", "region*k"];

/// A small generator, so the test needs no seeded crate.
fn noise(i: usize, salt: u64) -> f64 {
    let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

struct Data {
    x: Vec<f64>,
    k: Vec<f64>,
    /// Region `c` appears only after row 700, so the first shard never sees it.
    region: Vec<&'static str>,
    labels: Vec<u32>,
    probs: Vec<f32>,
    targets: Vec<f64>,
    predictions: Vec<f64>,
}

fn data() -> Data {
    let mut d = Data {
        x: Vec::new(),
        k: Vec::new(),
        region: Vec::new(),
        labels: Vec::new(),
        probs: Vec::new(),
        targets: Vec::new(),
        predictions: Vec::new(),
    };
    for i in 0..ROWS {
        let x = noise(i, 1) * 10.0;
        let region = match (i, noise(i, 2)) {
            (700.., r) if r < 0.3 => "c",
            (_, r) if r < 0.6 => "a",
            _ => "b",
        };
        let y = u32::from(noise(i, 3) < 0.5);
        // Region b's model is worse.
        let skill = if region == "b" { 0.55 } else { 0.8 };
        let p1 = if (noise(i, 4) < skill) == (y == 1) { 0.5 + 0.5 * noise(i, 5) } else { 0.5 * noise(i, 5) };
        d.x.push(x);
        d.k.push(f64::from(i as u32 % 3));
        d.region.push(region);
        d.labels.push(y);
        d.probs.extend([1.0 - p1 as f32, p1 as f32]);
        d.targets.push(x * 2.0 + noise(i, 6));
        d.predictions.push(x * 2.0 + 0.5 + if region == "b" { noise(i, 7) } else { 0.0 });
    }
    d
}

impl Data {
    fn frame(&self, rows: Range<usize>) -> Frame {
        Frame {
            names: vec!["x".into(), "k".into(), "region".into()],
            columns: vec![
                Column::Numeric(self.x[rows.clone()].to_vec()),
                Column::Numeric(self.k[rows.clone()].to_vec()),
                Column::categorical(&self.region[rows.clone()]),
            ],
            rows: rows.len(),
        }
    }

    fn classes(&self, rows: Range<usize>) -> Scored {
        Scored::Classes {
            classes: vec!["no".into(), "yes".into()],
            labels: self.labels[rows.clone()].to_vec(),
            probs: self.probs[rows.start * 2..rows.end * 2].to_vec(),
        }
    }

    fn values(&self, rows: Range<usize>) -> Scored {
        Scored::Values { targets: self.targets[rows.clone()].to_vec(), predictions: self.predictions[rows].to_vec() }
    }
}

const SHARDS: [Range<usize>; 3] = [0..700, 700..2000, 2000..ROWS];

/// Every shard's slicings under the rules merged from all shards' profiles.
fn shard_slicings(d: &Data, specs: &[&str]) -> Vec<Vec<Slicing>> {
    let frames: Vec<Frame> = SHARDS.iter().map(|r| d.frame(r.clone())).collect();
    let mut rules = std::collections::BTreeMap::new();
    for column in ["x", "k", "region"] {
        let profiles: Vec<Profile> =
            frames.iter().map(|f| Profile::of(f.column(column, "t").expect("column"), SKETCH_POINTS)).collect();
        rules.insert(column.to_owned(), Rule::merge(column, &profiles, 4).expect("rule"));
    }
    frames
        .iter()
        .map(|f| specs.iter().map(|s| Slicing::with_rules(f, s, &rules, "slice_by").expect("slicing")).collect())
        .collect()
}

/// `a` and `b` agree: the same structure, strings and counts, and numbers within 1e-9.
fn assert_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().expect("f64"), y.as_f64().expect("f64"));
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_close(p, q, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}: keys");
            for (k, v) in x {
                assert_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn merged_evaluation(d: &Data, scored: impl Fn(Range<usize>) -> Scored) -> Value {
    let slicings = shard_slicings(d, &SPECS);
    let scored: Vec<Scored> = SHARDS.iter().map(|r| scored(r.clone())).collect();
    let mut moments = Moments::default();
    for s in &scored {
        moments.merge(&Moments::of(s));
    }
    let mut partials =
        scored.iter().zip(&slicings).map(|(s, sl)| Partial::of(s, sl, &moments).expect("partial")).collect::<Vec<_>>();
    // Shards arrive in any order; merging in reverse must not matter.
    let mut merged = partials.pop().expect("a shard");
    while let Some(p) = partials.pop() {
        // Through JSON, as the workers send them.
        let wire: Partial = serde_json::from_str(&serde_json::to_string(&p).expect("encode")).expect("decode");
        merged.merge(wire).expect("merge");
    }
    serde_json::to_value(evaluate_sums(&merged, 300, 9).expect("evaluation")).expect("json")
}

fn whole_evaluation(d: &Data, scored: Scored) -> Value {
    let frame = d.frame(0..ROWS);
    let slicings: Vec<Slicing> =
        SPECS.iter().map(|s| Slicing::of(&frame, s, 4, "slice_by").expect("slicing")).collect();
    serde_json::to_value(evaluate(&scored, &slicings, 300, 9).expect("evaluation")).expect("json")
}

#[test]
fn merged_classification_shards_match_the_whole() {
    let d = data();
    let whole = whole_evaluation(&d, d.classes(0..ROWS));
    let merged = merged_evaluation(&d, |r| d.classes(r));
    assert_close(&whole, &merged, "evaluation");
    // The test means something: slices exist, region c (absent from the first shard) among them,
    // and region b is flagged.
    let regions = &whole["slices"][1]["slices"];
    let names: Vec<&str> =
        regions.as_array().expect("slices").iter().map(|s| s["value"].as_str().expect("v")).collect();
    assert_eq!(names, vec!["a", "b", "c"]);
    assert!(regions[1]["differs"].as_array().expect("differs").iter().any(|m| m == "accuracy"), "{}", regions[1]);
    assert_eq!(whole["slices"][0]["slices"].as_array().expect("buckets").len(), 4);
    assert_eq!(whole["rows"], ROWS);
}

#[test]
fn merged_regression_shards_match_the_whole() {
    let d = data();
    let whole = whole_evaluation(&d, d.values(0..ROWS));
    assert_close(&whole, &merged_evaluation(&d, |r| d.values(r)), "evaluation");
    assert!((whole["metrics"]["bias"]["value"].as_f64().expect("bias") - 0.0).abs() < 0.5);
}

#[test]
fn merged_fairness_sums_match_the_whole() {
    let d = data();
    let positive: Vec<bool> = d.labels.iter().map(|&l| l == 1).collect();
    let score: Vec<f64> = d.probs.chunks(2).map(|p| f64::from(p[1])).collect();
    let groups = Slicing::of(&d.frame(0..ROWS), "region", 4, "groups").expect("groups");
    let whole = fairness(&groups, &positive, &score, "yes", None, 200, 4).expect("fairness");
    let slicings = shard_slicings(&d, &["region"]);
    let mut sums = None;
    for (r, sl) in SHARDS.iter().zip(&slicings) {
        let s = fairness_sums(&sl[0], &positive[r.clone()], &score[r.clone()]);
        match &mut sums {
            None => sums = Some(s),
            Some(all) => all.merge(s).expect("merge"),
        }
    }
    let merged = fairness_of(&sums.expect("sums"), "yes", None, 200, 4).expect("fairness");
    let (whole, merged) = (serde_json::to_value(whole).expect("json"), serde_json::to_value(merged).expect("json"));
    assert_close(&whole, &merged, "fairness");
    assert_eq!(whole["baseline"], "b");
}

#[test]
fn a_csv_file_read_in_shards_holds_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.csv");
    let mut text = String::from("a,b\n");
    for i in 0..23 {
        text.push_str(&format!("{i},{}\n", "x".repeat(i % 7)));
    }
    std::fs::write(&path, &text).expect("write");
    for shards in [1, 2, 3, 5, 40] {
        let mut seen = Vec::new();
        for s in 0..shards {
            let f = Frame::read_csv_shard(&path, "data", s, shards).expect("shard");
            seen.extend(f.numeric("a", "data").expect("a").iter().copied());
        }
        assert_eq!(seen, (0..23).map(f64::from).collect::<Vec<_>>(), "{shards} shards");
    }
    let err = {
        std::fs::write(&path, "a,b\n1,2\n3\n").expect("write");
        Frame::read_csv_shard(&path, "data", 0, 1).expect_err("ragged")
    };
    assert!(err.to_string().contains("line 3 of the rows from byte 4 has 1 columns"), "{err}");
}
