//! Pipeline training over real TCP links between stages (stages as threads, loopback sockets)
//! against single-worker training on the same batches: the parameters must match, whatever the
//! schedule, recomputation, stage count or partition, and with data-parallel replicas too.

use std::path::Path;
use std::time::Duration;

use shoal_common::spec::{TrainConfig, load_toml};
use shoal_train::pipeline::PipePeers;
use shoal_train::{Collective, Host, Outcome, Peers, Report, RunOptions, Stop, checkpoint, data, train};
use shoal_worker::sync::{DataPlane, PeerInfo, PipeLink, Ring};

struct Quiet;

impl Host for Quiet {
    fn report(&mut self, _: Report) {}

    fn stop(&self) -> Option<Stop> {
        None
    }
}

/// Five units: four hidden layers and the output layer.
fn config(batch: usize, replicas: usize, pipeline: &str) -> TrainConfig {
    let text = format!(
        r#"
        name = "pipeline-equivalence"
        [model]
        kind = "mlp"
        layers = [{{ width = 24 }}, {{ width = 20 }}, {{ width = 16, activation = "tanh" }}, {{ width = 12 }}]
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
        steps = 20
        seed = 7
        [parallelism]
        data = {replicas}
        {pipeline}
        "#
    );
    load_toml(&text).expect("valid").1
}

fn params_at(path: &Path) -> Vec<(String, Vec<f32>)> {
    let loaded = checkpoint::load(path).expect("load");
    loaded
        .model
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values")))
        .collect()
}

fn checkpoint_of(outcome: &Outcome) -> &Path {
    let Outcome::Completed(s) = outcome else { panic!("not completed: {outcome:?}") };
    s.checkpoint.as_deref().expect("checkpoint")
}

fn single(cfg: &TrainConfig, dir: &Path) -> Vec<(String, Vec<f32>)> {
    let opts =
        RunOptions { checkpoint_dir: Some(dir.to_path_buf()), threads: 1, keep_checkpoints: 1, ..Default::default() };
    let outcome = train(cfg, data::load(&cfg.dataset).expect("data"), &opts, &mut Quiet, Peers::Alone).expect("train");
    let mut p = params_at(checkpoint_of(&outcome));
    p.sort_by(|a, b| a.0.cmp(&b.0));
    p
}

/// Runs `replicas` x `stages` ranks as threads; returns every rank's outcome in rank order.
fn pipelined(cfg: &TrainConfig, dir: &Path, replicas: usize, stages: usize) -> Vec<Outcome> {
    let world = replicas * stages;
    let planes: Vec<DataPlane> = (0..world).map(|_| DataPlane::bind("127.0.0.1:0").expect("bind")).collect();
    let peers: Vec<PeerInfo> =
        planes.iter().enumerate().map(|(r, p)| PeerInfo::local(r, p.addr().to_string())).collect();
    let timeout = Duration::from_secs(30);
    std::thread::scope(|s| {
        let handles: Vec<_> = planes
            .iter()
            .enumerate()
            .map(|(rank, plane)| {
                let (peers, cfg) = (peers.clone(), cfg.clone());
                let dir = dir.join(format!("rank{rank}"));
                s.spawn(move || {
                    let (replica, stage) = (rank / stages, rank % stages);
                    let prev = (stage > 0).then(|| peers[rank - 1].clone());
                    let next = (stage + 1 < stages).then(|| peers[rank + 1].clone());
                    let mut link = PipeLink::connect(plane, "job-pipe", 1, rank, stage, stages, prev, next, timeout)
                        .expect("link");
                    let mut ring = (replicas > 1).then(|| {
                        let same: Vec<PeerInfo> = (0..replicas).map(|d| peers[d * stages + stage].clone()).collect();
                        Ring::connect_on(plane, "job-pipe", 1, replica, same, timeout, 16 + stage as u32).expect("ring")
                    });
                    let opts =
                        RunOptions { checkpoint_dir: Some(dir), threads: 1, keep_checkpoints: 1, ..Default::default() };
                    let peers = Peers::Pipeline(PipePeers {
                        link: &mut link,
                        replicas: ring.as_mut().map(|r| r as &mut dyn Collective),
                    });
                    train(&cfg, data::load(&cfg.dataset).expect("data"), &opts, &mut Quiet, peers).expect("train")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank")).collect()
    })
}

/// Largest difference per tensor relative to its largest magnitude.
fn assert_close(reference: &[(String, Vec<f32>)], got: &[(String, Vec<f32>)], what: &str) {
    assert_eq!(
        reference.iter().map(|p| &p.0).collect::<Vec<_>>(),
        got.iter().map(|p| &p.0).collect::<Vec<_>>(),
        "{what}: the stages together hold every parameter once"
    );
    for ((name, a), (_, b)) in reference.iter().zip(got) {
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-5 * scale, "{what}: {name} differs by {diff} (scale {scale})");
    }
}

fn check(stages: usize, replicas: usize, pipeline: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = single(&config(32 * replicas, 1, ""), &dir.path().join("single"));
    let cfg = config(32, replicas, pipeline);
    let outcomes = pipelined(&cfg, &dir.path().join("pipe"), replicas, stages);
    // The first replica's stages together hold the model.
    let mut got: Vec<(String, Vec<f32>)> =
        outcomes[..stages].iter().flat_map(|o| params_at(checkpoint_of(o))).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_close(&reference, &got, pipeline);
    // Other replicas hold the same values.
    for d in 1..replicas {
        for s in 0..stages {
            let a = params_at(checkpoint_of(&outcomes[s]));
            let b = params_at(checkpoint_of(&outcomes[d * stages + s]));
            let sorted = |mut v: Vec<(String, Vec<f32>)>| {
                v.sort_by(|x, y| x.0.cmp(&y.0));
                v
            };
            assert_eq!(sorted(a), sorted(b), "replica {d} stage {s} differs from replica 0");
        }
    }
    // Every stage of a replica reports its losses, and every rank the same validation result.
    let summaries: Vec<_> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Completed(s) => {
                let v = s.validation.as_ref().expect("validation");
                (s.first_loss, s.last10_loss, v.loss, v.accuracy)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    for replica in summaries.chunks(stages) {
        assert!(replica.windows(2).all(|w| w[0] == w[1]), "{pipeline}: {summaries:?}");
    }
    assert!(summaries.windows(2).all(|w| (w[0].2, w[0].3) == (w[1].2, w[1].3)), "{pipeline}: {summaries:?}");
}

#[test]
fn two_stages_match_one_worker_under_both_schedules_with_and_without_recompute() {
    for schedule in ["gpipe", "1f1b"] {
        for recompute in [false, true] {
            check(
                2,
                1,
                &format!(
                    "pipeline = 2\n[pipeline]\nmicro_batches = 4\nschedule = \"{schedule}\"\nrecompute = {recompute}"
                ),
            );
        }
    }
}

#[test]
fn four_stages_match_one_worker_under_both_schedules_with_and_without_recompute() {
    for schedule in ["gpipe", "1f1b"] {
        for recompute in [false, true] {
            check(
                4,
                1,
                &format!(
                    "pipeline = 4\n[pipeline]\nmicro_batches = 5\nschedule = \"{schedule}\"\nrecompute = {recompute}"
                ),
            );
        }
    }
}

#[test]
fn uneven_partitions_and_automatic_balancing_match_too() {
    check(2, 1, "pipeline = 2\n[pipeline]\nmicro_batches = 3\ncuts = [4]\nschedule = \"1f1b\"");
    check(3, 1, "pipeline = 3\n[pipeline]\nmicro_batches = 8\ncuts = [1, 4]");
    check(3, 1, "pipeline = 3\n[pipeline]\nmicro_batches = 2\nbalance = \"params\"\nschedule = \"1f1b\"");
    check(2, 1, "pipeline = 2\n[pipeline]\nmicro_batches = 4\nbalance = \"time\"");
}

#[test]
fn replicated_pipelines_match_one_worker_with_the_combined_batch() {
    check(2, 2, "pipeline = 2\n[pipeline]\nmicro_batches = 4\nschedule = \"1f1b\"");
}
