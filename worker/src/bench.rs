//! Benchmarks that run inside worker processes and print JSON lines with the field names of the
//! PyTorch peers in `../shared/peers`: the reference MLP trained on one rank or data-parallel
//! (`ddp_mlp.py`), and all-reduce bandwidth (`allreduce_gloo.py`). Multi-rank runs are started by
//! `shoal bench`, which hands every rank its peers' data-plane addresses.

use std::io::BufRead;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_train::{Collective, Host, Outcome, ReduceOp, Report, RunOptions, Stop, data, train};

use crate::sync::{DataPlane, PeerInfo, Ring};

/// Machine-wide busy CPU seconds and this process's CPU seconds, for the foreign-load figure.
pub struct CpuSnapshot {
    machine_busy_s: f64,
    own_s: f64,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

impl CpuSnapshot {
    pub fn take() -> Self {
        let machine_busy_s = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let v: Vec<f64> = s.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                let total: f64 = v.iter().sum();
                let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
                Some((total - idle) / ticks_per_second())
            })
            .unwrap_or(0.0);
        // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
        let own_s = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut u);
            let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
            t(u.ru_utime) + t(u.ru_stime)
        };
        Self { machine_busy_s, own_s }
    }

    /// Share of the machine used by other processes since `self`, over `wall` seconds. With
    /// several ranks on this machine, their CPU time is summed first so that ranks do not count
    /// each other as foreign load.
    pub fn foreign_share(&self, wall: f64, collective: Option<&mut dyn Collective>) -> f64 {
        let now = Self::take();
        let mut own = [(now.own_s - self.own_s) as f32];
        if let Some(c) = collective {
            if c.all_reduce(&mut own, ReduceOp::Sum).is_err() {
                return f64::NAN;
            }
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let foreign = ((now.machine_busy_s - self.machine_busy_s) - f64::from(own[0])).max(0.0);
        (foreign / (wall.max(1e-9) * cores) * 1000.0).round() / 1000.0
    }
}

pub struct Silent;

impl Host for Silent {
    fn report(&mut self, _report: Report) {}

    fn stop(&self) -> Option<Stop> {
        None
    }
}

/// Joins a benchmark ring: binds a data plane, prints `addr HOST:PORT` on stdout, reads the
/// comma-separated addresses of all ranks (in rank order) from stdin, and connects.
pub fn join_ring(rank: usize, world: usize, timeout: Duration) -> Result<Ring, String> {
    let plane = DataPlane::bind("127.0.0.1:0").map_err(|e| format!("cannot bind the data plane: {e}"))?;
    if world == 1 {
        let me = vec![PeerInfo::local(0, plane.addr().to_string())];
        return Ring::connect(&plane, "bench", 1, 0, me, timeout).map_err(|e| e.to_string());
    }
    println!("addr {}", plane.addr());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the peer list: {e}"))?;
    let addrs: Vec<String> = line.trim().split(',').map(str::to_owned).collect();
    if addrs.len() != world {
        return Err(format!("expected {world} peer addresses, got {}", addrs.len()));
    }
    let peers = addrs.into_iter().enumerate().map(|(r, a)| PeerInfo::local(r, a)).collect();
    Ring::connect(&plane, "bench", 1, rank, peers, timeout).map_err(|e| e.to_string())
}

/// Joins a benchmark NCCL communicator on GPU 0: rank 0 prints `addr HEX-UNIQUE-ID`, the others
/// `addr -`; every rank then reads the list from stdin and takes the id from its first entry.
#[cfg(feature = "cuda")]
pub fn join_nccl(rank: usize, world: usize, timeout: Duration) -> Result<Box<dyn Collective>, String> {
    use crate::sync::nccl::{Nccl, UniqueId};
    let id = if rank == 0 { Some(UniqueId::new().map_err(|e| e.to_string())?) } else { None };
    let hex: String =
        id.as_ref().map_or_else(|| "-".into(), |id| id.to_bytes().iter().map(|b| format!("{b:02x}")).collect());
    let id = if world == 1 {
        id.ok_or("rank 0 has no id")?
    } else {
        println!("addr {hex}");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the peer list: {e}"))?;
        let first = line.trim().split(',').next().unwrap_or_default().to_owned();
        let bytes: Vec<u8> =
            (0..first.len() / 2).filter_map(|i| u8::from_str_radix(&first[2 * i..2 * i + 2], 16).ok()).collect();
        UniqueId::from_bytes(&bytes).map_err(|e| e.to_string())?
    };
    let mut comm = Nccl::new(0, rank, world, id).map_err(|e| e.to_string())?;
    comm.set_timeout(timeout);
    Ok(Box::new(comm))
}

#[cfg(not(feature = "cuda"))]
pub fn join_nccl(_: usize, _: usize, _: Duration) -> Result<Box<dyn Collective>, String> {
    Err("this shoal-worker was built without the `cuda` feature".into())
}

/// Runs the reference MLP for `steps` steps (data-parallel when `collective` has several ranks,
/// each with the peers' per-rank batch) and returns the result record.
pub fn train_reference(
    steps: u64,
    warmup: u64,
    mut collective: Option<&mut dyn Collective>,
) -> Result<Value, shoal_train::TrainError> {
    let world = collective.as_ref().map_or(1, |c| c.world_size());
    let cfg = shoal_train::bench::reference_mlp(steps);
    let splits = data::load(&cfg.dataset)?;
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
    let opts = RunOptions { threads, warmup_steps: warmup, ..Default::default() };
    if let Some(c) = collective.as_mut() {
        c.all_reduce(&mut [0.0], ReduceOp::Sum)?;
    }
    let snapshot = CpuSnapshot::take();
    let wall = std::time::Instant::now();
    let peers = match collective.as_mut() {
        Some(c) => shoal_train::Peers::AllReduce(&mut **c),
        None => shoal_train::Peers::Alone,
    };
    let outcome = train(&cfg, splits, &opts, &mut Silent, peers)?;
    let foreign = snapshot
        .foreign_share(wall.elapsed().as_secs_f64(), collective.as_mut().map(|c| &mut **c as &mut dyn Collective));
    let Outcome::Completed(s) = outcome else {
        return Err(shoal_train::TrainError::StoppedEarly);
    };
    let batch = cfg.training.batch_size;
    let measured = steps.saturating_sub(warmup).max(1);
    let val = s.validation.as_ref();
    Ok(json!({
        "bench": "shoal_train",
        "world_size": world,
        "threads_per_rank": threads,
        "threads_arg": threads,
        "batch_per_rank": batch,
        "global_batch": batch * world,
        "steps": steps,
        "warmup": warmup,
        "lr": cfg.optimizer.lr,
        "elapsed_s": s.steady_elapsed_s,
        "step_time_ms": 1e3 * s.steady_elapsed_s / measured as f64,
        "samples_per_s": s.steady_samples_per_s * world as f64,
        "loss_first": s.first_loss,
        "loss_final": s.last_loss,
        "loss_final_avg10": s.last10_loss,
        "eval_loss": val.map(|v| v.loss),
        "eval_acc": val.and_then(|v| v.accuracy),
        "foreign_cpu_frac": foreign,
    }))
}

/// The header record of a benchmark run.
pub fn meta(bench: &str) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "bench": bench,
        "kind": "meta",
        "shoal_version": shoal_common::version::VERSION,
        "cpu": cpu,
        "cpu_count": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "time": shoal_common::time::now_ms(),
    })
}

/// Parses "4K,64K,1M" into byte counts (binary units), as the peers do.
pub fn parse_sizes(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|tok| {
            let t = tok.trim().to_ascii_uppercase();
            let t = t.trim_end_matches("IB").trim_end_matches('B');
            let (num, mult) = match t.chars().last() {
                Some('K') => (&t[..t.len() - 1], 1usize << 10),
                Some('M') => (&t[..t.len() - 1], 1 << 20),
                Some('G') => (&t[..t.len() - 1], 1 << 30),
                _ => (t, 1),
            };
            let v: f64 = num.parse().map_err(|_| format!("bad size `{tok}`"))?;
            if v <= 0.0 || !v.is_finite() {
                return Err(format!("bad size `{tok}`"));
            }
            Ok((v * mult as f64) as usize)
        })
        .collect()
}

fn human_bytes(n: usize) -> String {
    for (unit, div) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= div && n % div == 0 {
            return format!("{}{unit}", n / div);
        }
    }
    format!("{n}B")
}

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { 0.5 * (s[n / 2 - 1] + s[n / 2]) }
}

/// How long to measure each size.
pub struct AllReducePlan {
    pub warmup: usize,
    pub min_iters: usize,
    pub max_iters: usize,
    pub budget_s: f64,
}

/// All-reduce bandwidth for each size, timed as `allreduce_gloo.py` does: a barrier, then one
/// all-reduce, the time taken as the maximum over ranks. Rank 0 returns one record per size.
pub fn allreduce_sizes(
    c: &mut dyn Collective,
    sizes: &[usize],
    plan: &AllReducePlan,
    backend: &str,
) -> Result<Vec<Value>, String> {
    let n = c.world_size();
    let err = |e: shoal_train::CollectiveError| e.to_string();
    let mut out = Vec::new();
    for &bytes in sizes {
        let numel = bytes / 4;
        // Correctness over the whole buffer: element i of rank r holds (i mod 1021) + r, so the sum
        // is n·(i mod 1021) + n(n-1)/2, exact in f32 at these magnitudes.
        let r = c.rank();
        let mut buf: Vec<f32> = (0..numel).map(|i| (i % 1021 + r) as f32).collect();
        c.all_reduce(&mut buf, ReduceOp::Sum).map_err(err)?;
        let correct = buf.iter().enumerate().all(|(i, v)| *v == (n * (i % 1021) + n * (n - 1) / 2) as f32);
        buf.iter_mut().for_each(|v| *v = 0.0);
        for _ in 0..plan.warmup {
            c.all_reduce(&mut buf, ReduceOp::Sum).map_err(err)?;
        }
        c.all_reduce(&mut [0.0], ReduceOp::Sum).map_err(err)?;
        let t0 = Instant::now();
        c.all_reduce(&mut buf, ReduceOp::Sum).map_err(err)?;
        let mut probe = [t0.elapsed().as_secs_f32()];
        c.all_reduce(&mut probe, ReduceOp::Max).map_err(err)?;
        let iters = (plan.budget_s / f64::from(probe[0]).max(1e-9)).clamp(plan.min_iters as f64, plan.max_iters as f64)
            as usize;
        let snapshot = CpuSnapshot::take();
        let wall = Instant::now();
        let mut times = vec![0f32; iters];
        for t in times.iter_mut() {
            c.all_reduce(&mut [0.0], ReduceOp::Sum).map_err(err)?;
            let t0 = Instant::now();
            c.all_reduce(&mut buf, ReduceOp::Sum).map_err(err)?;
            *t = t0.elapsed().as_secs_f32();
        }
        let foreign = snapshot.foreign_share(wall.elapsed().as_secs_f64(), Some(&mut *c));
        c.all_reduce(&mut times, ReduceOp::Max).map_err(err)?;
        if c.rank() == 0 {
            let ts: Vec<f64> = times.iter().map(|t| f64::from(*t)).collect();
            let med = median(&ts);
            let min = ts.iter().copied().fold(f64::INFINITY, f64::min);
            let algbw = bytes as f64 / med / 1e9;
            out.push(json!({
                "bench": "shoal_allreduce", "backend": backend, "world_size": n, "bytes": bytes,
                "size": human_bytes(bytes), "dtype": "float32", "op": "sum", "iters": iters,
                "warmup": plan.warmup, "threads": 1, "time_median_s": med, "time_min_s": min,
                "time_mean_s": ts.iter().sum::<f64>() / ts.len() as f64, "algbw_GBps": algbw,
                "busbw_GBps": algbw * 2.0 * (n as f64 - 1.0) / n as f64, "algbw_GBps_best": bytes as f64 / min / 1e9,
                "correct": correct, "foreign_cpu_frac": foreign,
            }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_the_peers() {
        assert_eq!(parse_sizes("4K,64K,1M,256M").expect("sizes"), vec![4096, 65536, 1 << 20, 256 << 20]);
        assert_eq!(parse_sizes("16MiB, 2G").expect("sizes"), vec![16 << 20, 2 << 30]);
        assert!(parse_sizes("lots").is_err());
        assert_eq!(human_bytes(1 << 20), "1MiB");
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}

fn shard_infos(servers: &[String]) -> Vec<crate::sync::ShardInfo> {
    servers
        .iter()
        .enumerate()
        .map(|(k, addr)| crate::sync::ShardInfo {
            shard: k as u32,
            node_id: format!("bench-ps-{k}"),
            hostname: "localhost".into(),
            addr: addr.clone(),
        })
        .collect()
}

/// One rank of the reference MLP trained through parameter servers at `servers` (one shard each)
/// in `mode`. Rank 0 returns the record (with the fields of `ddp_mlp.py`, plus `sync`).
pub fn train_reference_ps(
    steps: u64,
    warmup: u64,
    rank: usize,
    world: usize,
    servers: &[String],
    mode: &str,
) -> Result<Option<Value>, String> {
    use shoal_common::spec::SyncKind;
    use shoal_train::ParamStore;
    let spec = shoal_train::bench::reference_mlp_ps_spec(steps, world, servers.len(), mode);
    let cfg = shoal_common::spec::validate(&spec).map_err(|e| format!("{e:?}"))?;
    let SyncKind::ParamServer { mode: ps_mode, .. } = cfg.parallel.sync else { return Err("not a ps spec".into()) };
    let splits = data::load(&cfg.dataset).map_err(|e| e.to_string())?;
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
    let opts = RunOptions { threads, warmup_steps: warmup, ..Default::default() };
    let job = format!("bench-train-{mode}");
    let mut client = crate::sync::PsClient::connect(
        &job,
        1,
        rank,
        world,
        ps_mode,
        spec,
        shard_infos(servers),
        Duration::from_secs(120),
        &crate::sync::PsAccess::default(),
    )
    .map_err(|e| e.to_string())?;
    let store: &mut dyn ParamStore = &mut client;
    let outcome =
        train(&cfg, splits, &opts, &mut Silent, shoal_train::Peers::ParamServer(store)).map_err(|e| e.to_string())?;
    let Outcome::Completed(s) = outcome else { return Err("the benchmark run stopped early".into()) };
    if rank != 0 {
        return Ok(None);
    }
    let batch = cfg.training.batch_size;
    let measured = steps.saturating_sub(warmup).max(1);
    let val = s.validation.as_ref();
    Ok(Some(json!({
        "bench": "shoal_train", "sync": format!("ps-{mode}"), "ps_shards": servers.len(), "world_size": world,
        "threads_per_rank": threads, "threads_arg": threads, "batch_per_rank": batch, "global_batch": batch * world,
        "steps": steps, "warmup": warmup, "lr": cfg.optimizer.lr, "elapsed_s": s.steady_elapsed_s,
        "step_time_ms": 1e3 * s.steady_elapsed_s / measured as f64, "samples_per_s": s.steady_samples_per_s * world as f64,
        "samples_seen": steps * (batch * world) as u64, "loss_first": s.first_loss, "loss_final": s.last_loss,
        "loss_final_avg10": s.last10_loss, "eval_loss": val.map(|v| v.loss), "eval_acc": val.and_then(|v| v.accuracy),
        "foreign_cpu_frac": null,
    })))
}

/// Push-and-pull throughput of one worker against parameter servers holding a model of
/// `model_bytes`: `iters` rounds of pushing a full gradient and pulling the full parameters.
/// Returns (bytes moved, seconds).
pub fn ps_load(
    rank: usize,
    world: usize,
    servers: &[String],
    model_bytes: usize,
    iters: usize,
    job: &str,
) -> Result<(u64, f64), String> {
    use shoal_train::ParamStore;
    let spec = shoal_train::bench::reference_mlp_ps_spec(1, world, servers.len(), "async");
    let mut client = crate::sync::PsClient::connect(
        job,
        1,
        rank,
        world,
        shoal_common::spec::PsMode::Async,
        spec,
        shard_infos(servers),
        Duration::from_secs(120),
        &crate::sync::PsAccess::default(),
    )
    .map_err(|e| e.to_string())?;
    let n = model_bytes / 4;
    let mut params = vec![0.001f32; n];
    if rank == 0 {
        client.init(&params, 1_000_000, None).map_err(|e| e.to_string())?;
    }
    client.pull(0, &mut params).map_err(|e| e.to_string())?;
    let grads = vec![0.0f32; n];
    let started = Instant::now();
    for step in 0..iters as u64 {
        client.push(step, &grads).map_err(|e| e.to_string())?;
        client.pull(step + 1, &mut params).map_err(|e| e.to_string())?;
    }
    Ok((2 * (n as u64) * 4 * iters as u64, started.elapsed().as_secs_f64()))
}
