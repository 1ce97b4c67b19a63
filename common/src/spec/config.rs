//! The validated form of a job spec: enums instead of strings, defaults applied, sizes unsigned.
//! Built only by [`super::validate`], so code that holds one may trust it.

use std::path::PathBuf;

use shoal_analysis::reduce::TransformSpec;

/// Everything a worker needs to run a training job (or an evaluation job, which trains nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub name: String,
    pub priority: i64,
    pub model: ModelConfig,
    pub dataset: DatasetConfig,
    pub optimizer: OptimizerConfig,
    pub training: TrainingConfig,
    /// What one rank needs on its worker.
    pub resources: Resources,
    pub parallel: ParallelConfig,
    /// Start from a parent's trained weights, morphed to this model.
    pub inherit: Option<InheritConfig>,
    /// Run this program instead of a built-in model.
    pub command: Option<CommandConfig>,
    /// A search trial's parameters as a JSON object ("" for other jobs).
    pub trial_params: String,
    /// Train on a teacher's softened outputs as well as the labels.
    pub distill: Option<DistillConfig>,
    /// Remove weights or neurons on a schedule while training.
    pub prune: Option<PruneConfig>,
    /// Quantize the final checkpoint to int8, with quantization-aware training when asked.
    pub quantize: Option<QuantizeConfig>,
    /// Score a trained artifact instead of training: an evaluation job. Its `model`, `dataset` and
    /// `optimizer` are then placeholders that nothing reads; of `training`, only what applies to
    /// any job (`collective_timeout`, `max_retries`) means anything.
    pub evaluate: Option<EvaluateConfig>,
}

/// An evaluation job (`[evaluate]`): each of `parallel.data` ranks scores an equal share of the
/// rows of `data` with `artifact`; rank 0 merges the shares into one report.
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluateConfig {
    /// A checkpoint step directory, a pruned checkpoint or an int8 artifact; the model and its
    /// data preparation come from it.
    pub artifact: PathBuf,
    /// A CSV file with a header: the model's features, the label and the slice and group columns.
    pub data: PathBuf,
    /// The label's column; `None` takes the one the artifact's job trained on.
    pub label_column: Option<String>,
    /// Slices the metrics are reported for: a column, or a cross of two columns `a*b`.
    pub slice_by: Vec<String>,
    /// Quantile buckets for numeric slice and group columns with many values, in
    /// [`Self::MIN_BUCKETS`, `Self::MAX_BUCKETS`].
    pub buckets: usize,
    /// The column whose groups get fairness rates.
    pub groups: Option<String>,
    /// The group the others are compared with; `None` takes the largest. Only with `groups`.
    pub baseline: Option<String>,
    /// The class whose probability is thresholded for the fairness rates.
    pub positive_class: Option<String>,
    /// Bootstrap resamples of the intervals, in 1..=[`Self::MAX_RESAMPLES`].
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Columns that are not features, for models trained without column names.
    pub ignore: Vec<String>,
    /// Where rank 0 writes the JSON report; `None` writes [`Self::DEFAULT_OUTPUT`] in the job's
    /// folder under the worker's checkpoint directory.
    pub output: Option<PathBuf>,
    /// Where rank 0 also writes the self-contained HTML report, when set.
    pub html: Option<PathBuf>,
}

impl EvaluateConfig {
    /// Quantile buckets when none are given, and their bounds.
    pub const DEFAULT_BUCKETS: usize = 4;
    pub const MIN_BUCKETS: usize = 2;
    pub const MAX_BUCKETS: usize = 100;
    /// Bootstrap resamples when none are given, and their most.
    pub const DEFAULT_RESAMPLES: usize = 1000;
    pub const MAX_RESAMPLES: usize = 100_000;
    /// Seed of the bootstrap when none is given.
    pub const DEFAULT_SEED: u64 = 0;
    /// File name of the JSON report when `output` is not set.
    pub const DEFAULT_OUTPUT: &'static str = "evaluation.json";
}

/// Int8 quantization of a job's final checkpoint (`[quantize]`, or `training.qat`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantizeConfig {
    /// Fake quantization in the forward pass while training (quantization-aware training).
    pub aware: bool,
    pub calibration: Calibration,
    /// Calibration batches from the training split, and their size (both > 0).
    pub batches: usize,
    pub batch: usize,
    /// Largest accuracy drop accepted; `None` quantizes every layer.
    pub max_accuracy_drop: Option<f64>,
}

/// How a layer's input range is chosen when int8 scales are calibrated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    MinMax,
    /// The given percentile (in (0, 100]) of the absolute values.
    Percentile(f64),
    Entropy,
}

impl Calibration {
    pub const NAMES: &'static [&'static str] = &["minmax", "percentile", "entropy"];
    /// The percentile used when none is given.
    pub const DEFAULT_PERCENTILE: f64 = 99.99;

    /// The method called `name`, with `percentile` for `percentile` (checked by the caller).
    pub fn parse(name: &str, percentile: f64) -> Option<Self> {
        match name {
            "" | "minmax" => Some(Self::MinMax),
            "percentile" => Some(Self::Percentile(percentile)),
            "entropy" => Some(Self::Entropy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::MinMax => "minmax",
            Self::Percentile(_) => "percentile",
            Self::Entropy => "entropy",
        }
    }
}

/// Pruning (`[prune]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PruneConfig {
    pub method: PruneMethod,
    /// Share removed at the end of the schedule, in [0, 1).
    pub sparsity: f64,
    pub schedule: PruneSchedule,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneMethod {
    /// The smallest weights, by one threshold over all weight tensors (`global`) or per tensor.
    Magnitude { global: bool },
    /// Whole hidden units of linear layers, ranked by the L1 (or L2) norm of their incoming weights.
    Structured { l2: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneSchedule {
    /// Everything before step `at` (0-based: 0 = before training).
    OneShot { at: u64 },
    /// Every `frequency` steps from `begin` to `end`, the sparsity rising as
    /// `s · (1 − (1 − progress)³)`.
    Gradual { begin: u64, end: u64, frequency: u64 },
}

impl PruneSchedule {
    /// The share to remove when `done` steps are done, if pruning is due then.
    pub fn due(&self, sparsity: f64, done: u64) -> Option<f64> {
        match *self {
            Self::OneShot { at } => (done == at).then_some(sparsity),
            Self::Gradual { begin, end, frequency } => {
                if done < begin || done > end || (!(done - begin).is_multiple_of(frequency) && done != end) {
                    return None;
                }
                let progress = (done - begin) as f64 / (end - begin) as f64;
                Some(sparsity * (1.0 - (1.0 - progress).powi(3)))
            }
        }
    }

    /// The share removed once `done` steps are done (0 before the schedule starts).
    pub fn reached(&self, sparsity: f64, done: u64) -> f64 {
        match *self {
            Self::OneShot { at } => {
                if done >= at {
                    sparsity
                } else {
                    0.0
                }
            }
            Self::Gradual { begin, end, frequency } => {
                if done < begin {
                    return 0.0;
                }
                let last = if done >= end { end } else { begin + (done - begin) / frequency * frequency };
                self.due(sparsity, last).unwrap_or(0.0)
            }
        }
    }
}

/// Knowledge distillation (`[distill]`): the loss is
/// `alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE(labels)`.
#[derive(Clone, Debug, PartialEq)]
pub struct DistillConfig {
    /// The teacher's checkpoint: a step directory or a job's checkpoint folder. Empty until the
    /// coordinator resolves `teacher_job`.
    pub teacher: PathBuf,
    /// The finished job named as the teacher ("" when given by checkpoint).
    pub teacher_job: String,
    /// The teacher's model, when the spec carries it (otherwise read from the checkpoint).
    pub teacher_model: Option<ModelConfig>,
    /// The temperature `T`, > 0.
    pub temperature: f64,
    /// The teacher term's weight, in [0, 1].
    pub alpha: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InheritConfig {
    pub checkpoint: PathBuf,
    /// The parent's model; read from the job file saved with the checkpoint when not given.
    pub model: Option<ModelConfig>,
}

/// An external trial: a program that reads its parameters and prints metric lines.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandConfig {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
}

/// Which all-reduce implementation synchronises data-parallel ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// NCCL when every rank has a GPU and NCCL loads, the TCP ring otherwise.
    Auto,
    /// Ring all-reduce over TCP between workers (CPU).
    Ring,
    /// NCCL (GPU).
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Ring => "ring",
            Self::Nccl => "nccl",
        }
    }
}

/// How parameter servers apply pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsMode {
    /// Each push is applied when it arrives; a pull returns the newest version.
    Async,
    /// Like async, but a worker more than `staleness` steps ahead of the slowest waits.
    Ssp { staleness: u64 },
    /// All workers' gradients of a step are averaged and applied once.
    Sync,
}

impl PsMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Ssp { .. } => "ssp",
            Self::Sync => "sync",
        }
    }
}

/// How ranks keep their parameters in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// Gradients summed across ranks every step (ring or NCCL).
    AllReduce,
    /// Gradients pushed to, parameters pulled from, `shards` parameter-server shards.
    ParamServer { shards: usize, mode: PsMode },
}

/// Order of micro-batch work in a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeSchedule {
    /// All forwards, then all backwards.
    GPipe,
    /// After warm-up, one forward then one backward (PipeDream-flush).
    OneFOneB,
}

/// How layers are cut into stages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    /// Balanced by measured per-layer time.
    MeasuredTime,
    /// Balanced by parameter count.
    Params,
    /// Stage i runs layers [cuts[i-1], cuts[i]).
    Cuts(Vec<usize>),
}

/// Pipeline parallelism.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Stages per replica (1 = no pipeline).
    pub stages: usize,
    pub micro_batches: usize,
    pub schedule: PipeSchedule,
    pub recompute: bool,
    pub partition: Partition,
}

/// How a job spreads over workers.
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelConfig {
    /// Data-parallel ranks, or pipeline replicas (1 = a single worker or one pipeline). For
    /// elastic jobs, the most ranks.
    pub data: usize,
    /// Elastic jobs run with `min_data..=data` ranks; equal to `data` otherwise.
    pub min_data: usize,
    pub pipeline: PipelineConfig,
    pub sync: SyncKind,
    pub backend: Backend,
    /// Gradient bucket size for fused all-reduces.
    pub bucket_bytes: usize,
    /// Steps between cross-rank parameter checksums; 0 = never.
    pub checksum_every: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Mlp,
    Cnn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    Silu,
    LeakyRelu,
    Identity,
}

impl Activation {
    /// Every activation, in the order of [`Activation::NAMES`].
    pub const ALL: [Activation; 7] = [
        Activation::Relu,
        Activation::Gelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Silu,
        Activation::LeakyRelu,
        Activation::Identity,
    ];

    pub const NAMES: &'static [&'static str] = &["relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu", "identity"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Self::Relu,
            "gelu" => Self::Gelu,
            "tanh" => Self::Tanh,
            "sigmoid" => Self::Sigmoid,
            "silu" => Self::Silu,
            "leaky_relu" => Self::LeakyRelu,
            "identity" | "none" | "linear" => Self::Identity,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Gelu => "gelu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
            Self::Silu => "silu",
            Self::LeakyRelu => "leaky_relu",
            Self::Identity => "identity",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// One hidden layer.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerConfig {
    /// `skip`: the layer's input is added to its output (widths match).
    Linear {
        width: usize,
        activation: Activation,
        skip: bool,
    },
    Conv {
        channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        activation: Activation,
    },
    Pool {
        kind: PoolKind,
        size: usize,
    },
    /// A DAG cell on flat features that keeps their width: node 0 is the input, node j sums
    /// `ops` applied to nodes 0..j (edges ordered (0,1), (0,2), (1,2), (0,3), ...), the last node
    /// is the output. Linear edges are width x width with the cell's activation.
    Cell {
        ops: Vec<CellOp>,
        activation: Activation,
    },
}

/// The operation on one edge of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellOp {
    Zero,
    Identity,
    Linear,
}

impl CellOp {
    pub const NAMES: &'static [&'static str] = &["zero", "identity", "linear"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zero" => Some(Self::Zero),
            "identity" => Some(Self::Identity),
            "linear" => Some(Self::Linear),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Zero => "zero",
            Self::Identity => "identity",
            Self::Linear => "linear",
        }
    }
}

/// Nodes after the input of a cell with `edges` edges, if that is a triangular number.
pub fn cell_nodes(edges: usize) -> Option<usize> {
    (1..=16).find(|n| n * (n + 1) / 2 == edges)
}

/// The edges of a cell with `nodes` nodes after its input, in `ops` order: (from, to).
pub fn cell_edges(nodes: usize) -> Vec<(usize, usize)> {
    (1..=nodes).flat_map(|to| (0..to).map(move |from| (from, to))).collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub kind: ModelKind,
    pub layers: Vec<LayerConfig>,
    /// Dropout after every hidden linear layer; 0 = none.
    pub dropout: f64,
    /// (channels, height, width) that flat features are viewed as, when given.
    pub input_shape: Option<[usize; 3]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Classification,
    Regression,
}

/// A CSV label column: by header name or by 0-based index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnRef {
    Name(String),
    Index(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    /// Images scaled to [0, 1]; other features unchanged.
    Auto,
    None,
    /// Each feature to zero mean and unit variance (statistics of the training split).
    Standard,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DatasetSource {
    /// Gaussian inputs labelled by a random linear teacher (argmax of x·W), as the peer benchmarks.
    SyntheticClassification { samples: usize, features: usize, classes: usize, noise: f64 },
    /// Gaussian inputs, targets from a random linear map plus Gaussian noise.
    SyntheticRegression { samples: usize, features: usize, targets: usize, noise: f64 },
    /// The 8x8 handwritten digits that ship inside the smartcore crate (1,797 images, 10 classes).
    Digits,
    /// MNIST-style IDX files.
    Idx { images: PathBuf, labels: PathBuf, validation: Option<(PathBuf, PathBuf)> },
    /// A CSV file with one label column; the other columns are numeric features.
    Csv { path: PathBuf, validation_path: Option<PathBuf>, label_column: ColumnRef, header: bool, task: Task },
    /// Parquet or Arrow IPC files (a file, a folder or a name pattern): one label column, and
    /// `feature_columns` (or every numeric column but the label) as features.
    Columnar {
        format: ColumnarFormat,
        path: PathBuf,
        validation_path: Option<PathBuf>,
        label_column: String,
        feature_columns: Vec<String>,
        task: Task,
    },
}

/// How a columnar data set is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnarFormat {
    Parquet,
    /// Arrow IPC files (the "file" format, also known as Feather v2).
    ArrowIpc,
}

impl ColumnarFormat {
    /// The file extensions a folder of this format's files is read by.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Self::Parquet => &["parquet"],
            Self::ArrowIpc => &["arrow", "feather", "ipc"],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DatasetConfig {
    pub source: DatasetSource,
    /// Share of the samples held out for validation (unused when a validation file is given).
    pub validation_split: f64,
    /// Seeds the synthetic generator and the split.
    pub seed: u64,
    pub normalize: Normalize,
    /// Share of the training samples used, in (0, 1].
    pub train_fraction: f64,
    /// Feature transforms fitted on the training split, in order, after `normalize`.
    pub transforms: Vec<TransformSpec>,
    /// Threads gathering training batches.
    pub loader_threads: usize,
    /// Training batches prepared ahead.
    pub prefetch: usize,
}

impl DatasetConfig {
    /// Files the dataset reads, with the spec path of each (for existence checks and messages).
    pub fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        match &self.source {
            DatasetSource::Idx { images, labels, validation } => {
                let mut files = vec![("dataset.images", images), ("dataset.labels", labels)];
                if let Some((vi, vl)) = validation {
                    files.push(("dataset.validation_images", vi));
                    files.push(("dataset.validation_labels", vl));
                }
                files
            }
            DatasetSource::Csv { path, validation_path, .. }
            | DatasetSource::Columnar { path, validation_path, .. } => {
                let mut files = vec![("dataset.path", path)];
                if let Some(v) = validation_path {
                    files.push(("dataset.validation_path", v));
                }
                files
            }
            _ => Vec::new(),
        }
    }

    /// The extensions of the files a folder or name pattern in [`Self::files`] stands for; empty
    /// when each of those paths must be one file.
    pub fn extensions(&self) -> &'static [&'static str] {
        match &self.source {
            DatasetSource::Columnar { format, .. } => format.extensions(),
            _ => &[],
        }
    }

    /// Whether the task is classification, when that is known before loading.
    pub fn task(&self) -> Task {
        self.source.task()
    }
}

impl DatasetSource {
    /// Whether the source's task is classification.
    pub fn task(&self) -> Task {
        match self {
            DatasetSource::SyntheticRegression { .. } => Task::Regression,
            DatasetSource::Csv { task, .. } | DatasetSource::Columnar { task, .. } => *task,
            _ => Task::Classification,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd { momentum: f64, nesterov: bool },
    AdamW { beta1: f64, beta2: f64, eps: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduleKind {
    Constant,
    /// Multiply by `gamma` every `step_size` steps.
    Step {
        step_size: u64,
        gamma: f64,
    },
    /// Half a cosine from lr down to `min_lr` at the last step.
    Cosine {
        min_lr: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub warmup_steps: u64,
}

impl Schedule {
    /// Learning rate at `step` (0-based) of `total_steps`, for base rate `lr`.
    pub fn lr_at(&self, lr: f64, step: u64, total_steps: u64) -> f64 {
        if step < self.warmup_steps {
            return lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => lr,
            ScheduleKind::Step { step_size, gamma } => lr * gamma.powi(((step - self.warmup_steps) / step_size) as i32),
            ScheduleKind::Cosine { min_lr } => {
                let span = total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
                min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Duration {
    Epochs(u64),
    Steps(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingConfig {
    pub batch_size: usize,
    pub duration: Duration,
    pub seed: u64,
    /// Steps between validation runs; 0 = every epoch end.
    pub eval_every: u64,
    /// Steps between checkpoints; 0 = only the final one.
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub shuffle: bool,
    /// Micro-batches accumulated per optimizer step.
    pub accumulate_steps: usize,
    /// Longest wait of any collective operation for a peer.
    pub collective_timeout: std::time::Duration,
    /// Automatic restarts after infrastructure failures.
    pub max_retries: u32,
    /// Matrix-product precision on a GPU.
    pub precision: Precision,
}

/// Precision of the matrix products on a GPU (`training.precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// IEEE fp32 throughout.
    #[default]
    Fp32,
    /// fp32 storage and accumulation, TF32 tensor-core products.
    Tf32,
    /// Products of bf16 copies of the operands, accumulated in fp32; master weights, optimizer
    /// state and everything else in fp32.
    Bf16,
}

impl Precision {
    pub const NAMES: &'static [&'static str] = &["fp32", "tf32", "bf16"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "" | "fp32" => Some(Self::Fp32),
            "tf32" => Some(Self::Tf32),
            "bf16" => Some(Self::Bf16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
            Self::Bf16 => "bf16",
        }
    }
}

/// What a job needs on its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Resources {
    pub cpus: u32,
    pub memory_mb: u64,
    pub gpus: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_activation_is_listed_once_under_its_name() {
        let parsed: Vec<Activation> = Activation::NAMES.iter().filter_map(|n| Activation::parse(n)).collect();
        assert_eq!(parsed, Activation::ALL);
    }

    #[test]
    fn warmup_then_cosine_ends_at_min_lr() {
        let s = Schedule { kind: ScheduleKind::Cosine { min_lr: 0.001 }, warmup_steps: 10 };
        assert!((s.lr_at(0.1, 0, 110) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(0.1, 9, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(0.1, 10, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(0.1, 110, 110) - 0.001).abs() < 1e-12);
        let mid = s.lr_at(0.1, 60, 110);
        assert!((mid - (0.001 + 0.5 * 0.099)).abs() < 1e-12);
    }

    #[test]
    fn gradual_pruning_rises_as_a_cubic_and_holds_after_its_end() {
        let g = PruneSchedule::Gradual { begin: 100, end: 400, frequency: 50 };
        assert_eq!(g.due(0.8, 99), None);
        assert_eq!(g.due(0.8, 100), Some(0.0));
        assert_eq!(g.due(0.8, 120), None, "only every 50 steps");
        let half = g.due(0.8, 250).expect("due at 250");
        assert!((half - 0.8 * (1.0 - 0.5f64.powi(3))).abs() < 1e-12, "{half}");
        assert_eq!(g.due(0.8, 400), Some(0.8));
        assert_eq!(g.due(0.8, 450), None);
        assert_eq!(g.reached(0.8, 260), half, "between prunings the last share holds");
        assert_eq!(g.reached(0.8, 1000), 0.8);
        assert_eq!(g.reached(0.8, 50), 0.0);
        let once = PruneSchedule::OneShot { at: 0 };
        assert_eq!((once.due(0.5, 0), once.due(0.5, 1), once.reached(0.5, 7)), (Some(0.5), None, 0.5));
    }

    #[test]
    fn step_schedule_decays_every_step_size() {
        let s = Schedule { kind: ScheduleKind::Step { step_size: 5, gamma: 0.5 }, warmup_steps: 0 };
        assert_eq!(s.lr_at(1.0, 4, 100), 1.0);
        assert_eq!(s.lr_at(1.0, 5, 100), 0.5);
        assert_eq!(s.lr_at(1.0, 12, 100), 0.25);
    }
}
