//! The `pipeline` section: stages per replica, micro-batches, the schedule and the partition.

use super::parallel::MAX_RANKS;
use crate::proto::JobSpec;
use crate::spec::config::{Backend, ModelConfig, Partition, PipeSchedule, PipelineConfig, SyncKind, TrainingConfig};
use crate::spec::errors::FieldErrors;

/// Pipeline stages and their partition. A model has one unit per `model.layers` entry plus the
/// output layer; each stage runs a contiguous, non-empty range of units.
pub(super) fn pipeline(
    c: &mut FieldErrors,
    spec: &JobSpec,
    model: &ModelConfig,
    training: &TrainingConfig,
    data: usize,
    sync: &SyncKind,
    backend: Backend,
) -> PipelineConfig {
    let p = spec.parallelism.unwrap_or_default();
    let units = model.layers.len() + 1;
    let single = PipelineConfig {
        stages: 1,
        micro_batches: 1,
        schedule: PipeSchedule::GPipe,
        recompute: false,
        partition: Partition::MeasuredTime,
    };
    let stages = match p.pipeline {
        None => 1,
        Some(n) if n < 1 => {
            c.fail("parallelism.pipeline", "must be >= 1");
            return single;
        }
        Some(n) if n as u128 > units as u128 => {
            c.fail(
                "parallelism.pipeline",
                format!(
                    "{n} stages need at least {n} layers, but the model has {units} ({} in model.layers plus the \
                     output layer)",
                    units - 1
                ),
            );
            return single;
        }
        Some(n) => n as usize,
    };
    if stages as u128 * data as u128 > MAX_RANKS as u128 {
        c.fail("parallelism", format!("data x pipeline = {} workers; at most {MAX_RANKS}", stages * data));
    }
    let s = spec.pipeline.clone().unwrap_or_default();
    if stages == 1 {
        if spec.pipeline.is_some() {
            c.fail("pipeline", "applies only with parallelism.pipeline >= 2");
        }
        return single;
    }
    if matches!(sync, SyncKind::ParamServer { .. }) {
        c.fail("sync", "pipeline jobs synchronise their replicas with allreduce; \"ps\" is not supported with them");
    }
    if backend == Backend::Nccl {
        c.fail("allreduce.backend", "pipeline stages exchange activations over TCP; use \"ring\" or \"auto\"");
    }
    if training.accumulate_steps > 1 {
        c.fail(
            "training.accumulate_steps",
            "does not apply to pipeline jobs: set pipeline.micro_batches to accumulate over micro-batches",
        );
    }
    let micro_batches = match s.micro_batches {
        None => stages,
        Some(m) if m < 1 => {
            c.fail("pipeline.micro_batches", "must be >= 1");
            1
        }
        Some(m) if m as u128 > training.batch_size as u128 => {
            c.fail(
                "pipeline.micro_batches",
                format!(
                    "must be at most training.batch_size ({}): every micro-batch needs a sample",
                    training.batch_size
                ),
            );
            1
        }
        Some(m) => m as usize,
    };
    let schedule = c
        .choice(
            "pipeline.schedule",
            &s.schedule,
            Some(PipeSchedule::GPipe),
            |v| match v {
                "gpipe" => Some(PipeSchedule::GPipe),
                "1f1b" => Some(PipeSchedule::OneFOneB),
                _ => None,
            },
            &["gpipe", "1f1b"],
        )
        .unwrap_or(PipeSchedule::GPipe);
    let partition = if s.cuts.is_empty() {
        c.choice(
            "pipeline.balance",
            &s.balance,
            Some(Partition::MeasuredTime),
            |v| match v {
                "time" => Some(Partition::MeasuredTime),
                "params" => Some(Partition::Params),
                _ => None,
            },
            &["time", "params"],
        )
        .unwrap_or(Partition::MeasuredTime)
    } else {
        if !s.balance.is_empty() {
            c.fail("pipeline.balance", "does not apply with explicit pipeline.cuts");
        }
        if s.cuts.len() != stages - 1 {
            c.fail("pipeline.cuts", format!("{stages} stages need {} cut points, got {}", stages - 1, s.cuts.len()));
        }
        let mut prev = 0;
        for (i, &cut) in s.cuts.iter().enumerate() {
            if cut < 1 || cut as u128 >= units as u128 {
                c.fail(
                    format!("pipeline.cuts[{i}]"),
                    format!("{cut} is out of range: cut points lie between layers, in 1..={}", units - 1),
                );
            } else if cut <= prev {
                c.fail(format!("pipeline.cuts[{i}]"), format!("{cut} must be greater than the previous cut ({prev})"));
            }
            prev = prev.max(cut);
        }
        Partition::Cuts(s.cuts.iter().map(|&v| v.max(0) as usize).collect())
    };
    PipelineConfig { stages, micro_batches, schedule, recompute: s.recompute, partition }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DIGITS, errors_of};
    use crate::spec::{Partition, PipeSchedule, load_toml};

    #[test]
    fn pipeline_settings_are_checked() {
        // DIGITS has two layers: three units with the output layer.
        let pipe =
            |parallelism: &str, body: &str| format!("{DIGITS}\n[parallelism]\n{parallelism}\n[pipeline]\n{body}\n");
        let (_, cfg) =
            load_toml(&pipe("pipeline = 3\ndata = 2", "micro_batches = 8\nschedule = \"1f1b\"\nrecompute = true"))
                .expect("valid");
        let p = &cfg.parallel.pipeline;
        assert_eq!((cfg.parallel.data, p.stages, p.micro_batches), (2, 3, 8));
        assert_eq!((p.schedule, p.recompute, &p.partition), (PipeSchedule::OneFOneB, true, &Partition::MeasuredTime));
        let (_, cfg) = load_toml(&pipe("pipeline = 2", "cuts = [2]")).expect("valid");
        assert_eq!(cfg.parallel.pipeline.partition, Partition::Cuts(vec![2]));
        assert_eq!(cfg.parallel.pipeline.micro_batches, 2, "defaults to the stage count");
        let (_, cfg) = load_toml(&pipe("pipeline = 2", "balance = \"params\"")).expect("valid");
        assert_eq!(cfg.parallel.pipeline.partition, Partition::Params);

        assert_eq!(
            errors_of(&pipe("pipeline = 4", "")),
            vec![
                "parallelism.pipeline: 4 stages need at least 4 layers, but the model has 3 (2 in model.layers plus the output layer)"
            ]
        );
        assert_eq!(
            errors_of(&pipe("pipeline = 3", "cuts = [0, 3]\nmicro_batches = 100\nschedule = \"zigzag\"")),
            vec![
                "pipeline.micro_batches: must be at most training.batch_size (32): every micro-batch needs a sample",
                "pipeline.schedule: unknown value `zigzag` (expected one of gpipe, 1f1b)",
                "pipeline.cuts[0]: 0 is out of range: cut points lie between layers, in 1..=2",
                "pipeline.cuts[1]: 3 is out of range: cut points lie between layers, in 1..=2",
            ]
        );
        assert_eq!(
            errors_of(&pipe("pipeline = 3", "cuts = [2, 2]\nbalance = \"time\"")),
            vec![
                "pipeline.balance: does not apply with explicit pipeline.cuts",
                "pipeline.cuts[1]: 2 must be greater than the previous cut (2)",
            ]
        );
        assert_eq!(
            errors_of(&pipe("pipeline = 1", "micro_batches = 2")),
            vec!["pipeline: applies only with parallelism.pipeline >= 2"]
        );
    }
}
