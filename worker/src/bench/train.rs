//! `shoal bench train`: the reference MLP of `ddp_mlp.py` on one rank, or data-parallel over the
//! TCP ring, reported with the peer's field names.

use serde_json::{Value, json};
use shoal_common::spec::TrainConfig;
use shoal_train::{Collective, Host, Outcome, Peers, ReduceOp, Report, RunOptions, Stop, Summary, data, train};

use super::cpu::CpuSnapshot;
use super::error::BenchError;
use super::workloads;

/// The host of benchmark runs: nothing listens to the reports and nothing stops the run.
pub struct Silent;

impl Host for Silent {
    fn report(&mut self, _report: Report) {}

    fn stop(&self) -> Option<Stop> {
        None
    }
}

/// Matmul threads of this rank, as `shoal bench` sets them.
pub fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1)
}

/// Runs the reference MLP for `steps` steps (data-parallel when `collective` has several ranks,
/// each with the peers' per-rank batch) and returns the result record.
pub fn reference(steps: u64, warmup: u64, mut collective: Option<&mut dyn Collective>) -> Result<Value, BenchError> {
    let (rank, world) = collective.as_ref().map_or((0, 1), |c| (c.rank(), c.world_size()));
    let cfg = workloads::reference_mlp(steps)?;
    let splits = data::load(&cfg.dataset)?;
    let threads = threads();
    let opts = RunOptions { threads, warmup_steps: warmup, ..Default::default() };
    if let Some(c) = collective.as_mut() {
        c.all_reduce(&mut [0.0], ReduceOp::Sum)?;
    }
    let snapshot = CpuSnapshot::take();
    let wall = std::time::Instant::now();
    let peers = match collective.as_mut() {
        Some(c) => Peers::AllReduce(&mut **c),
        None => Peers::Alone,
    };
    let outcome = train(&cfg, splits, &opts, &mut Silent, peers)?;
    let foreign = snapshot
        .foreign_share(wall.elapsed().as_secs_f64(), collective.as_mut().map(|c| &mut **c as &mut dyn Collective));
    let Outcome::Completed(summary) = outcome else { return Err(BenchError::StoppedEarly { rank }) };
    Ok(record(&cfg, &summary, Measured { steps, warmup, world, threads }, Some(foreign)))
}

/// How a training benchmark was run.
#[derive(Clone, Copy)]
pub struct Measured {
    pub steps: u64,
    pub warmup: u64,
    pub world: usize,
    pub threads: usize,
}

/// The result record of a training benchmark, with the fields of `ddp_mlp.py`.
pub fn record(cfg: &TrainConfig, s: &Summary, run: Measured, foreign: Option<f64>) -> Value {
    let Measured { steps, warmup, world, threads } = run;
    let batch = cfg.training.batch_size;
    let measured = steps.saturating_sub(warmup).max(1);
    let val = s.validation.as_ref();
    json!({
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
    })
}
