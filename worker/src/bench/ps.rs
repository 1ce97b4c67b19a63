//! `shoal bench ps`, one worker's part: push-and-pull throughput against parameter servers, and
//! the reference MLP trained through them in async, ssp or sync mode.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_common::spec::{PsMode, SyncKind};
use shoal_train::{Outcome, ParamStore, Peers, RunOptions, data, train};
use shoal_worker::sync::{PsAccess, PsClient, ShardInfo};

use super::error::BenchError;
use super::train::{Measured, Silent, record, threads};
use super::workloads;

/// Deadline of every exchange with the servers.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Shard `k` lives on `servers[k]`.
fn shard_infos(servers: &[String]) -> Vec<ShardInfo> {
    servers
        .iter()
        .enumerate()
        .map(|(k, addr)| ShardInfo {
            shard: k as u32,
            node_id: format!("bench-ps-{k}"),
            hostname: "localhost".into(),
            addr: addr.clone(),
        })
        .collect()
}

/// One rank of the reference MLP trained through parameter servers at `servers` (one shard each)
/// in `mode`. Rank 0 returns the record (with the fields of `ddp_mlp.py`, plus `sync`).
pub fn reference(
    steps: u64,
    warmup: u64,
    rank: usize,
    world: usize,
    servers: &[String],
    mode: &str,
) -> Result<Option<Value>, BenchError> {
    let spec = workloads::reference_mlp_ps_spec(steps, world, servers.len(), mode)?;
    let cfg = workloads::validated("bench-reference-mlp-ps", &spec)?;
    let SyncKind::ParamServer { mode: ps_mode, .. } = cfg.parallel.sync else {
        return Err(BenchError::Workload { workload: "bench-reference-mlp-ps", reason: "not a ps spec".into() });
    };
    let splits = data::load(&cfg.dataset)?;
    let threads = threads();
    let opts = RunOptions { threads, warmup_steps: warmup, ..Default::default() };
    let job = format!("bench-train-{mode}");
    let mut client =
        PsClient::connect(&job, 1, rank, world, ps_mode, spec, shard_infos(servers), TIMEOUT, &PsAccess::default())?;
    let store: &mut dyn ParamStore = &mut client;
    let outcome = train(&cfg, splits, &opts, &mut Silent, Peers::ParamServer(store))?;
    let Outcome::Completed(summary) = outcome else { return Err(BenchError::StoppedEarly { rank }) };
    if rank != 0 {
        return Ok(None);
    }
    let mut out = record(&cfg, &summary, Measured { steps, warmup, world, threads }, None);
    out["sync"] = json!(format!("ps-{mode}"));
    out["ps_shards"] = json!(servers.len());
    out["samples_seen"] = json!(steps * (cfg.training.batch_size * world) as u64);
    Ok(Some(out))
}

/// Push-and-pull throughput of one worker against parameter servers holding a model of
/// `model_bytes`: `iters` rounds of pushing a full gradient and pulling the full parameters.
/// Returns (bytes moved, seconds).
pub fn push_pull(
    rank: usize,
    world: usize,
    servers: &[String],
    model_bytes: usize,
    iters: usize,
    job: &str,
) -> Result<(u64, f64), BenchError> {
    let spec = workloads::reference_mlp_ps_spec(1, world, servers.len(), "async")?;
    let infos = shard_infos(servers);
    let mut client = PsClient::connect(job, 1, rank, world, PsMode::Async, spec, infos, TIMEOUT, &PsAccess::default())?;
    let n = model_bytes / 4;
    let mut params = vec![0.001f32; n];
    if rank == 0 {
        client.init(&params, 1_000_000, None)?;
    }
    client.pull(0, &mut params)?;
    let grads = vec![0.0f32; n];
    let started = Instant::now();
    for step in 0..iters as u64 {
        client.push(step, &grads)?;
        client.pull(step + 1, &mut params)?;
    }
    Ok((2 * (n as u64) * 4 * iters as u64, started.elapsed().as_secs_f64()))
}
