//! The reference workload of `../shared/peers` (`ddp_mlp.py`): MLP 784-512-512-10 with ReLU,
//! cross-entropy, plain SGD at lr 0.05, batch 128, 16,384 synthetic teacher-labelled samples plus
//! 2,048 held out, visited in order (`shoal bench train` and `shoal bench ps`); and the peers'
//! pipeline workload (`shoal bench pipeline`). Each is written as the job file a user would submit.

use shoal_common::proto::{JobSpec, ParallelismSpec, PsSpec};
use shoal_common::spec::{self, FieldError, TrainConfig};

use super::error::BenchError;

/// The peer workload as a job spec.
pub fn reference_mlp_spec(steps: u64) -> Result<JobSpec, BenchError> {
    let text = format!(
        r#"
        name = "bench-reference-mlp"
        [model]
        kind = "mlp"
        layers = [{{ width = 512 }}, {{ width = 512 }}]
        activation = "relu"
        [dataset]
        kind = "synthetic_classification"
        samples = 18432
        features = 784
        classes = 10
        validation_split = 0.111111111
        seed = 1234
        [optimizer]
        kind = "sgd"
        lr = 0.05
        [training]
        batch_size = 128
        steps = {steps}
        seed = 0
        shuffle = false
        log_every = 50
        "#
    );
    parse("bench-reference-mlp", &text)
}

/// The validated reference workload.
pub fn reference_mlp(steps: u64) -> Result<TrainConfig, BenchError> {
    validated("bench-reference-mlp", &reference_mlp_spec(steps)?)
}

/// The reference workload on `ranks` data-parallel workers synchronised by `shards` parameter
/// servers in `mode` (async, ssp with staleness 2, or sync).
pub fn reference_mlp_ps_spec(steps: u64, ranks: usize, shards: usize, mode: &str) -> Result<JobSpec, BenchError> {
    let mut spec = reference_mlp_spec(steps)?;
    spec.sync = "ps".into();
    spec.parallelism = Some(ParallelismSpec { data: Some(ranks as i64), ..Default::default() });
    spec.ps = Some(PsSpec { shards: Some(shards as i64), mode: mode.into(), staleness: (mode == "ssp").then_some(2) });
    Ok(spec)
}

/// The peers' pipeline workload (`pipeline_gpipe.py`): an MLP of `dims` (ReLU), batch 512 cut into
/// `micro_batches`, plain SGD at lr 0.05, 16,384 synthetic samples visited in order, no held-out
/// set. With one stage it is the non-pipelined baseline: one worker accumulating gradients over
/// the same micro-batches. Stages are balanced by parameter count, which for these layers is the
/// peers' FLOP balance (784→512 | 512→512, 512→10 for two stages; one layer each for four).
pub fn reference_pipeline_spec(
    dims: &[usize],
    steps: u64,
    stages: usize,
    micro_batches: usize,
    schedule: &str,
    recompute: bool,
) -> Result<JobSpec, BenchError> {
    const BATCH: usize = 512;
    let hidden: Vec<String> = dims[1..dims.len() - 1].iter().map(|w| format!("{{ width = {w} }}")).collect();
    let (batch, accumulate, pipeline) = if stages <= 1 {
        (BATCH / micro_batches.max(1), micro_batches.max(1), String::new())
    } else {
        (
            BATCH,
            1,
            format!(
                "[parallelism]\npipeline = {stages}\n[pipeline]\nmicro_batches = {micro_batches}\nschedule = \"{schedule}\"\n\
                 recompute = {recompute}\nbalance = \"params\"\n"
            ),
        )
    };
    let text = format!(
        r#"
        name = "bench-reference-pipeline"
        [model]
        kind = "mlp"
        layers = [{}]
        activation = "relu"
        [dataset]
        kind = "synthetic_classification"
        samples = 16384
        features = {}
        classes = {}
        validation_split = 0.0
        seed = 1234
        [optimizer]
        kind = "sgd"
        lr = 0.05
        [training]
        batch_size = {batch}
        accumulate_steps = {accumulate}
        steps = {steps}
        seed = 0
        shuffle = false
        log_every = 1000000
        collective_timeout = 120
        {pipeline}
        "#,
        hidden.join(", "),
        dims[0],
        dims[dims.len() - 1],
    );
    parse("bench-reference-pipeline", &text)
}

/// Validates the job spec of `workload`.
pub fn validated(workload: &'static str, spec: &JobSpec) -> Result<TrainConfig, BenchError> {
    spec::validate(spec).map_err(|errors| BenchError::Workload { workload, reason: joined(&errors) })
}

fn parse(workload: &'static str, text: &str) -> Result<JobSpec, BenchError> {
    spec::parse_toml(text).map_err(|e| BenchError::Workload { workload, reason: e.to_string() })
}

fn joined(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_workload_is_a_valid_job() {
        let mlp = reference_mlp(200).expect("the reference MLP");
        assert_eq!(mlp.training.batch_size, 128);
        assert_eq!(mlp.training.duration, shoal_common::spec::Duration::Steps(200));
        for mode in ["async", "ssp", "sync"] {
            let spec = reference_mlp_ps_spec(200, 2, 1, mode).expect("the parameter-server spec");
            validated("ps", &spec).expect("a valid parameter-server job");
        }
        for (dims, stages) in [(&[784, 512, 512, 10][..], 1), (&[784, 512, 512, 10], 2), (&[784, 512, 512, 512, 10], 4)]
        {
            for (schedule, recompute) in [("gpipe", false), ("1f1b", true)] {
                let spec =
                    reference_pipeline_spec(dims, 100, stages, 4, schedule, recompute).expect("the pipeline spec");
                validated("pipeline", &spec).expect("a valid pipeline job");
            }
        }
    }
}
