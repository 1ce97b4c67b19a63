//! `shoal bench pipeline`: the peers' pipeline workload (`pipeline_gpipe.py`) with every stage in
//! its own process, linked over loopback TCP. For each (schedule, recompute, micro-batches) the
//! stages train the reference MLP, then gather their busy times on the first stage, which prints
//! the peers' fields plus peak activation memory per stage.

use std::io::BufRead;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_train::pipeline::{PipePeers, bubble_theory};
use shoal_train::{Collective, Outcome, Peers, ReduceOp, RunOptions, data, train};

use crate::bench::{CpuSnapshot, Silent};
use crate::sync::{DataPlane, PeerInfo, PipeLink, Ring};

/// What to measure.
pub struct PipelinePlan {
    pub dims: Vec<usize>,
    pub schedules: Vec<String>,
    pub microbatches: Vec<usize>,
    pub recompute: Vec<bool>,
    pub steps: u64,
    pub warmup: u64,
    pub timeout: Duration,
}

/// Per-stage figures gathered on every rank: [forward s, backward s, forwards, backwards, wall s,
/// peak activation bytes, steps, receive wait s, update s].
const STATS: usize = 9;

/// Runs stage `rank` of `stages` through every configuration; the first stage returns the records.
pub fn pipeline(rank: usize, stages: usize, plan: &PipelinePlan) -> Result<Vec<Value>, String> {
    if stages == 1 {
        println!("{}", crate::bench::meta("shoal_pipeline"));
        return baseline(plan);
    }
    let plane = DataPlane::bind("127.0.0.1:0").map_err(|e| format!("cannot bind the data plane: {e}"))?;
    println!("addr {}", plane.addr());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the peer list: {e}"))?;
    let peers: Vec<PeerInfo> =
        line.trim().split(',').enumerate().map(|(r, a)| PeerInfo::local(r, a.to_owned())).collect();
    if peers.len() != stages {
        return Err(format!("expected {stages} stage addresses, got {}", peers.len()));
    }
    if rank == 0 {
        println!("{}", crate::bench::meta("shoal_pipeline"));
    }
    // A ring over all stages lines up the runs and gathers the figures.
    let mut ring =
        Ring::connect(&plane, "bench-pipeline", 0, rank, peers.clone(), plan.timeout).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    let mut attempt = 0;
    for schedule in &plan.schedules {
        for &recompute in &plan.recompute {
            for &m in &plan.microbatches {
                attempt += 1;
                let spec =
                    shoal_train::bench::reference_pipeline_spec(&plan.dims, plan.steps, stages, m, schedule, recompute);
                let cfg = shoal_common::spec::validate(&spec).map_err(|e| format!("bad reference spec: {e:?}"))?;
                let splits = data::load(&cfg.dataset).map_err(|e| e.to_string())?;
                let prev = (rank > 0).then(|| peers[rank - 1].clone());
                let next = (rank + 1 < stages).then(|| peers[rank + 1].clone());
                let mut link =
                    PipeLink::connect(&plane, "bench-pipeline", attempt, rank, rank, stages, prev, next, plan.timeout)
                        .map_err(|e| e.to_string())?;
                ring.all_reduce(&mut [0.0], ReduceOp::Sum).map_err(|e| e.to_string())?;
                let snapshot = CpuSnapshot::take();
                let wall = std::time::Instant::now();
                let opts = RunOptions { threads: 1, warmup_steps: plan.warmup, ..Default::default() };
                let peers = Peers::Pipeline(PipePeers { link: &mut link, replicas: None });
                let outcome = train(&cfg, splits, &opts, &mut Silent, peers).map_err(|e| e.to_string())?;
                drop(link);
                let foreign =
                    snapshot.foreign_share(wall.elapsed().as_secs_f64(), Some(&mut ring as &mut dyn Collective));
                let Outcome::Completed(summary) = outcome else { return Err("the run stopped early".into()) };
                let st = summary.pipeline.clone().ok_or("no stage statistics")?;
                let mut table = vec![0f32; STATS * stages];
                let mine = [
                    st.forward_s,
                    st.backward_s,
                    st.forwards as f64,
                    st.backwards as f64,
                    st.wall_s,
                    st.peak_activation_bytes as f64,
                    st.steps as f64,
                    st.recv_wait_s,
                    st.update_s,
                ];
                for (i, v) in mine.iter().enumerate() {
                    table[rank * STATS + i] = *v as f32;
                }
                ring.all_reduce(&mut table, ReduceOp::Sum).map_err(|e| e.to_string())?;
                if rank == 0 {
                    let row = |s: usize, i: usize| f64::from(table[s * STATS + i]);
                    let wall = (0..stages).map(|s| row(s, 4)).fold(0.0, f64::max).max(1e-9);
                    let iters = row(0, 6);
                    let bubbles: Vec<f64> =
                        (0..stages).map(|s| (1.0 - (row(s, 0) + row(s, 1)) / wall).max(0.0)).collect();
                    let peak: Vec<u64> = (0..stages).map(|s| row(s, 5) as u64).collect();
                    let batch = 512;
                    records.push(json!({
                        "bench": "shoal_pipeline",
                        "schedule": schedule,
                        "recompute": recompute,
                        "stages": stages,
                        "microbatches": m,
                        "batch": batch,
                        "micro_batch": batch / m,
                        "threads_per_rank": 1,
                        "dims": plan.dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                        "bounds": st.bounds,
                        "iters": iters,
                        "warmup": plan.warmup,
                        "wall_s": wall,
                        "step_time_ms": 1e3 * wall / iters.max(1.0),
                        "samples_per_s": batch as f64 * iters / wall,
                        "loss_step0": summary.first_loss,
                        "loss_final": summary.last_loss,
                        "fwd_ms_per_mb": (0..stages).map(|s| 1e3 * row(s, 0) / row(s, 2).max(1.0)).collect::<Vec<_>>(),
                        "bwd_ms_per_mb": (0..stages).map(|s| 1e3 * row(s, 1) / row(s, 3).max(1.0)).collect::<Vec<_>>(),
                        "recv_wait_ms_per_step": (0..stages).map(|s| 1e3 * row(s, 7) / iters.max(1.0)).collect::<Vec<_>>(),
                        "update_ms_per_step": (0..stages).map(|s| 1e3 * row(s, 8) / iters.max(1.0)).collect::<Vec<_>>(),
                        "bubble_per_stage": bubbles,
                        "bubble_bottleneck": bubbles.iter().copied().fold(1.0, f64::min),
                        "bubble_mean": bubbles.iter().sum::<f64>() / stages as f64,
                        "bubble_theory": bubble_theory(stages, m),
                        "peak_activation_bytes_per_stage": peak,
                        "peak_activation_mb_per_stage": peak.iter().map(|b| *b as f64 / (1 << 20) as f64).collect::<Vec<_>>(),
                        "foreign_cpu_frac": foreign,
                    }));
                }
            }
        }
    }
    Ok(records)
}

/// The non-pipelined baseline: one process accumulating over the same micro-batches.
fn baseline(plan: &PipelinePlan) -> Result<Vec<Value>, String> {
    let mut records = Vec::new();
    for &m in &plan.microbatches {
        let spec = shoal_train::bench::reference_pipeline_spec(&plan.dims, plan.steps, 1, m, "gpipe", false);
        let cfg = shoal_common::spec::validate(&spec).map_err(|e| format!("bad reference spec: {e:?}"))?;
        let splits = data::load(&cfg.dataset).map_err(|e| e.to_string())?;
        let snapshot = CpuSnapshot::take();
        let wall = std::time::Instant::now();
        let opts = RunOptions { threads: 1, warmup_steps: plan.warmup, ..Default::default() };
        let outcome = train(&cfg, splits, &opts, &mut Silent, Peers::Alone).map_err(|e| e.to_string())?;
        let foreign = snapshot.foreign_share(wall.elapsed().as_secs_f64(), None::<&mut dyn Collective>);
        let Outcome::Completed(s) = outcome else { return Err("the run stopped early".into()) };
        let iters = plan.steps - plan.warmup;
        records.push(json!({
            "bench": "shoal_pipeline",
            "schedule": "none",
            "recompute": false,
            "stages": 1,
            "microbatches": m,
            "batch": 512,
            "micro_batch": 512 / m,
            "threads_per_rank": 1,
            "dims": plan.dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            "iters": iters,
            "warmup": plan.warmup,
            "wall_s": s.steady_elapsed_s,
            "step_time_ms": 1e3 * s.steady_elapsed_s / iters.max(1) as f64,
            "samples_per_s": s.steady_samples_per_s,
            "loss_step0": s.first_loss,
            "loss_final": s.last_loss,
            "foreign_cpu_frac": foreign,
        }));
    }
    Ok(records)
}
