//! Data-parallel training over the real TCP ring (ranks as threads, loopback sockets) against
//! single-worker training with N times the batch on the same samples: the parameters must match.

use std::path::Path;
use std::time::Duration;

use shoal_common::spec::{TrainConfig, load_toml};
use shoal_train::{Collective, Host, Outcome, Report, RunOptions, Stop, checkpoint, data, train};
use shoal_worker::sync::{DataPlane, PeerInfo, Ring};

struct Quiet;

impl Host for Quiet {
    fn report(&mut self, _: Report) {}

    fn stop(&self) -> Option<Stop> {
        None
    }
}

fn config(batch: usize, accumulate: usize, ranks: usize) -> TrainConfig {
    // 960 samples: divisible by 2 and 3, so the shards need no padding.
    let text = format!(
        r#"
        name = "equivalence"
        [model]
        kind = "mlp"
        layers = [{{ width = 24 }}, {{ width = 16, activation = "tanh" }}]
        [dataset]
        kind = "synthetic_classification"
        samples = 1200
        features = 12
        classes = 4
        validation_split = 0.2
        [optimizer]
        kind = "sgd"
        lr = 0.1
        momentum = 0.9
        [training]
        batch_size = {batch}
        steps = 25
        seed = 11
        accumulate_steps = {accumulate}
        [parallelism]
        data = {ranks}
        [allreduce]
        checksum_every = 5
        "#
    );
    load_toml(&text).expect("valid").1
}

fn run(cfg: &TrainConfig, dir: &Path, collective: Option<&mut dyn Collective>) -> Outcome {
    let opts =
        RunOptions { checkpoint_dir: Some(dir.to_path_buf()), threads: 1, keep_checkpoints: 1, ..Default::default() };
    let peers = match collective {
        Some(c) => shoal_train::Peers::AllReduce(c),
        None => shoal_train::Peers::Alone,
    };
    train(cfg, data::load(&cfg.dataset).expect("data"), &opts, &mut Quiet, peers).expect("train")
}

fn params(outcome: &Outcome) -> Vec<(String, Vec<f32>)> {
    let Outcome::Completed(s) = outcome else { panic!("not completed: {outcome:?}") };
    let loaded = checkpoint::load(s.checkpoint.as_ref().expect("checkpoint")).expect("load");
    let mut out: Vec<(String, Vec<f32>)> = loaded
        .model
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values")))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// N ranks with batch B each against one worker with batch N·B.
fn check(ranks: usize, accumulate: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let single = params(&run(&config(8 * ranks, accumulate, 1), &dir.path().join("single"), None));

    let planes: Vec<DataPlane> = (0..ranks).map(|_| DataPlane::bind("127.0.0.1:0").expect("bind")).collect();
    let peers: Vec<PeerInfo> =
        planes.iter().enumerate().map(|(r, p)| PeerInfo::local(r, p.addr().to_string())).collect();
    let cfg = config(8, accumulate, ranks);
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = planes
            .iter()
            .enumerate()
            .map(|(r, plane)| {
                let (peers, cfg, dir) = (peers.clone(), cfg.clone(), dir.path().join(format!("rank{r}")));
                s.spawn(move || {
                    let mut ring = Ring::connect(plane, "job-eq", 1, r, peers, Duration::from_secs(30)).expect("ring");
                    run(&cfg, &dir, Some(&mut ring))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank")).collect()
    });
    let rank0 = params(&outcomes[0]);
    for other in &outcomes[1..] {
        assert_eq!(params(other), rank0, "ranks hold bit-identical parameters");
    }
    // Relative error per tensor: the largest difference over the largest magnitude (summation
    // order differs, so single values near zero differ by ~1e-8 absolute).
    for ((name, a), (_, b)) in single.iter().zip(&rank0) {
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-5 * scale,
            "{name} (ranks {ranks}, accumulate {accumulate}): max difference {diff} vs scale {scale}"
        );
    }
}

#[test]
fn two_ranks_match_one_worker_with_twice_the_batch() {
    check(2, 1);
}

#[test]
fn three_ranks_match_one_worker_with_three_times_the_batch() {
    check(3, 1);
}

#[test]
fn gradient_accumulation_matches_too() {
    check(2, 3);
    check(3, 2);
}
