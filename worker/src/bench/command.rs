//! The `shoal-worker bench ...` commands: their flags, the checks on them, and the JSON lines they
//! print on stdout (a `meta` header, then one record per measurement, from rank 0 only).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;
use shoal_train::Collective;

use super::allreduce::{self, AllReducePlan};
use super::analysis::{self, AnalysisPlan};
use super::compress::{self, CompressPlan};
use super::device::{self, Device, Opened};
use super::error::BenchError;
use super::pipeline::{self, PipelinePlan};
use super::train::Reference;
use super::{meta, parity, ps, rendezvous, train};

/// Deadline of benchmark collectives.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The benchmarks, each one rank of a run that `shoal bench` starts (or a person, across machines).
#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Train the peers' reference MLP (784-512-512-10, batch 128, SGD lr 0.05) on one worker, or
    /// on one GPU (`gpu_mlp.py`'s workload) with --device cuda.
    Train {
        #[arg(long, default_value_t = 400)]
        steps: u64,
        #[arg(long, default_value_t = 50)]
        warmup: u64,
        /// Samples per step and rank (the peers: 128; `gpu_mlp.py` also 1024 and 8192).
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// cpu, cuda (GPU 0) or cuda:N; a GPU needs the `cuda` feature and trains one rank.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Matrix products on a GPU: fp32 or tf32.
        #[arg(long, default_value = "fp32")]
        precision: String,
        /// This process's rank, and the number of ranks (data-parallel over the TCP ring). With
        /// several ranks it prints `addr HOST:PORT` and reads every rank's address from stdin.
        #[arg(long, default_value_t = 0)]
        rank: usize,
        #[arg(long, default_value_t = 1)]
        world: usize,
        /// Synchronise through these parameter servers (comma-separated addresses, one shard
        /// each) instead of the ring.
        #[arg(long, value_delimiter = ',')]
        ps_servers: Vec<String>,
        /// Parameter-server mode: async, ssp or sync.
        #[arg(long, default_value = "async")]
        ps_mode: String,
    },
    /// Train the reference MLP and the digits CNN on the CPU engine and on --device (fp32) from
    /// the same seed and data, compare every parameter, and resume the CNN from the device onto
    /// the CPU halfway. One JSON line per comparison.
    Parity {
        #[arg(long, default_value_t = 200)]
        steps: u64,
        /// cuda (GPU 0), cuda:N, or cpu (the CPU against itself: a check of the comparison).
        #[arg(long, default_value = "cuda")]
        device: String,
    },
    /// Train the reference MLP on one thread, make its compressed variants with the jobs and
    /// commands users run (int8, magnitude-pruned, structured-pruned, distilled) and time each
    /// artifact's inference at batch 1 and 256 on one thread, with `compress_mlp.py`'s fields.
    Compress {
        #[arg(long, default_value_t = 400)]
        train_steps: u64,
        /// Fine-tuning steps of the pruning jobs.
        #[arg(long, default_value_t = 100)]
        finetune_steps: u64,
        /// Share of the weights magnitude pruning removes.
        #[arg(long, default_value_t = 0.8)]
        sparsity: f64,
        /// Timed seconds per batch size and variant.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long, default_value = "fp32,int8,pruned,structured,distilled", value_delimiter = ',')]
        variants: Vec<String>,
        /// Keep the artifacts in this folder (default: a scratch folder, removed at the end).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The analysis commands on large generated files through this binary: `evaluate` with
    /// --slices slices and --resamples resamples, `monitor` on two files, without and with the
    /// model; one JSON line each with its target.
    Analysis {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 30)]
        features: usize,
        #[arg(long, default_value_t = 10)]
        slices: usize,
        #[arg(long, default_value_t = 1000)]
        resamples: usize,
        /// Keep the files and the model in this folder (default: a scratch folder, removed at
        /// the end).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Push-and-pull throughput against parameter servers: one rank of `shoal bench ps`.
    PsLoad {
        #[arg(long)]
        rank: usize,
        #[arg(long)]
        world: usize,
        #[arg(long, value_delimiter = ',', required = true)]
        servers: Vec<String>,
        #[arg(long, default_value_t = 100)]
        model_mb: usize,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Job id on the servers (each run needs its own).
        #[arg(long)]
        job: String,
    },
    /// Pipeline training of the peers' MLP: one stage of a run that `shoal bench pipeline` starts
    /// (it prints `addr HOST:PORT` and reads every stage's address from stdin).
    Pipeline {
        #[arg(long, default_value_t = 0)]
        rank: usize,
        #[arg(long, default_value_t = 2)]
        stages: usize,
        #[arg(long, default_value = "784,512,512,10", value_delimiter = ',')]
        dims: Vec<usize>,
        #[arg(long, default_value = "gpipe,1f1b", value_delimiter = ',')]
        schedules: Vec<String>,
        #[arg(long, default_value = "1,4,8,16", value_delimiter = ',')]
        microbatches: Vec<usize>,
        #[arg(long, default_value = "false,true", value_delimiter = ',')]
        recompute: Vec<bool>,
        #[arg(long, default_value_t = 100)]
        steps: u64,
        #[arg(long, default_value_t = 10)]
        warmup: u64,
    },
    /// All-reduce bandwidth over the TCP ring: one rank of a run that `shoal bench allreduce` starts.
    Allreduce {
        #[arg(long)]
        rank: usize,
        #[arg(long)]
        world: usize,
        #[arg(long, default_value = "4K,64K,1M,16M,64M,256M")]
        sizes: String,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        min_iters: usize,
        #[arg(long, default_value_t = 300)]
        max_iters: usize,
        /// Target timed seconds per size.
        #[arg(long, default_value_t = 2.0)]
        budget_s: f64,
        /// ring (TCP) or nccl (GPU 0 of each rank; needs the `cuda` feature).
        #[arg(long, default_value = "ring")]
        backend: String,
    },
}

/// Runs one benchmark and says how it ended: 0, 1 when it failed, 2 for bad flags.
pub fn run(which: Bench) -> ExitCode {
    match which {
        Bench::Train { steps, warmup, batch, device, precision, rank, world, ps_servers, .. }
            if ps_servers.is_empty() =>
        {
            let flags = TrainFlags { steps, warmup, batch, device: &device, precision: &precision, rank, world };
            match flags.check() {
                Ok((plan, device)) => train_ring(plan, device, rank, world),
                Err(e) => device_failed(&device, &e),
            }
        }
        Bench::Train { device, .. } if device != "cpu" => {
            fail(format!("--device `{device}`: only the CPU trains through parameter servers"), 2)
        }
        Bench::Train { batch, precision, .. } if batch != 128 || precision != "fp32" => fail(
            format!("--batch `{batch}` --precision `{precision}`: parameter-server runs take the peers' 128 and fp32"),
            2,
        ),
        Bench::Train { steps, warmup, rank, world, ps_servers, ps_mode, .. } => {
            match ps::reference(steps, warmup, rank, world, &ps_servers, &ps_mode) {
                Ok(Some(record)) => emit([meta::header("shoal_train"), record]),
                Ok(None) => ExitCode::SUCCESS,
                Err(e) => fail(format!("benchmark failed: {e}"), 1),
            }
        }
        Bench::PsLoad { rank, world, servers, model_mb, iters, job } => {
            match ps::push_pull(rank, world, &servers, model_mb << 20, iters.max(1), &job) {
                Ok((bytes, seconds)) => emit([serde_json::json!({"rank": rank, "bytes": bytes, "seconds": seconds})]),
                Err(e) => fail(format!("benchmark failed: {e}"), 1),
            }
        }
        Bench::Allreduce { rank, world, sizes, warmup, min_iters, max_iters, budget_s, backend } => {
            let plan = AllReducePlan { warmup, min_iters: min_iters.max(1), max_iters: max_iters.max(1), budget_s };
            all_reduce(rank, world, &sizes, &backend, &plan)
        }
        Bench::Parity { steps, device } => parity(steps, &device),
        Bench::Compress { train_steps, finetune_steps, sparsity, seconds, variants, dir } => {
            let plan =
                CompressPlan { train_steps, finetune_steps, sparsity, seconds, variants, dir: dir.unwrap_or_default() };
            bench_compress(plan)
        }
        Bench::Analysis { rows, features, slices, resamples, dir } => {
            bench_analysis(AnalysisPlan { rows, features, slices, resamples, dir: dir.unwrap_or_default() })
        }
        Bench::Pipeline { rank, stages, dims, schedules, microbatches, recompute, steps, warmup } => {
            let plan = PipelinePlan { dims, schedules, microbatches, recompute, steps, warmup, timeout: TIMEOUT };
            pipeline(rank, stages, &plan)
        }
    }
}

/// Prints records on stdout, one JSON line each.
fn emit(records: impl IntoIterator<Item = Value>) -> ExitCode {
    for r in records {
        println!("{r}");
    }
    ExitCode::SUCCESS
}

fn fail(message: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("shoal-worker: {message}");
    ExitCode::from(code)
}

/// The flags of `bench train` as given.
struct TrainFlags<'a> {
    steps: u64,
    warmup: u64,
    batch: usize,
    device: &'a str,
    precision: &'a str,
    rank: usize,
    world: usize,
}

/// The largest `--batch`.
const MAX_BATCH: usize = 16_384;

impl TrainFlags<'_> {
    /// Checks the flags and opens the device: the run's plan, or what is wrong, naming the flag.
    fn check(&self) -> Result<(Reference, Opened), BenchError> {
        let bad = |flag, value: String, expected| BenchError::BadFlag { flag, value, expected };
        if self.steps <= self.warmup {
            return Err(bad("--steps", self.steps.to_string(), "a number larger than --warmup"));
        }
        if self.world == 0 || self.rank >= self.world {
            return Err(bad("--rank", self.rank.to_string(), "a rank below --world"));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(bad("--batch", self.batch.to_string(), "between 1 and 16384"));
        }
        let device = Device::parse(self.device)?;
        let precision = device::parse_precision(self.precision)?;
        if device != Device::Cpu && self.world > 1 {
            return Err(bad("--device", self.device.to_owned(), "cpu when --world is above 1 (a GPU trains one rank)"));
        }
        let opened = device::open(device, precision)?;
        Ok((Reference { steps: self.steps, warmup: self.warmup, batch: self.batch }, opened))
    }
}

/// A device that cannot be opened is a usage error that names the flag.
fn device_failed(device: &str, e: &BenchError) -> ExitCode {
    match e {
        BenchError::BadFlag { .. } => fail(e, 2),
        _ => fail(format!("--device `{device}`: {e}"), 2),
    }
}

fn bench_compress(mut plan: CompressPlan) -> ExitCode {
    if plan.train_steps == 0 || plan.finetune_steps == 0 {
        return fail("--train-steps and --finetune-steps must be > 0", 2);
    }
    if !(0.0..1.0).contains(&plan.sparsity) {
        return fail(format!("--sparsity `{}`: expected a share in [0, 1)", plan.sparsity), 2);
    }
    if !(plan.seconds > 0.0 && plan.seconds <= 600.0) {
        return fail(format!("--seconds `{}`: expected a number in (0, 600]", plan.seconds), 2);
    }
    if let Some(v) = plan.variants.iter().find(|v| !compress::VARIANTS.contains(&v.as_str())) {
        return fail(format!("--variants `{v}`: expected some of {}", compress::VARIANTS.join(", ")), 2);
    }
    let scratch = match scratch(&mut plan.dir, "shoal-bench-compress-") {
        Ok(s) => s,
        Err(e) => return fail(e, 1),
    };
    println!("{}", meta::header("shoal_compress"));
    let result = compress::run(&plan);
    drop(scratch);
    match result {
        Ok(records) => emit(records),
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
    }
}

/// A scratch folder (removed when dropped) set into `dir` when it is empty; else `dir` is made.
fn scratch(dir: &mut PathBuf, prefix: &str) -> Result<Option<tempfile::TempDir>, BenchError> {
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&*dir).map_err(|source| BenchError::Scratch { source })?;
        return Ok(None);
    }
    let t = tempfile::Builder::new().prefix(prefix).tempdir().map_err(|source| BenchError::Scratch { source })?;
    *dir = t.path().to_path_buf();
    Ok(Some(t))
}

fn bench_analysis(mut plan: AnalysisPlan) -> ExitCode {
    if !(100..=100_000_000).contains(&plan.rows) {
        return fail(format!("--rows `{}`: expected between 100 and 100000000", plan.rows), 2);
    }
    if !(2..=1000).contains(&plan.features) {
        return fail(format!("--features `{}`: expected between 2 and 1000", plan.features), 2);
    }
    if !(1..=100).contains(&plan.slices) || !(1..=100_000).contains(&plan.resamples) {
        return fail("--slices must be between 1 and 100, --resamples between 1 and 100000", 2);
    }
    let scratch = match scratch(&mut plan.dir, "shoal-bench-analysis-") {
        Ok(s) => s,
        Err(e) => return fail(e, 1),
    };
    println!("{}", meta::header("shoal_analysis"));
    let result = analysis::run(&plan);
    drop(scratch);
    match result {
        Ok(records) => emit(records),
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
    }
}

fn parity(steps: u64, device: &str) -> ExitCode {
    if !(2..=100_000).contains(&steps) {
        return fail(format!("--steps `{steps}`: expected between 2 and 100000"), 2);
    }
    let opened = match Device::parse(device).and_then(|d| device::open(d, shoal_common::spec::Precision::Fp32)) {
        Ok(o) => o,
        Err(e) => return device_failed(device, &e),
    };
    println!("{}", meta::header("parity"));
    match parity::run(steps, &opened) {
        Ok(records) => emit(records),
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
    }
}

fn train_ring(plan: Reference, device: Opened, rank: usize, world: usize) -> ExitCode {
    let mut ring = None;
    if world > 1 {
        match rendezvous::join_ring(rank, world, TIMEOUT) {
            Ok(r) => ring = Some(r),
            Err(e) => return fail(e, 1),
        }
    }
    let collective = ring.as_mut().map(|r| r as &mut dyn Collective);
    match train::reference(plan, &device, collective) {
        Ok(record) if rank == 0 => emit([meta::header("shoal_train"), record]),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
    }
}

fn pipeline(rank: usize, stages: usize, plan: &PipelinePlan) -> ExitCode {
    if stages == 0 || rank >= stages {
        return fail("--rank must be below --stages", 2);
    }
    if plan.dims.len() < stages + 1 || plan.dims.contains(&0) {
        return fail(format!("--dims: {stages} stages need at least {} positive widths", stages + 1), 2);
    }
    if plan.steps <= plan.warmup {
        return fail("--steps must be larger than --warmup", 2);
    }
    if let Some(m) = plan.microbatches.iter().find(|&&m| m == 0 || m > 512) {
        return fail(format!("--microbatches: {m} is not between 1 and the batch (512)"), 2);
    }
    if let Some(s) = plan.schedules.iter().find(|s| !matches!(s.as_str(), "gpipe" | "1f1b")) {
        return fail(format!("--schedules: `{s}` is not gpipe or 1f1b"), 2);
    }
    if stages == 1 {
        println!("{}", meta::header("shoal_pipeline"));
        return match pipeline::baseline(plan) {
            Ok(records) => emit(records),
            Err(e) => fail(format!("benchmark failed: {e}"), 1),
        };
    }
    let mut stage = match pipeline::join(rank, stages, plan.timeout) {
        Ok(s) => s,
        Err(e) => return fail(format!("benchmark failed: {e}"), 1),
    };
    if rank == 0 {
        println!("{}", meta::header("shoal_pipeline"));
    }
    match pipeline::run(&mut stage, plan) {
        Ok(records) => emit(records),
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
    }
}

fn all_reduce(rank: usize, world: usize, sizes: &str, backend: &str, plan: &AllReducePlan) -> ExitCode {
    let sizes = match allreduce::parse_sizes(sizes) {
        Ok(s) => s,
        Err(e) => return fail(format!("--sizes: {e}"), 2),
    };
    if world == 0 || rank >= world {
        return fail("--rank must be below --world", 2);
    }
    let joined = match backend {
        "ring" => rendezvous::join_ring(rank, world, TIMEOUT).map(|r| Box::new(r) as Box<dyn Collective>),
        "nccl" => rendezvous::join_nccl(rank, world, TIMEOUT),
        other => return fail(format!("--backend `{other}`: expected ring or nccl"), 2),
    };
    let mut collective = match joined {
        Ok(c) => c,
        Err(e) => return fail(e, 1),
    };
    if rank == 0 {
        println!("{}", meta::header("shoal_allreduce"));
    }
    let mut records = match allreduce::measure(collective.as_mut(), &sizes, plan, backend) {
        Ok(records) => records,
        Err(e) => return fail(format!("benchmark failed: {e}"), 1),
    };
    if backend == "nccl" {
        // The same sizes again on buffers in GPU memory, as training sums its gradients.
        let opened = match device::open(Device::Cuda(0), shoal_common::spec::Precision::Fp32) {
            Ok(o) => o,
            Err(e) => return fail(format!("benchmark failed: {e}"), 1),
        };
        let Some(gpu) = opened.backend else { return fail("benchmark failed: no GPU backend", 1) };
        match allreduce::measure_device(collective.as_mut(), gpu.as_ref(), &sizes, plan, backend) {
            Ok(more) => records.extend(more),
            Err(e) => return fail(format!("benchmark failed: {e}"), 1),
        }
    }
    emit(records)
}
