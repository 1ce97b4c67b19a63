//! `shoal bench allreduce`: all-reduce bandwidth per buffer size, timed as `allreduce_gloo.py`
//! does, over the TCP ring or NCCL.

use std::time::Instant;

use serde_json::{Value, json};
use shoal_train::backend::Backend;
use shoal_train::{Collective, ReduceOp, TrainError};

use super::cpu::CpuSnapshot;
use super::error::BenchError;

/// How long to measure each size.
pub struct AllReducePlan {
    /// Untimed all-reduces before the timed ones.
    pub warmup: usize,
    pub min_iters: usize,
    pub max_iters: usize,
    /// Target timed seconds per size.
    pub budget_s: f64,
}

/// Parses "4K,64K,1M" into byte counts (binary units), as the peers do.
pub fn parse_sizes(text: &str) -> Result<Vec<usize>, BenchError> {
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
            let bad = || BenchError::BadSize { token: tok.to_owned() };
            let v: f64 = num.parse().map_err(|_| bad())?;
            if v <= 0.0 || !v.is_finite() {
                return Err(bad());
            }
            Ok((v * mult as f64) as usize)
        })
        .collect()
}

fn human_bytes(n: usize) -> String {
    for (unit, div) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= div && n.is_multiple_of(div) {
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

/// One all-reduce of the buffer under test, given the collective.
type Sum<'a> = dyn FnMut(&mut dyn Collective) -> Result<(), BenchError> + 'a;

/// Correctness over the whole buffer: element i of rank r holds (i mod 1021) + r, so the sum is
/// n·(i mod 1021) + n(n-1)/2, exact in f32 at these magnitudes.
fn pattern(numel: usize, rank: usize) -> Vec<f32> {
    (0..numel).map(|i| (i % 1021 + rank) as f32).collect()
}

fn summed_correctly(got: &[f32], world: usize) -> bool {
    got.iter().enumerate().all(|(i, v)| *v == (world * (i % 1021) + world * (world - 1) / 2) as f32)
}

/// Times `sum` as `allreduce_gloo.py` does: warm-up, then each timed all-reduce after a barrier,
/// the time of each taken as the maximum over ranks. Rank 0 gets the record.
fn time_sums(
    c: &mut dyn Collective,
    plan: &AllReducePlan,
    bytes: usize,
    labels: (&str, &str),
    correct: bool,
    sum: &mut Sum<'_>,
) -> Result<Option<Value>, BenchError> {
    let n = c.world_size();
    for _ in 0..plan.warmup {
        sum(c)?;
    }
    c.all_reduce(&mut [0.0], ReduceOp::Sum)?;
    let t0 = Instant::now();
    sum(c)?;
    let mut probe = [t0.elapsed().as_secs_f32()];
    c.all_reduce(&mut probe, ReduceOp::Max)?;
    let iters =
        (plan.budget_s / f64::from(probe[0]).max(1e-9)).clamp(plan.min_iters as f64, plan.max_iters as f64) as usize;
    let snapshot = CpuSnapshot::take();
    let wall = Instant::now();
    let mut times = vec![0f32; iters];
    for t in times.iter_mut() {
        c.all_reduce(&mut [0.0], ReduceOp::Sum)?;
        let t0 = Instant::now();
        sum(c)?;
        *t = t0.elapsed().as_secs_f32();
    }
    let foreign = snapshot.foreign_share(wall.elapsed().as_secs_f64(), Some(&mut *c));
    c.all_reduce(&mut times, ReduceOp::Max)?;
    if c.rank() != 0 {
        return Ok(None);
    }
    let ts: Vec<f64> = times.iter().map(|t| f64::from(*t)).collect();
    let med = median(&ts);
    let min = ts.iter().copied().fold(f64::INFINITY, f64::min);
    let algbw = bytes as f64 / med / 1e9;
    let (backend, path) = labels;
    Ok(Some(json!({
        "bench": "shoal_allreduce", "backend": backend, "path": path, "world_size": n, "bytes": bytes,
        "size": human_bytes(bytes), "dtype": "float32", "op": "sum", "iters": iters,
        "warmup": plan.warmup, "threads": 1, "time_median_s": med, "time_min_s": min,
        "time_mean_s": ts.iter().sum::<f64>() / ts.len() as f64, "algbw_GBps": algbw,
        "busbw_GBps": algbw * 2.0 * (n as f64 - 1.0) / n as f64, "algbw_GBps_best": bytes as f64 / min / 1e9,
        "correct": correct, "foreign_cpu_frac": foreign,
    })))
}

/// All-reduce bandwidth of host buffers for each size (through the ring, or staged through GPU
/// memory by NCCL). Rank 0 returns one record per size.
pub fn measure(
    c: &mut dyn Collective,
    sizes: &[usize],
    plan: &AllReducePlan,
    backend: &str,
) -> Result<Vec<Value>, BenchError> {
    let path = if backend == "nccl" { "staged" } else { "host" };
    let mut out = Vec::new();
    for &bytes in sizes {
        let mut buf = pattern(bytes / 4, c.rank());
        c.all_reduce(&mut buf, ReduceOp::Sum)?;
        let correct = summed_correctly(&buf, c.world_size());
        buf.iter_mut().for_each(|v| *v = 0.0);
        let mut sum = |c: &mut dyn Collective| Ok(c.all_reduce(&mut buf, ReduceOp::Sum)?);
        out.extend(time_sums(c, plan, bytes, (backend, path), correct, &mut sum)?);
    }
    Ok(out)
}

/// All-reduce bandwidth of buffers that already live in device memory (NCCL's in-place sum on a
/// training backend's buffers, queued on the collective's stream and waited for as a training
/// step does: one queue and one finish per all-reduce), for each size. Rank 0 returns the records.
pub fn measure_device(
    c: &mut dyn Collective,
    on: &dyn Backend,
    sizes: &[usize],
    plan: &AllReducePlan,
    backend: &str,
) -> Result<Vec<Value>, BenchError> {
    let stream = on.stream_handle().ok_or(BenchError::NotOnDevice)?;
    let mut out = Vec::new();
    for &bytes in sizes {
        let numel = bytes / 4;
        let buf = on.from_host(pattern(numel, c.rank()), &[numel]).map_err(TrainError::from)?;
        let span = on.device_span(&buf).ok_or(BenchError::NotOnDevice)?;
        let mut sum = |c: &mut dyn Collective| -> Result<(), BenchError> {
            let device = c.on_device().ok_or(BenchError::NotOnDevice)?;
            device.queue_sum(&[span], stream)?;
            device.finish(stream)?;
            Ok(())
        };
        sum(c)?;
        let correct = summed_correctly(&on.to_host(&buf).map_err(TrainError::from)?, c.world_size());
        out.extend(time_sums(c, plan, bytes, (backend, "device"), correct, &mut sum)?);
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
