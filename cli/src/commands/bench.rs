//! `shoal bench`: benchmarks that mirror the PyTorch peers in `shared/peers`. They run in worker
//! processes (the CLI itself links no training code) and print JSON lines on stdout. Multi-rank
//! benchmarks start one process per rank on this machine, connected over loopback TCP: each rank
//! prints its data-plane address, and this command hands every rank the full list.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Subcommand;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::local::worker_binary;
use crate::error::CliError;

/// How long a rank may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand, Debug)]
pub enum Which {
    /// Train the peers' reference MLP (784-512-512-10, batch 128 per rank, SGD lr 0.05) with one
    /// thread per rank, as `ddp_mlp.py` does; data-parallel over the TCP ring with --ranks > 1.
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
}

pub async fn run(which: Which) -> Result<ExitCode, CliError> {
    match which {
        Which::Train { steps, warmup, ranks, threads } => {
            if steps <= warmup {
                return Err(CliError::usage("--steps must be larger than --warmup"));
            }
            if threads == 0 || ranks == 0 || ranks > 64 {
                return Err(CliError::usage("--threads must be > 0 and --ranks between 1 and 64"));
            }
            let args = |rank: usize| {
                vec![
                    "bench".into(),
                    "train".into(),
                    format!("--steps={steps}"),
                    format!("--warmup={warmup}"),
                    format!("--rank={rank}"),
                    format!("--world={ranks}"),
                ]
            };
            run_ranks(ranks, threads, args).await
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
                .map_err(|e| CliError::unavailable(format!("rank {rank}: {e}")))?
                .ok_or_else(|| CliError::unavailable(format!("rank {rank} exited before it started")))?;
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
    let mut failed = false;
    for child in children.iter_mut() {
        failed |= !child.wait().await.map_err(|e| CliError::unavailable(e.to_string()))?.success();
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
