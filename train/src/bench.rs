//! The reference workload of `../shared/peers` (`ddp_mlp.py`): MLP 784-512-512-10 with ReLU,
//! cross-entropy, plain SGD at lr 0.05, batch 128, 16,384 synthetic teacher-labelled samples plus
//! 2,048 held out, visited in order. Used by `shoal bench train`.

use shoal_common::proto::JobSpec;
use shoal_common::spec::{self, TrainConfig};

/// The peer workload as a job spec.
pub fn reference_mlp_spec(steps: u64) -> JobSpec {
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
    spec::parse_toml(&text).expect("the reference spec parses")
}

/// The validated reference workload.
pub fn reference_mlp(steps: u64) -> TrainConfig {
    spec::validate(&reference_mlp_spec(steps)).expect("the reference spec is valid")
}

/// The reference workload on `ranks` data-parallel workers synchronised by `shards` parameter
/// servers in `mode` (async, ssp with staleness 2, or sync).
pub fn reference_mlp_ps_spec(steps: u64, ranks: usize, shards: usize, mode: &str) -> JobSpec {
    let mut spec = reference_mlp_spec(steps);
    spec.sync = "ps".into();
    spec.parallelism = Some(shoal_common::proto::ParallelismSpec { data: Some(ranks as i64), ..Default::default() });
    spec.ps = Some(shoal_common::proto::PsSpec {
        shards: Some(shards as i64),
        mode: mode.into(),
        staleness: (mode == "ssp").then_some(2),
    });
    spec
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
) -> JobSpec {
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
    spec::parse_toml(&text).expect("the reference pipeline spec parses")
}
