//! `shoal bench pipeline`: the peers' pipeline workload (`pipeline_gpipe.py`) with every stage in
//! its own process, linked over loopback TCP. For each (schedule, recompute, micro-batches) the
//! stages train the reference MLP, then gather their busy times on the first stage, which returns
//! the peers' fields plus peak activation memory per stage.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_train::pipeline::{PipePeers, StageStats, bubble_theory};
use shoal_train::{Collective, Outcome, Peers, ReduceOp, RunOptions, Summary, data, train};
use shoal_worker::sync::{DataPlane, PeerInfo, PipeLink, Ring};

use super::cpu::CpuSnapshot;
use super::error::BenchError;
use super::rendezvous;
use super::train::Silent;
use super::workloads;

/// The batch of the peers' pipeline workload, cut into micro-batches.
const BATCH: usize = 512;

/// Job name of the pipeline benchmark's links on the data plane.
const JOB: &str = "bench-pipeline";

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

/// One stage of a pipeline benchmark, introduced to the others.
pub struct Stage {
    rank: usize,
    plane: DataPlane,
    peers: Vec<PeerInfo>,
    /// A ring over all stages lines up the runs and gathers the figures.
    ring: Ring,
}

/// Binds this stage's data plane, prints its address, reads every stage's and joins their ring.
pub fn join(rank: usize, stages: usize, timeout: Duration) -> Result<Stage, BenchError> {
    let plane = rendezvous::bind()?;
    let peers = rendezvous::peers(&plane, stages, "stage")?;
    let ring = Ring::connect(&plane, JOB, 0, rank, peers.clone(), timeout)?;
    Ok(Stage { rank, plane, peers, ring })
}

/// Runs `stage` through every configuration of `plan`; the first stage returns the records.
pub fn run(stage: &mut Stage, plan: &PipelinePlan) -> Result<Vec<Value>, BenchError> {
    let (rank, stages) = (stage.rank, stage.peers.len());
    let mut records = Vec::new();
    let mut attempt = 0;
    for schedule in &plan.schedules {
        for &recompute in &plan.recompute {
            for &m in &plan.microbatches {
                attempt += 1;
                let spec = workloads::reference_pipeline_spec(&plan.dims, plan.steps, stages, m, schedule, recompute)?;
                let cfg = workloads::validated("bench-reference-pipeline", &spec)?;
                let splits = data::load(&cfg.dataset)?;
                let prev = (rank > 0).then(|| stage.peers[rank - 1].clone());
                let next = (rank + 1 < stages).then(|| stage.peers[rank + 1].clone());
                let mut link =
                    PipeLink::connect(&stage.plane, JOB, attempt, rank, rank, stages, prev, next, plan.timeout)?;
                stage.ring.all_reduce(&mut [0.0], ReduceOp::Sum)?;
                let snapshot = CpuSnapshot::take();
                let wall = Instant::now();
                let opts = RunOptions { threads: 1, warmup_steps: plan.warmup, ..Default::default() };
                let peers = Peers::Pipeline(PipePeers { link: &mut link, replicas: None });
                let outcome = train(&cfg, splits, &opts, &mut Silent, peers)?;
                drop(link);
                let ring: &mut dyn Collective = &mut stage.ring;
                let foreign = snapshot.foreign_share(wall.elapsed().as_secs_f64(), Some(&mut *ring));
                let Outcome::Completed(summary) = outcome else { return Err(BenchError::StoppedEarly { rank }) };
                let st = summary.pipeline.as_ref().ok_or(BenchError::NoStageStats { rank })?;
                let table = gather(ring, rank, stages, st)?;
                if rank == 0 {
                    let run = Configuration { schedule, recompute, microbatches: m, foreign };
                    records.push(record(plan, &run, &summary, st, &table, stages));
                }
            }
        }
    }
    Ok(records)
}

/// Sums every stage's figures into one table of `STATS` values per stage.
fn gather(ring: &mut dyn Collective, rank: usize, stages: usize, st: &StageStats) -> Result<Vec<f32>, BenchError> {
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
    ring.all_reduce(&mut table, ReduceOp::Sum)?;
    Ok(table)
}

/// One measured configuration.
struct Configuration<'a> {
    schedule: &'a str,
    recompute: bool,
    microbatches: usize,
    foreign: f64,
}

/// The record of one configuration, from the first stage's summary and every stage's figures.
fn record(
    plan: &PipelinePlan,
    run: &Configuration<'_>,
    summary: &Summary,
    st: &StageStats,
    table: &[f32],
    stages: usize,
) -> Value {
    let m = run.microbatches;
    let row = |s: usize, i: usize| f64::from(table[s * STATS + i]);
    let wall = (0..stages).map(|s| row(s, 4)).fold(0.0, f64::max).max(1e-9);
    let iters = row(0, 6);
    let bubbles: Vec<f64> = (0..stages).map(|s| (1.0 - (row(s, 0) + row(s, 1)) / wall).max(0.0)).collect();
    let peak: Vec<u64> = (0..stages).map(|s| row(s, 5) as u64).collect();
    let per_stage = |f: &dyn Fn(usize) -> f64| (0..stages).map(f).collect::<Vec<_>>();
    json!({
        "bench": "shoal_pipeline",
        "schedule": run.schedule,
        "recompute": run.recompute,
        "stages": stages,
        "microbatches": m,
        "batch": BATCH,
        "micro_batch": BATCH / m,
        "threads_per_rank": 1,
        "dims": dims(plan),
        "bounds": st.bounds,
        "iters": iters,
        "warmup": plan.warmup,
        "wall_s": wall,
        "step_time_ms": 1e3 * wall / iters.max(1.0),
        "samples_per_s": BATCH as f64 * iters / wall,
        "loss_step0": summary.first_loss,
        "loss_final": summary.last_loss,
        "fwd_ms_per_mb": per_stage(&|s| 1e3 * row(s, 0) / row(s, 2).max(1.0)),
        "bwd_ms_per_mb": per_stage(&|s| 1e3 * row(s, 1) / row(s, 3).max(1.0)),
        "recv_wait_ms_per_step": per_stage(&|s| 1e3 * row(s, 7) / iters.max(1.0)),
        "update_ms_per_step": per_stage(&|s| 1e3 * row(s, 8) / iters.max(1.0)),
        "bubble_per_stage": bubbles,
        "bubble_bottleneck": bubbles.iter().copied().fold(1.0, f64::min),
        "bubble_mean": bubbles.iter().sum::<f64>() / stages as f64,
        "bubble_theory": bubble_theory(stages, m),
        "peak_activation_bytes_per_stage": peak,
        "peak_activation_mb_per_stage": peak.iter().map(|b| *b as f64 / (1 << 20) as f64).collect::<Vec<_>>(),
        "foreign_cpu_frac": run.foreign,
    })
}

/// The layer widths as the peers print them: `784,512,512,10`.
fn dims(plan: &PipelinePlan) -> String {
    plan.dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The non-pipelined baseline: one process accumulating over the same micro-batches.
pub fn baseline(plan: &PipelinePlan) -> Result<Vec<Value>, BenchError> {
    let mut records = Vec::new();
    for &m in &plan.microbatches {
        let spec = workloads::reference_pipeline_spec(&plan.dims, plan.steps, 1, m, "gpipe", false)?;
        let cfg = workloads::validated("bench-reference-pipeline", &spec)?;
        let splits = data::load(&cfg.dataset)?;
        let snapshot = CpuSnapshot::take();
        let wall = Instant::now();
        let opts = RunOptions { threads: 1, warmup_steps: plan.warmup, ..Default::default() };
        let outcome = train(&cfg, splits, &opts, &mut Silent, Peers::Alone)?;
        let foreign = snapshot.foreign_share(wall.elapsed().as_secs_f64(), None);
        let Outcome::Completed(s) = outcome else { return Err(BenchError::StoppedEarly { rank: 0 }) };
        let iters = plan.steps - plan.warmup;
        records.push(json!({
            "bench": "shoal_pipeline",
            "schedule": "none",
            "recompute": false,
            "stages": 1,
            "microbatches": m,
            "batch": BATCH,
            "micro_batch": BATCH / m,
            "threads_per_rank": 1,
            "dims": dims(plan),
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
