//! Where the model is cut into stages: explicit cuts, balanced parameter counts or balanced
//! measured time, chosen once, passed down the pipeline, and recorded with each checkpoint so that
//! a resumed job keeps its partition.

use std::path::Path;
use std::time::Instant;

use shoal_common::spec::{Partition, TrainConfig};

use super::wire::protocol;
use crate::collective::Collective;
use crate::engine::{Plan, RunOptions};
use crate::error::{Result, TrainError};
use crate::link::{Dir, MsgKind, StageLink, StageMsg};
use crate::model::{DataShape, Model};
use crate::nn::{Ctx, Mode};
use crate::rng::Rng;

/// Timed repetitions per unit when balancing stages by measured time.
const PROFILE_REPS: usize = 3;
/// File in a stage's checkpoint that records the partition it was trained with.
const PARTITION_FILE: &str = "pipeline-bounds.txt";

/// Cuts `costs` into `parts` contiguous non-empty ranges minimising the costliest; returns the
/// `parts + 1` bounds.
pub fn balance(costs: &[f64], parts: usize) -> Vec<usize> {
    let n = costs.len();
    let parts = parts.clamp(1, n.max(1));
    let prefix: Vec<f64> = std::iter::once(0.0)
        .chain(costs.iter().scan(0.0, |acc, c| {
            *acc += c;
            Some(*acc)
        }))
        .collect();
    // best[k][i]: the smallest maximum over k parts of the first i units; from[k][i]: where part k starts.
    let mut best = vec![vec![f64::INFINITY; n + 1]; parts + 1];
    let mut from = vec![vec![0usize; n + 1]; parts + 1];
    best[0][0] = 0.0;
    for k in 1..=parts {
        for i in k..=n {
            for j in (k - 1)..i {
                let cost = best[k - 1][j].max(prefix[i] - prefix[j]);
                if cost < best[k][i] {
                    best[k][i] = cost;
                    from[k][i] = j;
                }
            }
        }
    }
    let mut bounds = vec![n];
    let mut i = n;
    for k in (1..=parts).rev() {
        i = from[k][i];
        bounds.push(i);
    }
    bounds.reverse();
    bounds
}

/// Parameters per unit.
pub fn unit_params(cfg: &TrainConfig, shape: &DataShape) -> Result<Vec<f64>> {
    (0..Model::unit_count(&cfg.model))
        .map(|u| Ok(Model::build_stage(&cfg.model, shape, cfg.training.seed, u..u + 1)?.param_count() as f64))
        .collect()
}

/// Forward plus backward seconds per unit on `rows` rows (the best of a few repetitions).
pub fn profile_units(cfg: &TrainConfig, shape: &DataShape, rows: usize, threads: usize) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for u in 0..Model::unit_count(&cfg.model) {
        let mut unit = Model::build_stage(&cfg.model, shape, cfg.training.seed, u..u + 1)?;
        let mut dims = vec![rows];
        dims.extend_from_slice(unit.input_dims());
        let mut rng = Rng::derive(cfg.training.seed, "profile", u as u64);
        let n: usize = dims.iter().product();
        let x = unit.backend().from_host((0..n).map(|_| rng.normal() as f32).collect(), &dims)?;
        let mut best = f64::INFINITY;
        for rep in 0..=PROFILE_REPS {
            let t0 = Instant::now();
            let mut ctx = Ctx::new(Mode::Train, threads, Rng::new(rep as u64));
            let (out, saved) = unit.forward(&x, &mut ctx)?;
            let grad = unit.backend().from_host(vec![1.0; out.elem_count()], out.dims())?;
            unit.backward(saved, grad, threads)?;
            unit.zero_grad();
            if rep > 0 {
                best = best.min(t0.elapsed().as_secs_f64());
            }
        }
        times.push(best);
    }
    Ok(times)
}

/// Unit bounds of every stage: explicit cuts, balanced parameter counts, or balanced measured
/// time. Measured bounds are chosen once (by the first stage of the first replica, or read back
/// from the checkpoint being resumed, so a resumed job keeps its partition) and passed on.
#[allow(clippy::too_many_arguments)]
pub(super) fn partition(
    cfg: &TrainConfig,
    shape: &DataShape,
    plan: &Plan,
    opts: &RunOptions,
    link: &mut dyn StageLink,
    replicas: Option<&mut dyn Collective>,
    replica: usize,
) -> Result<Vec<usize>> {
    let units = Model::unit_count(&cfg.model);
    let (stage, stages) = (link.stage(), link.stages());
    let bounds = match &cfg.parallel.pipeline.partition {
        Partition::Cuts(c) => std::iter::once(0).chain(c.iter().copied()).chain(std::iter::once(units)).collect(),
        Partition::Params => balance(&unit_params(cfg, shape)?, stages),
        Partition::MeasuredTime => {
            let mut bounds = vec![0f32; stages + 1];
            if stage == 0 {
                if replica == 0 {
                    let chosen = match opts.resume_from.as_deref().and_then(read_bounds) {
                        Some(b) => b,
                        None => {
                            let rows = (plan.batch / cfg.parallel.pipeline.micro_batches).max(1);
                            let times = profile_units(cfg, shape, rows, opts.threads.max(1))?;
                            let chosen = balance(&times, stages);
                            tracing::info!(
                                unit_ms = ?times.iter().map(|t| (t * 1e4).round() / 10.0).collect::<Vec<_>>(),
                                bounds = ?chosen,
                                "balanced the pipeline stages by measured time"
                            );
                            chosen
                        }
                    };
                    bounds = chosen.iter().map(|&b| b as f32).collect();
                }
                if let Some(c) = replicas.filter(|c| c.world_size() > 1) {
                    c.broadcast(&mut bounds, 0)?;
                }
            } else {
                let msg = link.recv(Dir::Prev)?;
                if msg.kind != MsgKind::Partition {
                    return Err(protocol("the partition", &msg));
                }
                bounds = msg.data;
            }
            if stage + 1 < stages {
                link.send(Dir::Next, StageMsg::new(MsgKind::Partition, 0, bounds.clone()))?;
            }
            bounds.iter().map(|&b| b as usize).collect()
        }
    };
    let valid = bounds.len() == stages + 1
        && bounds[0] == 0
        && bounds[stages] == units
        && bounds.windows(2).all(|w| w[0] < w[1]);
    if !valid {
        return Err(TrainError::Shape {
            field: "pipeline".into(),
            reason: format!("stage bounds {bounds:?} do not cut {units} units into {stages} non-empty stages"),
        });
    }
    Ok(bounds)
}

fn read_bounds(dir: &Path) -> Option<Vec<usize>> {
    let text = std::fs::read_to_string(dir.join(PARTITION_FILE)).ok()?;
    text.trim().split(',').map(|v| v.trim().parse().ok()).collect()
}

/// Records `bounds` in checkpoint `dir`.
pub(super) fn write_bounds(dir: &Path, bounds: &[usize]) -> Result<()> {
    let text: Vec<String> = bounds.iter().map(ToString::to_string).collect();
    std::fs::write(dir.join(PARTITION_FILE), text.join(","))
        .map_err(|e| TrainError::checkpoint(dir, format!("cannot record the partition: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_minimises_the_costliest_stage() {
        assert_eq!(balance(&[4.0, 2.7, 0.05], 2), vec![0, 1, 3]);
        assert_eq!(balance(&[1.0, 1.0, 1.0, 1.0], 2), vec![0, 2, 4]);
        assert_eq!(balance(&[1.0, 1.0, 1.0, 1.0], 4), vec![0, 1, 2, 3, 4]);
        assert_eq!(balance(&[5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2), vec![0, 1, 6]);
        let b = balance(&[3.0, 1.0, 1.0, 1.0, 3.0], 3);
        assert_eq!(b, vec![0, 1, 4, 5]);
    }
}
