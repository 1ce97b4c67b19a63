//! The reference workload of `../shared/peers` (`ddp_mlp.py`): MLP 784-512-512-10 with ReLU,
//! cross-entropy, plain SGD at lr 0.05, batch 128, 16,384 synthetic teacher-labelled samples plus
//! 2,048 held out, visited in order (`shoal bench train` and `shoal bench ps`); larger batches get
//! the training set `gpu_mlp.py` uses (at least eight batches). The digits CNN of
//! `examples/digits-cnn.toml` (`shoal bench parity`), and the peers' pipeline workload (`shoal
//! bench pipeline`). Each is written as the job file a user would submit.

use shoal_common::proto::{JobSpec, ParallelismSpec, PsSpec};
use shoal_common::spec::{self, FieldError, TrainConfig};

use super::error::BenchError;

/// Samples held out for evaluation by every reference MLP run.
const HELD_OUT: usize = 2048;

/// Training samples of the reference MLP at `batch`: 16,384, or eight batches when that is more,
/// a whole number of batches (as `gpu_mlp.py` sizes its data set).
pub fn reference_train_samples(batch: usize) -> usize {
    let batch = batch.max(1);
    let n = 16_384.max(8 * batch);
    n - n % batch
}

/// The peer workload as a job spec, at `batch` samples per step (the peers' 128 by default).
pub fn reference_mlp_spec(steps: u64, batch: usize) -> Result<JobSpec, BenchError> {
    parse("bench-reference-mlp", &reference_mlp_toml(steps, batch, "[{ width = 512 }, { width = 512 }]"))
}

/// The job file of the peer workload, with hidden `layers` (a TOML array) at `batch`.
pub fn reference_mlp_toml(steps: u64, batch: usize, layers: &str) -> String {
    let samples = reference_train_samples(batch) + HELD_OUT;
    // `round(samples x share)` samples are held out: exactly HELD_OUT.
    let share = HELD_OUT as f64 / samples as f64;
    format!(
        r#"
        name = "bench-reference-mlp"
        [model]
        kind = "mlp"
        layers = {layers}
        activation = "relu"
        [dataset]
        kind = "synthetic_classification"
        samples = {samples}
        features = 784
        classes = 10
        validation_split = {share:.12}
        seed = 1234
        [optimizer]
        kind = "sgd"
        lr = 0.05
        [training]
        batch_size = {batch}
        steps = {steps}
        seed = 0
        shuffle = false
        log_every = 50
        "#
    )
}

/// The validated reference workload at `batch`.
pub fn reference_mlp(steps: u64, batch: usize) -> Result<TrainConfig, BenchError> {
    validated("bench-reference-mlp", &reference_mlp_spec(steps, batch)?)
}

/// The digits CNN of `examples/digits-cnn.toml` (conv, pool, conv, dense; AdamW with a step
/// schedule), trained for `steps` steps instead of its epochs, reporting every `log_every` steps.
pub fn digits_cnn(steps: u64, log_every: u64) -> Result<TrainConfig, BenchError> {
    const WORKLOAD: &str = "digits-cnn";
    let mut spec = parse(WORKLOAD, include_str!("../../../examples/digits-cnn.toml"))?;
    let training = spec.training.get_or_insert_with(Default::default);
    training.epochs = 0;
    training.steps = steps as i64;
    training.log_every = Some(log_every as i64);
    validated(WORKLOAD, &spec)
}

/// The reference workload on `ranks` data-parallel workers synchronised by `shards` parameter
/// servers in `mode` (async, ssp with staleness 2, or sync).
pub fn reference_mlp_ps_spec(steps: u64, ranks: usize, shards: usize, mode: &str) -> Result<JobSpec, BenchError> {
    let mut spec = reference_mlp_spec(steps, 128)?;
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
    fn larger_batches_get_eight_batches_of_data_and_the_same_held_out_set() {
        // The peers' 128 keeps the 16,384 samples of `ddp_mlp.py`; `gpu_mlp.py` takes
        // max(16384, 8 x batch) rounded down to whole batches.
        assert_eq!(reference_train_samples(128), 16_384);
        assert_eq!(reference_train_samples(1024), 16_384);
        assert_eq!(reference_train_samples(8192), 65_536);
        assert_eq!(reference_train_samples(3000), 24_000);
        assert_eq!(reference_train_samples(5000), 40_000);
        assert_eq!(reference_train_samples(1000), 16_000);
        for batch in [128, 1000, 3000] {
            let splits = shoal_train::data::load(&reference_mlp(10, batch).expect("valid").dataset).expect("data");
            assert_eq!(splits.train.rows, reference_train_samples(batch), "batch {batch}");
            assert_eq!(splits.validation.map(|v| v.rows), Some(HELD_OUT), "batch {batch}");
        }
    }

    #[test]
    fn every_reference_workload_is_a_valid_job() {
        let mlp = reference_mlp(200, 128).expect("the reference MLP");
        assert_eq!(mlp.training.batch_size, 128);
        assert_eq!(mlp.training.duration, shoal_common::spec::Duration::Steps(200));
        let cnn = digits_cnn(200, 10).expect("the digits CNN");
        assert_eq!(cnn.training.duration, shoal_common::spec::Duration::Steps(200));
        assert_eq!(cnn.training.log_every, 10);
        assert_eq!(cnn.model.kind, shoal_common::spec::ModelKind::Cnn);
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
