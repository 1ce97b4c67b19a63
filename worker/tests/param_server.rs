//! Parameter-server training with the real service on loopback (in this process) and workers as
//! threads using the real client: sync mode against ring all-reduce, the SSP bound from the
//! server's own records, and the protocol's refusals.

use std::time::Duration;

use shoal_common::proto::param_server_service_client::ParamServerServiceClient;
use shoal_common::proto::{InitChunk, PushChunk, ShardKey};
use shoal_common::spec::{PsMode, SyncKind, TrainConfig, load_toml};
use shoal_param_server::Serving;
use shoal_train::{Collective, Host, Outcome, Peers, Report, RunOptions, Stop, checkpoint, data, train};
use shoal_worker::sync::{DataPlane, PeerInfo, PsClient, Ring, ShardInfo};

struct Slow(Duration);

impl Host for Slow {
    fn report(&mut self, _: Report) {}

    fn stop(&self) -> Option<Stop> {
        std::thread::sleep(self.0);
        None
    }
}

fn config(sync: &str, ranks: usize) -> TrainConfig {
    let text = format!(
        r#"
        name = "ps"
        {sync}
        [model]
        kind = "mlp"
        layers = [{{ width = 20 }}]
        [dataset]
        kind = "synthetic_classification"
        samples = 1000
        features = 10
        classes = 3
        [optimizer]
        kind = "sgd"
        lr = 0.1
        momentum = 0.9
        [training]
        batch_size = 10
        steps = 30
        seed = 4
        [parallelism]
        data = {ranks}
        "#
    );
    load_toml(&text).expect("valid").1
}

/// Starts parameter servers in this process (each on its own runtime and loopback port).
fn servers(n: usize) -> Vec<(tokio::runtime::Runtime, Serving)> {
    (0..n)
        .map(|_| {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            let serving = rt.block_on(shoal_param_server::serve("127.0.0.1:0")).expect("serve");
            (rt, serving)
        })
        .collect()
}

fn shards(servers: &[(tokio::runtime::Runtime, Serving)], count: usize) -> Vec<ShardInfo> {
    (0..count)
        .map(|k| ShardInfo {
            shard: k as u32,
            node_id: format!("ps-{}", k % servers.len()),
            hostname: "localhost".into(),
            addr: servers[k % servers.len()].1.addr.to_string(),
        })
        .collect()
}

fn params_of(outcome: &Outcome) -> Vec<(String, Vec<f32>)> {
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

/// Trains `ranks` parameter-server workers as threads; returns each rank's outcome.
fn run_ps(
    cfg: &TrainConfig,
    job: &str,
    infos: &[ShardInfo],
    dir: &std::path::Path,
    delays: &[Duration],
) -> Vec<Outcome> {
    let SyncKind::ParamServer { mode, .. } = cfg.parallel.sync else { panic!("not a ps job") };
    let ranks = cfg.parallel.data;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..ranks)
            .map(|r| {
                let (cfg, infos, dir) = (cfg.clone(), infos.to_vec(), dir.join(format!("rank{r}")));
                let delay = delays.get(r).copied().unwrap_or_default();
                s.spawn(move || {
                    let spec = spec_of(&cfg);
                    let mut client = PsClient::connect(
                        job,
                        1,
                        r,
                        ranks,
                        mode,
                        spec,
                        infos,
                        Duration::from_secs(30),
                        &Default::default(),
                    )
                    .expect("connect");
                    let opts = RunOptions {
                        checkpoint_dir: (r == 0).then_some(dir),
                        threads: 1,
                        keep_checkpoints: 1,
                        ..Default::default()
                    };
                    train(
                        &cfg,
                        data::load(&cfg.dataset).expect("data"),
                        &opts,
                        &mut Slow(delay),
                        Peers::ParamServer(&mut client),
                    )
                    .expect("train")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank")).collect()
    })
}

/// The wire spec matching a config built by `config` (the servers read the optimizer from it).
fn spec_of(cfg: &TrainConfig) -> shoal_common::proto::JobSpec {
    let mode = match cfg.parallel.sync {
        SyncKind::ParamServer { mode, .. } => mode,
        SyncKind::AllReduce => PsMode::Async,
    };
    let (mode_line, extra) = match mode {
        PsMode::Ssp { staleness } => ("ssp", format!("staleness = {staleness}")),
        other => (other.name(), String::new()),
    };
    let text = config_text(mode_line, &extra, cfg.parallel.data);
    shoal_common::spec::parse_toml(&text).expect("spec")
}

fn config_text(mode: &str, extra: &str, ranks: usize) -> String {
    format!(
        "name = \"ps\"\nsync = \"ps\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 20 }}]\n[dataset]\nkind = \"synthetic_classification\"\n\
         samples = 1000\nfeatures = 10\nclasses = 3\n[optimizer]\nkind = \"sgd\"\nlr = 0.1\nmomentum = 0.9\n[training]\nbatch_size = 10\n\
         steps = 30\nseed = 4\n[parallelism]\ndata = {ranks}\n[ps]\nshards = 2\nmode = \"{mode}\"\n{extra}\n"
    )
}

#[test]
fn sync_mode_gives_the_parameters_of_all_reduce_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ps_cfg = load_toml(&config_text("sync", "", 2)).expect("valid").1;
    let servers = servers(2);
    let ps = run_ps(&ps_cfg, "job-sync", &shards(&servers, 2), &dir.path().join("ps"), &[]);
    let ps_params = params_of(&ps[0]);

    let ring_cfg = config("", 2);
    let planes: Vec<DataPlane> = (0..2).map(|_| DataPlane::bind("127.0.0.1:0").expect("bind")).collect();
    let peers: Vec<PeerInfo> =
        planes.iter().enumerate().map(|(r, p)| PeerInfo::local(r, p.addr().to_string())).collect();
    let ring: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = planes
            .iter()
            .enumerate()
            .map(|(r, plane)| {
                let (cfg, peers, dir) = (ring_cfg.clone(), peers.clone(), dir.path().join(format!("ring{r}")));
                s.spawn(move || {
                    let mut ring =
                        Ring::connect(plane, "job-ring", 1, r, peers, Duration::from_secs(30)).expect("ring");
                    let opts =
                        RunOptions { checkpoint_dir: Some(dir), threads: 1, keep_checkpoints: 1, ..Default::default() };
                    let c: &mut dyn Collective = &mut ring;
                    train(
                        &cfg,
                        data::load(&cfg.dataset).expect("data"),
                        &opts,
                        &mut Slow(Duration::ZERO),
                        Peers::AllReduce(c),
                    )
                    .expect("train")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank")).collect()
    });
    let ring_params = params_of(&ring[0]);
    assert_eq!(ps_params.len(), ring_params.len());
    for ((name, a), (_, b)) in ps_params.iter().zip(&ring_params) {
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-5 * scale, "{name}: parameter servers and all-reduce differ by {diff} (scale {scale})");
    }
}

#[test]
fn ssp_never_lets_a_worker_run_more_than_the_bound_ahead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = load_toml(&config_text("ssp", "staleness = 2", 3)).expect("valid").1;
    let servers = servers(1);
    let infos = shards(&servers, 2);
    // Rank 2 is slow: the others would race ahead without the bound.
    let outcomes =
        run_ps(&cfg, "job-ssp", &infos, dir.path(), &[Duration::ZERO, Duration::ZERO, Duration::from_millis(15)]);
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Completed(_))));
    let rt = &servers[0].0;
    for info in &infos {
        let stats = rt.block_on(async {
            let mut c = ParamServerServiceClient::connect(format!("http://{}", info.addr)).await.expect("connect");
            c.shard_stats(ShardKey { job_id: "job-ssp".into(), attempt: 1, shard: info.shard })
                .await
                .expect("stats")
                .into_inner()
        });
        let max_lead = stats.lead_at_grant.iter().copied().max().expect("grants");
        assert!(max_lead <= 2, "shard {}: a worker was {max_lead} steps ahead of the slowest", info.shard);
        assert_eq!(max_lead, 2, "the fast workers did run ahead up to the bound");
        assert_eq!(stats.clocks, vec![30, 30, 30]);
    }
}

#[test]
fn the_protocol_refuses_bad_pushes_with_clear_errors_and_applies_retries_once() {
    let servers = servers(1);
    let (rt, serving) = &servers[0];
    let addr = format!("http://{}", serving.addr);
    let spec = shoal_common::spec::parse_toml(&config_text("async", "", 2)).expect("spec");
    rt.block_on(async {
        let mut c = ParamServerServiceClient::connect(addr).await.expect("connect");
        let key = ShardKey { job_id: "job-p".into(), attempt: 1, shard: 0 };
        let init = InitChunk {
            key: Some(key.clone()),
            total_len: 4,
            spec: Some(spec),
            total_steps: 10,
            workers: 2,
            values: [0f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        c.init_shard(tokio_stream::iter(vec![init])).await.expect("init");
        let push = |key: ShardKey, len: u64, n: usize| PushChunk {
            key: Some(key),
            worker: 0,
            step: 0,
            based_on: 0,
            total_len: len,
            offset: 0,
            grads: vec![1f32; n].iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        let first = c.push(tokio_stream::iter(vec![push(key.clone(), 4, 4)])).await.expect("push").into_inner();
        let retry = c.push(tokio_stream::iter(vec![push(key.clone(), 4, 4)])).await.expect("retry").into_inner();
        assert!(!first.duplicate && retry.duplicate);
        assert_eq!((first.version, retry.version), (1, 1), "the retry changed nothing");

        let bad = c.push(tokio_stream::iter(vec![push(key.clone(), 3, 3)])).await.expect_err("wrong size");
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().contains("the shard has 4 values but the push has 3"), "{}", bad.message());

        let unknown = ShardKey { shard: 7, ..key.clone() };
        let err = c.push(tokio_stream::iter(vec![push(unknown, 4, 4)])).await.expect_err("unknown shard");
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(err.message().contains("holds no shard 7 of job job-p"), "{}", err.message());

        serving.registry.end_job("job-p", 1, "succeeded");
        let err = c.push(tokio_stream::iter(vec![push(key, 4, 4)])).await.expect_err("finished job");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("job job-p has finished (succeeded)"), "{}", err.message());
    });
}

#[test]
fn shard_state_is_saved_with_checkpoints_and_a_new_server_resumes_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = load_toml(&config_text("sync", "", 2)).expect("valid").1;
    let first = servers(1);
    let outcomes = run_ps(&cfg, "job-ckpt", &shards(&first, 2), dir.path(), &[]);
    let Outcome::Completed(summary) = &outcomes[0] else { panic!("not completed") };
    let ckpt = summary.checkpoint.clone().expect("checkpoint");
    for k in 0..2 {
        assert!(ckpt.join(format!("ps-shard-{k}.safetensors")).exists(), "shard {k} state saved next to the model");
    }
    let saved = params_of(&outcomes[0]);
    let flat_saved: Vec<f32> = {
        // The model checkpoint lists tensors by name; the servers hold them flat in model order.
        let mut v = Vec::new();
        for name in ["layers.0.weight", "layers.0.bias", "output.weight", "output.bias"] {
            v.extend(saved.iter().find(|(n, _)| n == name).expect("tensor").1.clone());
        }
        v
    };
    // A fresh server (new process state) loads the shards from the checkpoint directory.
    let second = servers(1);
    let infos = shards(&second, 2);
    let spec = spec_of(&cfg);
    let mut client = PsClient::connect(
        "job-resumed",
        1,
        0,
        2,
        PsMode::Sync,
        spec,
        infos,
        Duration::from_secs(10),
        &Default::default(),
    )
    .expect("connect");
    let mut flat = vec![0f32; flat_saved.len()];
    shoal_train::ParamStore::init(&mut client, &flat.clone(), 30, Some(&ckpt)).expect("resume init");
    shoal_train::ParamStore::pull(&mut client, 30, &mut flat).expect("pull");
    assert_eq!(flat, flat_saved, "the resumed servers hold the checkpointed parameters");
}
