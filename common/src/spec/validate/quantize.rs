//! The `quantize` section (and `training.qat`): calibration of the int8 scales, the accuracy
//! budget, and what can be quantized (MLPs of linear layers, classification, a whole model).

use crate::proto;
use crate::spec::config::{Calibration, DatasetConfig, LayerConfig, ModelConfig, ParallelConfig, QuantizeConfig, Task};
use crate::spec::errors::FieldErrors;

const DEFAULT_BATCHES: i64 = 8;
const DEFAULT_BATCH: i64 = 128;

/// The validated section; `qat` is `training.qat`, which asks for `aware` without a section.
pub(super) fn quantize(
    c: &mut FieldErrors,
    q: Option<&proto::QuantizeSpec>,
    qat: bool,
    model: &ModelConfig,
    dataset: &DatasetConfig,
    parallel: &ParallelConfig,
) -> Option<QuantizeConfig> {
    let default = proto::QuantizeSpec::default();
    let q = match (q, qat) {
        (None, false) => return None,
        (None, true) => &default,
        (Some(q), _) => q,
    };
    let percentile = q.percentile.unwrap_or(Calibration::DEFAULT_PERCENTILE);
    let calibration = c
        .choice(
            "quantize.calibration",
            &q.calibration,
            Some(Calibration::MinMax),
            |n| Calibration::parse(n, percentile),
            Calibration::NAMES,
        )
        .unwrap_or(Calibration::MinMax);
    if let Some(p) = q.percentile {
        if !matches!(calibration, Calibration::Percentile(_)) {
            c.unused("quantize.percentile", true, "minmax or entropy calibration");
        } else if !(p > 0.0 && p <= 100.0) {
            c.fail("quantize.percentile", format!("must be in (0, 100], got {p}"));
        }
    }
    let batches = calibration_count(c, "quantize.batches", q.batches, DEFAULT_BATCHES);
    let batch = calibration_count(c, "quantize.batch", q.batch, DEFAULT_BATCH);
    let max_accuracy_drop = q.max_accuracy_drop.map(|d| c.in_range("quantize.max_accuracy_drop", d, 0.0, 1.0, true));
    let section = if qat && q == &default { "training.qat" } else { "quantize" };
    for (i, l) in model.layers.iter().enumerate() {
        if !matches!(l, LayerConfig::Linear { skip: false, .. }) {
            c.fail(
                format!("model.layers[{i}]"),
                format!("{section}: int8 covers MLPs of linear layers without skips, and this layer is not one"),
            );
        }
    }
    if dataset.task() != Task::Classification {
        c.fail(section, "the accuracy budget needs a classification dataset");
    }
    if parallel.pipeline.stages > 1 {
        c.fail(section, "quantization needs the whole model on each rank: use pipeline = 1");
    }
    Some(QuantizeConfig { aware: q.aware || qat, calibration, batches, batch, max_accuracy_drop })
}

/// A calibration count: > 0 (an empty calibration set calibrates nothing) and at most a million.
fn calibration_count(c: &mut FieldErrors, path: &str, value: Option<i64>, default: i64) -> usize {
    let v = value.unwrap_or(default);
    if v <= 0 {
        c.fail(path, format!("must be > 0: an empty calibration set calibrates nothing (got {v})"));
        return default as usize;
    }
    if v > 1_000_000 {
        c.fail(path, format!("must be at most 1000000, got {v}"));
    }
    v as usize
}
