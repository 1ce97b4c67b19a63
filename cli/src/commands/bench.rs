//! `shoal bench`: benchmarks that mirror the PyTorch peers in `shared/peers`. They run in worker
//! processes (the CLI itself links no training code) and print JSON lines on stdout. Multi-rank
//! benchmarks start one process per rank on this machine, connected over loopback TCP: each rank
//! prints its data-plane address, and this command hands every rank the full list.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Subcommand;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::local::{param_server_binary, worker_binary};
use crate::error::CliError;

/// How long a rank may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand, Debug)]
pub enum Which {
    /// What watching costs: the reference MLP trains as a real job in rounds alternating between
    /// nobody watching and an open job page's update poll plus a scrape of every `/metrics`, each
    /// second (samples/s of both and their ratio; target >= 0.97); then a finished job with
    /// `--points` metric points opens (the job page's time to answer; target < 2 s).
    Dashboard {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Training steps per run.
        #[arg(long, default_value_t = 1500)]
        steps: u64,
        /// Metric points of the job whose page opens.
        #[arg(long, default_value_t = 100_000)]
        points: u64,
    },
    /// Train the peers' reference MLP (784-512-512-10, batch 128 per rank, SGD lr 0.05) with one
    /// thread per rank, as `ddp_mlp.py` does; data-parallel over the TCP ring with --ranks > 1. With
    /// --device cuda it trains on one GPU, the workload of `gpu_mlp.py`.
    Train {
        #[arg(long, default_value_t = 400)]
        steps: u64,
        #[arg(long, default_value_t = 50)]
        warmup: u64,
        /// Data-parallel ranks, each a separate process.
        #[arg(long, default_value_t = 1)]
        ranks: usize,
        /// Matmul threads per rank.
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// Samples per step and rank (`gpu_mlp.py` measures 128, 1024 and 8192).
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// cpu, cuda (GPU 0) or cuda:N; a GPU needs a worker built with the `cuda` feature.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Matrix products on a GPU: fp32 or tf32.
        #[arg(long, default_value = "fp32")]
        precision: String,
    },
    /// Numerics of a GPU against the CPU engine: the reference MLP and the digits CNN trained from
    /// the same seed and data on both, every parameter compared (relative difference
    /// |a-b|/max(|a|,|b|,1e-3), within 1e-4 expected), and the CNN resumed from the GPU's
    /// checkpoint onto the CPU halfway. One JSON line per comparison.
    Parity {
        #[arg(long, default_value_t = 200)]
        steps: u64,
        /// cuda (GPU 0) or cuda:N; cpu compares the CPU with itself.
        #[arg(long, default_value = "cuda")]
        device: String,
        /// Matmul threads of the CPU runs.
        #[arg(long, default_value_t = 1)]
        threads: u32,
    },
    /// All-reduce bandwidth of the TCP ring between separate processes over loopback, timed like
    /// `allreduce_gloo.py` (barrier, one all-reduce, maximum over ranks). Run it on real machines'
    /// addresses through a job to check a cluster's network.
    Allreduce {
        /// World sizes to measure.
        #[arg(long, default_value = "2,4", value_delimiter = ',')]
        ranks: Vec<usize>,
        /// Bytes per rank (binary units).
        #[arg(long, default_value = "4K,64K,1M,16M,64M,256M")]
        sizes: String,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        min_iters: usize,
        #[arg(long, default_value_t = 300)]
        max_iters: usize,
        /// Target timed seconds per (ranks, size).
        #[arg(long, default_value_t = 2.0)]
        budget_s: f64,
        /// ring (TCP between the rank processes) or nccl (GPU 0 of each rank; needs a worker built
        /// with the `cuda` feature).
        #[arg(long, default_value = "ring")]
        backend: String,
    },
    /// Pipeline training of the peers' reference MLP (`pipeline_gpipe.py`): batch 512 cut into
    /// micro-batches, one process and one thread per stage linked over loopback TCP. Prints
    /// samples/s, the idle share (bubble) of every stage next to (K-1)/(M+K-1), and peak
    /// activation memory per stage, for each schedule with and without recomputation. Stage
    /// count 1 runs the non-pipelined baseline.
    Pipeline {
        #[arg(long, default_value = "2,4", value_delimiter = ',')]
        stages: Vec<usize>,
        #[arg(long, default_value = "1,4,8,16", value_delimiter = ',')]
        microbatches: Vec<usize>,
        #[arg(long, default_value = "gpipe,1f1b", value_delimiter = ',')]
        schedule: Vec<String>,
        /// Recomputation settings to measure.
        #[arg(long, default_value = "false,true", value_delimiter = ',')]
        recompute: Vec<bool>,
        /// Layer widths; default 784,512,512,10, and 784,512,512,512,10 for more than 3 stages.
        #[arg(long, value_delimiter = ',')]
        dims: Vec<usize>,
        #[arg(long, default_value_t = 100)]
        steps: u64,
        #[arg(long, default_value_t = 10)]
        warmup: u64,
    },
    /// Architecture and hyperparameter search strategies on a simulated objective (no training):
    /// every strategy with and without ASHA and learning-curve stopping, over several seeds, on a
    /// simulated cluster. Prints one line per run (best value against trials and simulated time,
    /// worker utilisation) and a summary per variant with ratios against random search.
    Search {
        #[arg(long, default_value = "grid,random,tpe,evolution,reinforce", value_delimiter = ',')]
        strategies: Vec<String>,
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Simulated workers (trials at once).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Trials per search.
        #[arg(long, default_value_t = 100)]
        trials: usize,
        /// Budget units (epochs) of a full trial.
        #[arg(long, default_value_t = 27.0)]
        budget: f64,
    },
    /// Compression of the peers' reference MLP, the workload of `compress_mlp.py`: trains it, then
    /// measures fp32, int8 (post-training), magnitude-pruned (sparse), structured (half the hidden
    /// units) and distilled variants on one thread: accuracy and its drop, artifact bytes, latency
    /// at batch 1 and throughput at batch 256, one JSON line per variant. The options are the
    /// worker's (`shoal bench compress --help` lists them); they pass through unchanged.
    #[command(disable_help_flag = true)]
    Compress {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The analysis commands on large generated files (1 million rows of 30 features by
    /// default): `evaluate` with 10 slices and 1,000 bootstrap resamples, `monitor` on two files
    /// without and with the model, timed through the worker binary on one core, one JSON line
    /// each with its target. The options are the worker's; they pass through unchanged.
    #[command(disable_help_flag = true)]
    Analysis {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Parameter servers: push+pull throughput of a model against 1 and 2 shards with 1, 2 and 4
    /// workers, then the reference MLP at 2 workers under async, ssp, sync and the ring
    /// all-reduce, with the loss each reaches after the same number of samples.
    Ps {
        #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
        workers: Vec<usize>,
        #[arg(long, default_value = "1,2", value_delimiter = ',')]
        shards: Vec<usize>,
        /// Size of the model whose gradient is pushed and parameters pulled.
        #[arg(long, default_value_t = 100)]
        model_mb: usize,
        /// Push+pull rounds per worker.
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Training steps per mode (0 skips the training comparison).
        #[arg(long, default_value_t = 400)]
        train_steps: u64,
        #[arg(long, default_value_t = 50)]
        warmup: u64,
    },
}

pub async fn run(which: Which) -> Result<ExitCode, CliError> {
    match which {
        Which::Search { strategies, seeds, workers, trials, budget } => {
            super::search::bench(&strategies, seeds, workers, trials, budget)
        }
        Which::Pipeline { stages, microbatches, schedule, recompute, dims, steps, warmup } => {
            if stages.iter().any(|&k| k == 0 || k > 16) {
                return Err(CliError::usage("--stages: stage counts must be between 1 and 16"));
            }
            if microbatches.iter().any(|&m| m == 0 || m > 512) {
                return Err(CliError::usage("--microbatches: must be between 1 and the batch (512)"));
            }
            if let Some(s) = schedule.iter().find(|s| !matches!(s.as_str(), "gpipe" | "1f1b")) {
                return Err(CliError::usage(format!("--schedule `{s}`: expected gpipe or 1f1b")));
            }
            if steps <= warmup {
                return Err(CliError::usage("--steps must be larger than --warmup"));
            }
            let join = |v: &[String]| v.join(",");
            let list = |v: &[usize]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
            for k in stages {
                let dims = if !dims.is_empty() {
                    dims.clone()
                } else if k > 3 {
                    vec![784, 512, 512, 512, 10]
                } else {
                    vec![784, 512, 512, 10]
                };
                if dims.len() < k + 1 {
                    return Err(CliError::usage(format!("--dims: {k} stages need at least {} widths", k + 1)));
                }
                let recompute: Vec<String> = recompute.iter().map(ToString::to_string).collect();
                let args = |rank: usize| {
                    vec![
                        "bench".into(),
                        "pipeline".into(),
                        format!("--rank={rank}"),
                        format!("--stages={k}"),
                        format!("--dims={}", list(&dims)),
                        format!("--schedules={}", join(&schedule)),
                        format!("--microbatches={}", list(&microbatches)),
                        format!("--recompute={}", join(&recompute)),
                        format!("--steps={steps}"),
                        format!("--warmup={warmup}"),
                    ]
                };
                let code = run_ranks(k, 1, args).await?;
                if code != ExitCode::SUCCESS {
                    return Ok(code);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Which::Dashboard { rounds, steps, points } => super::bench_dashboard::run(rounds, steps, points).await,
        Which::Compress { args } => passthrough("compress", args).await,
        Which::Analysis { args } => passthrough("analysis", args).await,
        Which::Ps { workers, shards, model_mb, iters, train_steps, warmup } => {
            if workers.iter().chain(&shards).any(|&n| n == 0 || n > 16) || model_mb == 0 || iters == 0 {
                return Err(CliError::usage(
                    "--workers and --shards must be between 1 and 16; --model-mb and --iters > 0",
                ));
            }
            bench_ps(&workers, &shards, model_mb, iters, train_steps, warmup).await
        }
        Which::Train { steps, warmup, ranks, threads, batch, device, precision } => {
            if steps <= warmup {
                return Err(CliError::usage("--steps must be larger than --warmup"));
            }
            if threads == 0 || ranks == 0 || ranks > 64 {
                return Err(CliError::usage("--threads must be > 0 and --ranks between 1 and 64"));
            }
            // The worker checks --device, --precision and --batch (only it knows whether it was
            // built with the `cuda` feature); what it rejects exits 2 here too.
            if ranks > 1 && device != "cpu" {
                return Err(CliError::usage(format!("--device `{device}`: --ranks above 1 train on the CPU only")));
            }
            let args = |rank: usize| {
                vec![
                    "bench".into(),
                    "train".into(),
                    format!("--steps={steps}"),
                    format!("--warmup={warmup}"),
                    format!("--rank={rank}"),
                    format!("--world={ranks}"),
                    format!("--batch={batch}"),
                    format!("--device={device}"),
                    format!("--precision={precision}"),
                ]
            };
            run_ranks(ranks, threads, args).await
        }
        Which::Parity { steps, device, threads } => {
            if threads == 0 {
                return Err(CliError::usage("--threads must be > 0"));
            }
            let args = |_rank: usize| {
                vec!["bench".into(), "parity".into(), format!("--steps={steps}"), format!("--device={device}")]
            };
            run_ranks(1, threads, args).await
        }
        Which::Allreduce { ranks, sizes, warmup, min_iters, max_iters, budget_s, backend } => {
            if backend != "ring" && backend != "nccl" {
                return Err(CliError::usage(format!("--backend `{backend}`: expected ring or nccl")));
            }
            if ranks.iter().any(|&n| n == 0 || n > 64) {
                return Err(CliError::usage("--ranks: world sizes must be between 1 and 64"));
            }
            if !(budget_s > 0.0 && budget_s.is_finite()) {
                return Err(CliError::usage("--budget-s must be > 0"));
            }
            for n in ranks {
                let args = |rank: usize| {
                    vec![
                        "bench".into(),
                        "allreduce".into(),
                        format!("--rank={rank}"),
                        format!("--world={n}"),
                        format!("--sizes={sizes}"),
                        format!("--warmup={warmup}"),
                        format!("--min-iters={min_iters}"),
                        format!("--max-iters={max_iters}"),
                        format!("--budget-s={budget_s}"),
                        format!("--backend={backend}"),
                    ]
                };
                let code = run_ranks(n, 1, args).await?;
                if code != ExitCode::SUCCESS {
                    return Ok(code);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Starts `world` worker processes with `args(rank)`, introduces them to each other, copies rank
/// 0's output to stdout and waits for all of them.
/// `shoal-worker bench <which> <args>` as one rank.
async fn passthrough(which: &str, args: Vec<String>) -> Result<ExitCode, CliError> {
    let args: Vec<String> = ["bench".to_owned(), which.to_owned()].into_iter().chain(args).collect();
    run_ranks(1, 1, |_rank| args.clone()).await
}

async fn run_ranks(world: usize, threads: u32, args: impl Fn(usize) -> Vec<String>) -> Result<ExitCode, CliError> {
    let bin = worker_binary()?;
    let mut children: Vec<Child> = Vec::with_capacity(world);
    for rank in 0..world {
        let child = Command::new(&bin)
            .args(args(rank))
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CliError::unavailable(format!("cannot start {}: {e}", bin.display())))?;
        children.push(child);
    }
    let mut outputs = Vec::with_capacity(world);
    for child in children.iter_mut() {
        let stdout = child.stdout.take().ok_or_else(|| CliError::unavailable("no stdout from a rank"))?;
        outputs.push(BufReader::new(stdout).lines());
    }
    if world > 1 {
        let mut addrs = Vec::with_capacity(world);
        for (rank, out) in outputs.iter_mut().enumerate() {
            let line = tokio::time::timeout(START_TIMEOUT, out.next_line())
                .await
                .map_err(|_| CliError::unavailable(format!("rank {rank} did not start within {START_TIMEOUT:?}")))?
                .map_err(|e| CliError::unavailable(format!("rank {rank}: {e}")))?;
            let Some(line) = line else {
                // A rank that rejected its flags has said why on stderr: exit 2 as it did.
                let status = children[rank].wait().await.map_err(|e| CliError::unavailable(e.to_string()))?;
                if status.code() == Some(2) {
                    return Ok(ExitCode::from(2));
                }
                return Err(CliError::unavailable(format!("rank {rank} exited before it started ({status})")));
            };
            let addr = line
                .strip_prefix("addr ")
                .ok_or_else(|| CliError::unavailable(format!("rank {rank} printed `{line}`")))?;
            addrs.push(addr.to_owned());
        }
        let list = format!("{}\n", addrs.join(","));
        for child in children.iter_mut() {
            let mut stdin = child.stdin.take().ok_or_else(|| CliError::unavailable("no stdin for a rank"))?;
            stdin
                .write_all(list.as_bytes())
                .await
                .map_err(|e| CliError::unavailable(format!("cannot introduce the ranks: {e}")))?;
        }
    }
    // Only rank 0 prints results; drain the others so that they never block on a full pipe.
    let mut rest = outputs.split_off(1);
    let drains: Vec<_> = rest
        .drain(..)
        .map(|mut o| tokio::spawn(async move { while let Ok(Some(_)) = o.next_line().await {} }))
        .collect();
    let mut first = outputs.remove(0);
    while let Some(line) = first.next_line().await.map_err(|e| CliError::unavailable(format!("rank 0: {e}")))? {
        println!("{line}");
    }
    for d in drains {
        let _ = d.await;
    }
    let mut codes = Vec::with_capacity(world);
    for child in children.iter_mut() {
        codes.push(child.wait().await.map_err(|e| CliError::unavailable(e.to_string()))?.code());
    }
    Ok(ExitCode::from(exit_code(&codes)))
}

/// The exit code of a benchmark from its ranks' exit codes (`None`: killed by a signal): 0 when
/// all succeeded, 2 when rank 0 rejected its flags (bad input, as for every command), else 1.
fn exit_code(ranks: &[Option<i32>]) -> u8 {
    match ranks.first() {
        Some(Some(2)) => 2,
        _ if ranks.iter().all(|c| *c == Some(0)) => 0,
        _ => 1,
    }
}

/// Parameter-server processes for a benchmark; killed when dropped.
struct Servers {
    _children: Vec<Child>,
    addrs: Vec<String>,
}

async fn start_servers(n: usize) -> Result<Servers, CliError> {
    let bin = param_server_binary()?;
    let mut children = Vec::with_capacity(n);
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut child = Command::new(&bin)
            .args(["--standalone", "--listen", "127.0.0.1:0", "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CliError::unavailable(format!("cannot start {}: {e}", bin.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| CliError::unavailable("no stdout from a parameter server"))?;
        let line = tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).lines().next_line())
            .await
            .map_err(|_| CliError::unavailable("a parameter server did not start in time"))?
            .map_err(|e| CliError::unavailable(e.to_string()))?
            .unwrap_or_default();
        let addr = line
            .strip_prefix("listening on ")
            .ok_or_else(|| CliError::unavailable(format!("parameter server printed `{line}`")))?;
        addrs.push(addr.to_owned());
        children.push(child);
    }
    Ok(Servers { _children: children, addrs })
}

/// Runs `args(rank)` for every rank with no introductions, returning each rank's stdout.
async fn run_plain(world: usize, args: impl Fn(usize) -> Vec<String>) -> Result<Vec<String>, CliError> {
    let bin = worker_binary()?;
    let mut waits = Vec::with_capacity(world);
    for rank in 0..world {
        let child = Command::new(&bin)
            .args(args(rank))
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CliError::unavailable(format!("cannot start {}: {e}", bin.display())))?;
        waits.push(child.wait_with_output());
    }
    let mut outs = Vec::with_capacity(world);
    for w in waits {
        let out = w.await.map_err(|e| CliError::unavailable(e.to_string()))?;
        if !out.status.success() {
            return Err(CliError::unavailable("a benchmark rank failed (see its error above)"));
        }
        outs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Ok(outs)
}

async fn bench_ps(
    workers: &[usize],
    shards: &[usize],
    model_mb: usize,
    iters: usize,
    train_steps: u64,
    warmup: u64,
) -> Result<ExitCode, CliError> {
    for &s in shards {
        let servers = start_servers(s).await?;
        let list = servers.addrs.join(",");
        for &w in workers {
            let job = format!("bench-load-s{s}-w{w}");
            let outs = run_plain(w, |rank| {
                vec![
                    "bench".into(),
                    "ps-load".into(),
                    format!("--rank={rank}"),
                    format!("--world={w}"),
                    format!("--servers={list}"),
                    format!("--model-mb={model_mb}"),
                    format!("--iters={iters}"),
                    format!("--job={job}"),
                ]
            })
            .await?;
            let mut bytes = 0.0;
            let mut slowest: f64 = 0.0;
            for out in &outs {
                let v: serde_json::Value = serde_json::from_str(out.trim())
                    .map_err(|e| CliError::unavailable(format!("bad rank output: {e}")))?;
                bytes += v["bytes"].as_f64().unwrap_or(0.0);
                slowest = slowest.max(v["seconds"].as_f64().unwrap_or(0.0));
            }
            println!(
                "{}",
                serde_json::json!({
                    "bench": "shoal_ps", "kind": "push_pull", "workers": w, "shards": s, "model_bytes": model_mb << 20,
                    "iters": iters, "bytes_moved": bytes, "seconds": slowest, "GBps": bytes / slowest.max(1e-9) / 1e9,
                    "per_worker_GBps": bytes / w as f64 / slowest.max(1e-9) / 1e9,
                })
            );
        }
        drop(servers);
    }
    if train_steps == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    for mode in ["async", "ssp", "sync"] {
        let servers = start_servers(1).await?;
        let list = servers.addrs.join(",");
        let outs = run_plain(2, |rank| {
            vec![
                "bench".into(),
                "train".into(),
                format!("--steps={train_steps}"),
                format!("--warmup={warmup}"),
                format!("--rank={rank}"),
                "--world=2".into(),
                format!("--ps-servers={list}"),
                format!("--ps-mode={mode}"),
            ]
        })
        .await?;
        for line in outs[0].lines().filter(|l| !l.contains("\"kind\":\"meta\"")) {
            println!("{line}");
        }
    }
    // The ring all-reduce baseline on the same workload and machine.
    let args = |rank: usize| {
        vec![
            "bench".into(),
            "train".into(),
            format!("--steps={train_steps}"),
            format!("--warmup={warmup}"),
            format!("--rank={rank}"),
            "--world=2".into(),
        ]
    };
    run_ranks(2, 1, args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_that_rejects_its_flags_makes_the_bench_exit_2() {
        assert_eq!(exit_code(&[Some(0)]), 0);
        assert_eq!(exit_code(&[Some(0), Some(0)]), 0);
        assert_eq!(exit_code(&[Some(2)]), 2);
        assert_eq!(exit_code(&[Some(2), Some(1)]), 2);
        assert_eq!(exit_code(&[Some(1)]), 1);
        assert_eq!(exit_code(&[Some(0), Some(2)]), 1, "only rank 0's verdict on the flags counts");
        assert_eq!(exit_code(&[None]), 1, "killed by a signal");
        assert_eq!(exit_code(&[Some(0), None]), 1);
    }
}
