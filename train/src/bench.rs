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
    spec.parallelism = Some(shoal_common::proto::ParallelismSpec { data: Some(ranks as i64) });
    spec.ps = Some(shoal_common::proto::PsSpec {
        shards: Some(shards as i64),
        mode: mode.into(),
        staleness: (mode == "ssp").then_some(2),
    });
    spec
}
