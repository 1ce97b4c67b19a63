//! `shoal-worker bench train`: trains the peers' reference MLP on this process (one worker, the
//! threads RAYON_NUM_THREADS allows) through the regular training loop and describes the run with
//! the field names of `../shared/peers/ddp_mlp.py`.

use serde_json::{Value, json};
use shoal_train::{Host, Outcome, Report, RunOptions, Stop, data, train};

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
                let v: Vec<f64> = s
                    .lines()
                    .next()?
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
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
        Self {
            machine_busy_s,
            own_s,
        }
    }

    /// Share of the machine used by other processes since `self`, over `wall` seconds.
    pub fn foreign_share(&self, wall: f64) -> f64 {
        let now = Self::take();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let foreign =
            ((now.machine_busy_s - self.machine_busy_s) - (now.own_s - self.own_s)).max(0.0);
        (foreign / (wall.max(1e-9) * cores) * 1000.0).round() / 1000.0
    }
}

struct Silent;

impl Host for Silent {
    fn report(&mut self, _report: Report) {}

    fn stop(&self) -> Option<Stop> {
        None
    }
}

/// Runs the reference MLP for `steps` steps and returns the result record.
pub fn train_reference(steps: u64, warmup: u64) -> Result<Value, shoal_train::TrainError> {
    let cfg = shoal_train::bench::reference_mlp(steps);
    let splits = data::load(&cfg.dataset)?;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    let opts = RunOptions {
        threads,
        warmup_steps: warmup,
        ..Default::default()
    };
    let snapshot = CpuSnapshot::take();
    let wall = std::time::Instant::now();
    let outcome = train(&cfg, splits, &opts, &mut Silent)?;
    let foreign = snapshot.foreign_share(wall.elapsed().as_secs_f64());
    let Outcome::Completed(s) = outcome else {
        return Err(shoal_train::TrainError::Loader(
            "the benchmark run stopped early".into(),
        ));
    };
    let batch = cfg.training.batch_size;
    let measured = steps.saturating_sub(warmup).max(1);
    let val = s.validation.as_ref();
    Ok(json!({
        "bench": "shoal_train",
        "world_size": 1,
        "threads_per_rank": threads,
        "threads_arg": threads,
        "batch_per_rank": batch,
        "global_batch": batch,
        "steps": steps,
        "warmup": warmup,
        "lr": cfg.optimizer.lr,
        "elapsed_s": s.steady_elapsed_s,
        "step_time_ms": 1e3 * s.steady_elapsed_s / measured as f64,
        "samples_per_s": s.steady_samples_per_s,
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
