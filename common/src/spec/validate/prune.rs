//! The `prune` section: the method and its ranking, the target sparsity and the schedule, and the
//! ways of training it cannot be combined with.

use crate::proto;
use crate::spec::config::{
    Activation, LayerConfig, ModelConfig, ParallelConfig, PruneConfig, PruneMethod, PruneSchedule, SyncKind,
};
use crate::spec::errors::FieldErrors;

const DEFAULT_FREQUENCY: i64 = 10;

pub(super) fn prune(
    c: &mut FieldErrors,
    p: &proto::PruneSpec,
    model: &ModelConfig,
    parallel: &ParallelConfig,
) -> PruneConfig {
    let structured = c
        .choice(
            "prune.method",
            &p.method,
            Some(false),
            |m| match m {
                "magnitude" => Some(false),
                "structured" => Some(true),
                _ => None,
            },
            &["magnitude", "structured"],
        )
        .unwrap_or(false);
    let method = if structured {
        c.unused("prune.scope", !p.scope.is_empty(), "structured pruning (it ranks whole units)");
        let l2 = c
            .choice(
                "prune.norm",
                &p.norm,
                Some(false),
                |n| match n {
                    "l1" => Some(false),
                    "l2" => Some(true),
                    _ => None,
                },
                &["l1", "l2"],
            )
            .unwrap_or(false);
        if !model.layers.iter().enumerate().any(|(i, _)| prunable_unit(model, i)) {
            c.fail(
                "prune.method",
                "structured pruning needs a hidden linear layer without skip (or a conv layer whose activation is not sigmoid), followed by a linear layer, a conv layer or the output",
            );
        }
        PruneMethod::Structured { l2 }
    } else {
        c.unused("prune.norm", !p.norm.is_empty(), "magnitude pruning (it ranks single weights)");
        let global = c
            .choice(
                "prune.scope",
                &p.scope,
                Some(true),
                |s| match s {
                    "global" => Some(true),
                    "layer" => Some(false),
                    _ => None,
                },
                &["global", "layer"],
            )
            .unwrap_or(true);
        PruneMethod::Magnitude { global }
    };
    let sparsity = match p.sparsity {
        Some(s) => c.in_range("prune.sparsity", s, 0.0, 1.0, false),
        None => {
            c.fail("prune.sparsity", "required: the share to remove, in [0, 1)");
            0.0
        }
    };
    let begin = c.non_negative("prune.begin_step", p.begin_step.unwrap_or(0));
    let schedule = match p.schedule.as_str() {
        "" | "one_shot" => {
            c.unused("prune.end_step", p.end_step.is_some(), "a one-shot schedule");
            c.unused("prune.frequency", p.frequency.is_some(), "a one-shot schedule");
            PruneSchedule::OneShot { at: begin }
        }
        "gradual" => {
            let frequency = c.size_or("prune.frequency", p.frequency, DEFAULT_FREQUENCY) as u64;
            let end = match p.end_step {
                Some(e) if e > begin as i64 => e as u64,
                Some(e) => {
                    c.fail("prune.end_step", format!("must be after prune.begin_step ({begin}), got {e}"));
                    begin + 1
                }
                None => {
                    c.fail("prune.end_step", "required for a gradual schedule");
                    begin + 1
                }
            };
            PruneSchedule::Gradual { begin, end, frequency: frequency.max(1) }
        }
        other => {
            c.fail("prune.schedule", format!("must be one of one_shot, gradual, got {other:?}"));
            PruneSchedule::OneShot { at: begin }
        }
    };
    if matches!(parallel.sync, SyncKind::ParamServer { .. }) {
        c.fail("prune", "parameter servers own the weights: prune with all-reduce ranks or one worker");
    }
    if parallel.pipeline.stages > 1 {
        c.fail("prune", "pruning needs the whole model on each rank: use pipeline = 1");
    }
    PruneConfig { method, sparsity, schedule }
}

/// Whether structured pruning may remove units of `model.layers[i]`: the neurons of a linear
/// layer without a skip connection, or the output channels of a conv layer whose activation is 0
/// at 0 (a removed channel is then all zeros, through any pooling), whose output feeds (past any
/// pooling layers) a linear layer without skip, a conv layer, or the output layer.
pub fn prunable_unit(model: &ModelConfig, i: usize) -> bool {
    let producer = match model.layers.get(i) {
        Some(LayerConfig::Linear { skip: false, .. }) => true,
        Some(LayerConfig::Conv { activation, .. }) => activation != &Activation::Sigmoid,
        _ => false,
    };
    producer
        && match model.layers.get(consumer_of(model, i)) {
            None => true,
            Some(LayerConfig::Linear { skip, .. }) => !skip,
            Some(LayerConfig::Conv { .. }) => true,
            Some(_) => false,
        }
}

/// The index of the layer that reads `model.layers[i]`'s units: the next one that is not a
/// pooling layer (pooling keeps channels), `layers.len()` for the output layer.
pub fn consumer_of(model: &ModelConfig, i: usize) -> usize {
    (i + 1..model.layers.len())
        .find(|&j| !matches!(model.layers[j], LayerConfig::Pool { .. }))
        .unwrap_or(model.layers.len())
}
