//! `shoal bench train`: the reference MLP of `ddp_mlp.py` on one rank, or data-parallel over the
//! TCP ring, reported with the peer's field names; on one GPU it is the workload of `gpu_mlp.py`
//! and adds that peer's `device` and `precision` (and the GPU's name).

use serde_json::{Value, json};
use shoal_common::spec::{TrainConfig, load_toml};
use shoal_train::{
    Collective, Host, Outcome, Peers, ReduceOp, Report, RunOptions, Stop, Summary, checkpoint, data, train,
};

use super::cpu::CpuSnapshot;
use super::device::{Opened, precision_name};
use super::error::BenchError;
use super::workloads;

/// The host of benchmark runs: nothing listens to the reports and nothing stops the run.
pub struct Silent;

/// Trains the job `text` on one thread into a fresh `root` and returns its final checkpoint;
/// `workload` names the benchmark in errors.
pub fn train_job(
    root: &std::path::Path,
    text: String,
    workload: &'static str,
) -> Result<std::path::PathBuf, BenchError> {
    let (_, cfg) = load_toml(&text).map_err(|e| BenchError::Workload { workload, reason: e.to_string() })?;
    let _ = std::fs::remove_dir_all(root);
    let opts = RunOptions {
        threads: 1,
        checkpoint_dir: Some(root.to_path_buf()),
        spec_toml: text,
        keep_checkpoints: 1,
        ..Default::default()
    };
    let outcome = train(&cfg, data::load(&cfg.dataset)?, &opts, &mut Silent, Peers::Alone)?;
    let Outcome::Completed(_) = outcome else { return Err(BenchError::StoppedEarly { rank: 0 }) };
    checkpoint::latest(root).ok_or(BenchError::NoCheckpoint { what: workload.into() })
}

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

/// Training FLOPs per sample of the reference MLP as `gpu_mlp.py` counts them.
const REFERENCE_FLOPS_PER_SAMPLE: f64 = 6.0 * (784.0 * 512.0 + 512.0 * 512.0 + 512.0 * 10.0);

/// How to run the reference MLP.
#[derive(Clone, Copy)]
pub struct Reference {
    pub steps: u64,
    pub warmup: u64,
    /// Samples per step and rank.
    pub batch: usize,
}

/// Runs the reference MLP for `steps` steps on `device` (data-parallel when `collective` has
/// several ranks, each with `batch` samples per step) and returns the result record.
pub fn reference(
    plan: Reference,
    device: &Opened,
    mut collective: Option<&mut dyn Collective>,
) -> Result<Value, BenchError> {
    let Reference { steps, warmup, batch } = plan;
    let (rank, world) = collective.as_ref().map_or((0, 1), |c| (c.rank(), c.world_size()));
    let cfg = workloads::reference_mlp(steps, batch)?;
    let splits = data::load(&cfg.dataset)?;
    let threads = threads();
    let opts = RunOptions { threads, warmup_steps: warmup, backend: device.backend.clone(), ..Default::default() };
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
    let mut out = record(&cfg, &summary, Measured { steps, warmup, world, threads }, Some(foreign));
    out["device"] = json!(device.device.to_string());
    out["gpu"] = json!(device.gpu);
    out["precision"] = json!(precision_name(device.precision));
    // The peer's figure: 6 FLOPs per weight and sample (forward, and backward for both the input
    // and the weight gradients), biases not counted.
    out["tflops"] = json!(out["samples_per_s"].as_f64().unwrap_or(0.0) * REFERENCE_FLOPS_PER_SAMPLE / 1e12);
    Ok(out)
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
