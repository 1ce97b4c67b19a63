//! Validation of a wire [`JobSpec`] into a [`TrainConfig`]. Every check records an error and goes
//! on, so one pass reports every bad field with its path.

use std::path::PathBuf;

use super::config::*;
use super::errors::{FieldError, FieldErrors};
use crate::proto::{self, JobSpec};

/// Largest parameter count of a model whose shape is known at submit time.
const MAX_PARAMS: u128 = 1 << 31;
const DEFAULT_VALIDATION_SPLIT: f64 = 0.2;
const DEFAULT_LOG_EVERY: i64 = 10;
const DEFAULT_MEMORY_MB: i64 = 512;
const DEFAULT_COLLECTIVE_TIMEOUT_S: f64 = 60.0;
/// Automatic restarts after infrastructure failures, unless the job says otherwise.
const DEFAULT_MAX_RETRIES: i64 = 3;
const DEFAULT_BUCKET_MB: f64 = 25.0;
const DEFAULT_CHECKSUM_EVERY: i64 = 100;
/// Most data-parallel ranks one job may ask for.
pub const MAX_RANKS: i64 = 256;
/// Most parameter-server shards one job may ask for.
pub const MAX_SHARDS: i64 = 64;

/// Validates a spec, applying defaults. Returns every problem found.
pub fn validate(spec: &JobSpec) -> Result<TrainConfig, Vec<FieldError>> {
    let mut c = FieldErrors::new();

    let name = spec.name.trim().to_owned();
    if name.is_empty() {
        c.fail("name", "must not be empty");
    } else if name.len() > 128 || name.chars().any(char::is_control) {
        c.fail("name", "must be at most 128 printable characters");
    }
    if spec.priority.abs() > 1_000_000 {
        c.fail("priority", "must be between -1000000 and 1000000");
    }

    let command = command(&mut c, spec.command.as_ref());
    // An external trial brings its own model and data: those sections are optional then.
    let mut filled = spec.clone();
    if command.is_some() {
        filled.training.get_or_insert_with(|| proto::TrainingSpec { batch_size: 1, steps: 1, ..Default::default() });
        filled.dataset.get_or_insert_with(|| proto::DatasetSpec { kind: "digits".into(), ..Default::default() });
        filled.model.get_or_insert_with(|| proto::ModelSpec { kind: "mlp".into(), ..Default::default() });
        if let Some(t) = filled.training.as_mut()
            && t.batch_size == 0
        {
            t.batch_size = 1;
        }
    }
    let spec = &filled;
    let training = training(&mut c, spec.training.as_ref());
    let dataset = dataset(&mut c, spec.dataset.as_ref(), training.seed);
    let model = model(&mut c, spec.model.as_ref(), &dataset);
    let optimizer = optimizer(&mut c, spec.optimizer.as_ref());
    let resources = resources(&mut c, spec.resources.as_ref());
    let parallel = parallel(&mut c, spec, &resources, &model, &training);
    let inherit = spec.inherit.as_ref().map(|i| {
        if i.checkpoint.trim().is_empty() {
            c.fail("inherit.checkpoint", "must name the parent's checkpoint directory");
        }
        let mut sub = FieldErrors::new();
        let parent = self::model(&mut sub, i.model.as_ref(), &dataset);
        c.absorb("inherit.", sub);
        InheritConfig { checkpoint: PathBuf::from(i.checkpoint.trim()), model: parent }
    });
    if !spec.trial_params.is_empty()
        && !serde_json::from_str::<serde_json::Value>(&spec.trial_params).is_ok_and(|v| v.is_object())
    {
        c.fail("trial_params", "must be a JSON object");
    }
    if command.is_some() && parallel.data * parallel.pipeline.stages > 1 {
        c.fail("command", "external trials run on one worker (parallelism must be 1)");
    }

    c.into_result(TrainConfig {
        name,
        priority: spec.priority,
        model,
        dataset,
        optimizer,
        training,
        resources,
        parallel,
        inherit,
        command,
        trial_params: spec.trial_params.clone(),
    })
}

fn command(c: &mut FieldErrors, cmd: Option<&proto::CommandSpec>) -> Option<CommandConfig> {
    let cmd = cmd?;
    if cmd.argv.is_empty() || cmd.argv[0].trim().is_empty() {
        c.fail("command.argv", "must name a program to run");
    }
    let mut env: Vec<(String, String)> = cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.sort();
    for (k, _) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            c.fail(format!("command.env.{k}"), "is not a valid variable name");
        }
    }
    Some(CommandConfig {
        argv: cmd.argv.clone(),
        env,
        workdir: (!cmd.workdir.trim().is_empty()).then(|| PathBuf::from(cmd.workdir.trim())),
    })
}

fn training(c: &mut FieldErrors, t: Option<&proto::TrainingSpec>) -> TrainingConfig {
    let default = proto::TrainingSpec::default();
    let t = match t {
        Some(t) => t,
        None => {
            c.fail("training", "required (at least batch_size and epochs or steps)");
            &default
        }
    };
    let batch_size = if t.batch_size == 0 && default == *t { 1 } else { c.size("training.batch_size", t.batch_size) };
    let duration = match (t.epochs, t.steps) {
        (e, 0) if e > 0 => Duration::Epochs(e as u64),
        (0, s) if s > 0 => Duration::Steps(s as u64),
        (0, 0) => {
            if default != *t {
                c.fail("training.epochs", "set training.epochs or training.steps (must be > 0)");
            }
            Duration::Steps(1)
        }
        (e, s) if e > 0 && s > 0 => {
            c.fail("training.steps", "set either training.epochs or training.steps, not both");
            Duration::Steps(1)
        }
        (e, s) => {
            if e < 0 {
                c.fail("training.epochs", "must be > 0");
            }
            if s < 0 {
                c.fail("training.steps", "must be > 0");
            }
            Duration::Steps(1)
        }
    };
    let (Duration::Epochs(n) | Duration::Steps(n)) = duration;
    if n > 1 << 40 {
        c.fail("training", "epochs or steps is unreasonably large");
    }
    let seed = c.non_negative("training.seed", t.seed);
    let eval_every = c.non_negative("training.eval_every", t.eval_every);
    let checkpoint_every = c.non_negative("training.checkpoint_every", t.checkpoint_every);
    let log_every = c.size_or("training.log_every", t.log_every, DEFAULT_LOG_EVERY) as u64;
    let accumulate_steps = c.size_or("training.accumulate_steps", t.accumulate_steps, 1);
    if accumulate_steps > 1024 {
        c.fail("training.accumulate_steps", "must be at most 1024");
    }
    let timeout = t.collective_timeout.unwrap_or(DEFAULT_COLLECTIVE_TIMEOUT_S);
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 86_400.0) {
        c.fail("training.collective_timeout", format!("must be seconds in (0, 86400], got {timeout}"));
    }
    let max_retries = t.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
    if !(0..=100).contains(&max_retries) {
        c.fail("training.max_retries", format!("must be in 0..=100, got {max_retries}"));
    }
    TrainingConfig {
        max_retries: max_retries.clamp(0, 100) as u32,
        accumulate_steps,
        collective_timeout: std::time::Duration::from_secs_f64(if timeout.is_finite() && timeout > 0.0 {
            timeout.min(86_400.0)
        } else {
            1.0
        }),
        batch_size,
        duration,
        seed,
        eval_every,
        checkpoint_every,
        log_every,
        shuffle: t.shuffle.unwrap_or(true),
    }
}

fn dataset(c: &mut FieldErrors, d: Option<&proto::DatasetSpec>, training_seed: u64) -> DatasetConfig {
    let default = proto::DatasetSpec::default();
    let d = match d {
        Some(d) => d,
        None => {
            c.fail("dataset", "required");
            &default
        }
    };
    const KINDS: &[&str] = &["synthetic_classification", "synthetic_regression", "digits", "idx", "csv"];
    let kind = c.choice("dataset.kind", &d.kind, None, |k| KINDS.iter().find(|n| **n == k).copied(), KINDS);
    let context = format!("dataset kind `{}`", kind.unwrap_or("?"));

    let validation_split = d.validation_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
    c.in_range("dataset.validation_split", validation_split, 0.0, 1.0, false);
    let seed = match d.seed {
        Some(s) => c.non_negative("dataset.seed", s),
        None => training_seed,
    };
    const NORMALIZE: &[&str] = &["auto", "none", "standard"];
    let normalize = c
        .choice(
            "dataset.normalize",
            &d.normalize,
            Some(Normalize::Auto),
            |n| match n {
                "auto" => Some(Normalize::Auto),
                "none" => Some(Normalize::None),
                "standard" => Some(Normalize::Standard),
                _ => None,
            },
            NORMALIZE,
        )
        .unwrap_or(Normalize::Auto);

    let synthetic = matches!(kind, Some("synthetic_classification" | "synthetic_regression"));
    let idx = kind == Some("idx");
    let csv = kind == Some("csv");
    if !synthetic && kind.is_some() {
        c.unused("dataset.samples", d.samples != 0, &context);
        c.unused("dataset.features", d.features != 0, &context);
        c.unused("dataset.noise", d.noise != 0.0, &context);
    }
    if kind != Some("synthetic_classification") && kind.is_some() {
        c.unused("dataset.classes", d.classes != 0, &context);
    }
    if kind != Some("synthetic_regression") && kind.is_some() {
        c.unused("dataset.targets", d.targets.is_some(), &context);
    }
    if !idx && kind.is_some() {
        c.unused("dataset.images", !d.images.is_empty(), &context);
        c.unused("dataset.labels", !d.labels.is_empty(), &context);
        c.unused("dataset.validation_images", !d.validation_images.is_empty(), &context);
        c.unused("dataset.validation_labels", !d.validation_labels.is_empty(), &context);
    }
    if !csv && kind.is_some() {
        c.unused("dataset.path", !d.path.is_empty(), &context);
        c.unused("dataset.validation_path", !d.validation_path.is_empty(), &context);
        c.unused("dataset.label_column", !d.label_column.is_empty(), &context);
        c.unused("dataset.header", d.header.is_some(), &context);
        c.unused("dataset.task", !d.task.is_empty(), &context);
    }

    let source = match kind {
        Some("synthetic_classification") => DatasetSource::SyntheticClassification {
            samples: c.size("dataset.samples", d.samples),
            features: c.size("dataset.features", d.features),
            classes: {
                let classes = c.size("dataset.classes", d.classes);
                if classes == 1 {
                    c.fail("dataset.classes", "must be >= 2");
                }
                classes
            },
            noise: c.in_range("dataset.noise", d.noise, 0.0, 1e6, true),
        },
        Some("synthetic_regression") => DatasetSource::SyntheticRegression {
            samples: c.size("dataset.samples", d.samples),
            features: c.size("dataset.features", d.features),
            targets: c.size_or("dataset.targets", d.targets, 1),
            noise: c.in_range("dataset.noise", d.noise, 0.0, 1e6, true),
        },
        Some("idx") => {
            let images = path(c, "dataset.images", &d.images, true);
            let labels = path(c, "dataset.labels", &d.labels, true);
            let validation = match (d.validation_images.is_empty(), d.validation_labels.is_empty()) {
                (true, true) => None,
                (false, false) => Some((
                    path(c, "dataset.validation_images", &d.validation_images, true),
                    path(c, "dataset.validation_labels", &d.validation_labels, true),
                )),
                (false, true) => {
                    c.fail("dataset.validation_labels", "required when validation_images is set");
                    None
                }
                (true, false) => {
                    c.fail("dataset.validation_images", "required when validation_labels is set");
                    None
                }
            };
            DatasetSource::Idx { images, labels, validation }
        }
        Some("csv") => {
            let header = d.header.unwrap_or(true);
            let label_column = if d.label_column.trim().is_empty() {
                c.fail("dataset.label_column", "required for csv (a header name or a 0-based index)");
                ColumnRef::Index(0)
            } else if let Ok(i) = d.label_column.trim().parse::<usize>() {
                ColumnRef::Index(i)
            } else if header {
                ColumnRef::Name(d.label_column.trim().to_owned())
            } else {
                c.fail("dataset.label_column", "must be a 0-based index when header = false");
                ColumnRef::Index(0)
            };
            const TASKS: &[&str] = &["classification", "regression"];
            let task = c
                .choice(
                    "dataset.task",
                    &d.task,
                    Some(Task::Classification),
                    |t| match t {
                        "classification" => Some(Task::Classification),
                        "regression" => Some(Task::Regression),
                        _ => None,
                    },
                    TASKS,
                )
                .unwrap_or(Task::Classification);
            DatasetSource::Csv {
                path: path(c, "dataset.path", &d.path, true),
                validation_path: (!d.validation_path.is_empty())
                    .then(|| path(c, "dataset.validation_path", &d.validation_path, true)),
                label_column,
                header,
                task,
            }
        }
        _ => DatasetSource::Digits,
    };
    let train_fraction = d.train_fraction.unwrap_or(1.0);
    c.in_range("dataset.train_fraction", train_fraction, 0.0, 1.0, true);
    if train_fraction <= 0.0 {
        c.fail("dataset.train_fraction", "must be > 0");
    }
    DatasetConfig { source, validation_split, seed, normalize, train_fraction }
}

fn path(c: &mut FieldErrors, field: &str, value: &str, required: bool) -> PathBuf {
    if value.trim().is_empty() {
        if required {
            c.fail(field, "required");
        }
    } else if value.contains('\0') {
        c.fail(field, "must not contain NUL bytes");
    }
    PathBuf::from(value)
}

/// Shape of the input as (channels, height, width) when known before loading.
fn known_input_shape(d: &DatasetConfig) -> Option<[usize; 3]> {
    match d.source {
        DatasetSource::Digits => Some([1, 8, 8]),
        DatasetSource::SyntheticClassification { features, .. }
        | DatasetSource::SyntheticRegression { features, .. } => Some([features, 1, 1]),
        _ => None,
    }
}

fn known_output_width(d: &DatasetConfig) -> Option<usize> {
    match d.source {
        DatasetSource::Digits => Some(10),
        DatasetSource::SyntheticClassification { classes, .. } => Some(classes),
        DatasetSource::SyntheticRegression { targets, .. } => Some(targets),
        _ => None,
    }
}

fn model(c: &mut FieldErrors, m: Option<&proto::ModelSpec>, dataset: &DatasetConfig) -> ModelConfig {
    let default = proto::ModelSpec::default();
    let m = match m {
        Some(m) => m,
        None => {
            c.fail("model", "required");
            &default
        }
    };
    let kind = c
        .choice(
            "model.kind",
            &m.kind,
            None,
            |k| match k {
                "mlp" => Some(ModelKind::Mlp),
                "cnn" => Some(ModelKind::Cnn),
                _ => None,
            },
            &["mlp", "cnn"],
        )
        .unwrap_or(ModelKind::Mlp);
    let activation = c
        .choice("model.activation", &m.activation, Some(Activation::Relu), Activation::parse, Activation::NAMES)
        .unwrap_or(Activation::Relu);
    let dropout = c.in_range("model.dropout", m.dropout.unwrap_or(0.0), 0.0, 1.0, false);

    let input_shape = match m.input_shape.as_slice() {
        [] => None,
        [ch, h, w] => Some([
            c.size("model.input_shape[0]", *ch),
            c.size("model.input_shape[1]", *h),
            c.size("model.input_shape[2]", *w),
        ]),
        other => {
            c.fail("model.input_shape", format!("must be [channels, height, width], got {} values", other.len()));
            None
        }
    };
    if let (Some([ch, h, w]), Some([f, 1, 1])) = (input_shape, known_input_shape(dataset)) {
        if ch * h * w != f {
            c.fail(
                "model.input_shape",
                format!("{ch}x{h}x{w} = {} values but the dataset has {f} features", ch * h * w),
            );
        }
    }
    if m.layers.len() > 256 {
        c.fail("model.layers", "at most 256 layers");
    }

    let mut layers = Vec::with_capacity(m.layers.len());
    for (i, l) in m.layers.iter().enumerate() {
        let p = |f: &str| format!("model.layers[{i}].{f}");
        let ty = if l.r#type.is_empty() { "linear" } else { l.r#type.as_str() };
        let act = |c: &mut FieldErrors| {
            c.choice(&p("activation"), &l.activation, Some(activation), Activation::parse, Activation::NAMES)
                .unwrap_or(activation)
        };
        let layer = match ty {
            "linear" => {
                let ctx = "a linear layer";
                c.unused(&p("channels"), l.channels != 0, ctx);
                c.unused(&p("kernel"), l.kernel != 0, ctx);
                c.unused(&p("stride"), l.stride.is_some(), ctx);
                c.unused(&p("padding"), l.padding != 0, ctx);
                c.unused(&p("pool"), !l.pool.is_empty(), ctx);
                c.unused(&p("size"), l.size.is_some(), ctx);
                c.unused(&p("ops"), !l.ops.is_empty(), ctx);
                LayerConfig::Linear { width: c.size(&p("width"), l.width), activation: act(c), skip: l.skip }
            }
            "cell" => {
                let ctx = "a cell";
                for (name, set) in [
                    ("width", l.width != 0),
                    ("channels", l.channels != 0),
                    ("kernel", l.kernel != 0),
                    ("stride", l.stride.is_some()),
                    ("padding", l.padding != 0),
                    ("pool", !l.pool.is_empty()),
                    ("size", l.size.is_some()),
                    ("skip", l.skip),
                ] {
                    c.unused(&p(name), set, ctx);
                }
                if cell_nodes(l.ops.len()).is_none() {
                    c.fail(
                        p("ops"),
                        format!(
                            "a cell of n nodes has n(n+1)/2 edges (1, 3, 6, 10, ... up to 16 nodes), got {}",
                            l.ops.len()
                        ),
                    );
                }
                let mut ops = Vec::with_capacity(l.ops.len());
                for (k, o) in l.ops.iter().enumerate() {
                    match CellOp::parse(o) {
                        Some(op) => ops.push(op),
                        None => c.fail(
                            format!("model.layers[{i}].ops[{k}]"),
                            format!("unknown operation `{o}` (expected zero, identity or linear)"),
                        ),
                    }
                }
                LayerConfig::Cell { ops, activation: act(c) }
            }
            "conv" => {
                let ctx = "a conv layer";
                if kind != ModelKind::Cnn {
                    c.fail(p("type"), "conv layers need model.kind = \"cnn\"");
                }
                c.unused(&p("width"), l.width != 0, ctx);
                c.unused(&p("pool"), !l.pool.is_empty(), ctx);
                c.unused(&p("size"), l.size.is_some(), ctx);
                c.unused(&p("skip"), l.skip, ctx);
                c.unused(&p("ops"), !l.ops.is_empty(), ctx);
                LayerConfig::Conv {
                    channels: c.size(&p("channels"), l.channels),
                    kernel: c.size(&p("kernel"), l.kernel),
                    stride: c.size_or(&p("stride"), l.stride, 1),
                    padding: c.non_negative(&p("padding"), l.padding) as usize,
                    activation: act(c),
                }
            }
            "pool" => {
                let ctx = "a pool layer";
                if kind != ModelKind::Cnn {
                    c.fail(p("type"), "pool layers need model.kind = \"cnn\"");
                }
                c.unused(&p("width"), l.width != 0, ctx);
                c.unused(&p("channels"), l.channels != 0, ctx);
                c.unused(&p("kernel"), l.kernel != 0, ctx);
                c.unused(&p("stride"), l.stride.is_some(), ctx);
                c.unused(&p("padding"), l.padding != 0, ctx);
                c.unused(&p("activation"), !l.activation.is_empty(), ctx);
                c.unused(&p("skip"), l.skip, ctx);
                c.unused(&p("ops"), !l.ops.is_empty(), ctx);
                let pool = c
                    .choice(
                        &p("pool"),
                        &l.pool,
                        Some(PoolKind::Max),
                        |k| match k {
                            "max" => Some(PoolKind::Max),
                            "avg" => Some(PoolKind::Avg),
                            _ => None,
                        },
                        &["max", "avg"],
                    )
                    .unwrap_or(PoolKind::Max);
                LayerConfig::Pool { kind: pool, size: c.size_or(&p("size"), l.size, 2) }
            }
            other => {
                c.fail(p("type"), format!("unknown layer type `{other}` (expected linear, conv, pool or cell)"));
                continue;
            }
        };
        layers.push(layer);
    }

    let config = ModelConfig { kind, layers, dropout, input_shape };
    check_shapes(c, &config, dataset);
    config
}

/// Follows the tensor shape through the layers when the input shape is known at submit time:
/// conv and pool must not shrink an image below 1x1, and the parameter count must stay sane.
fn check_shapes(c: &mut FieldErrors, m: &ModelConfig, dataset: &DatasetConfig) {
    let declared = m.input_shape;
    let image = match dataset.source {
        DatasetSource::Digits => Some([1, 8, 8]),
        _ => None,
    };
    let has_spatial = m.layers.iter().any(|l| matches!(l, LayerConfig::Conv { .. } | LayerConfig::Pool { .. }));
    let shape = match (declared, image) {
        (Some(s), _) => Some(s),
        (None, Some(s)) => Some(s),
        (None, None) => {
            if has_spatial && known_input_shape(dataset).is_some() {
                c.fail("model.input_shape", "required for conv and pool layers on a dataset without an image shape");
            }
            known_input_shape(dataset)
        }
    };
    let Some([mut ch, mut h, mut w]) = shape else {
        return;
    };
    let mut flat: Option<usize> = None;
    let mut params: u128 = 0;
    for (i, l) in m.layers.iter().enumerate() {
        match *l {
            LayerConfig::Conv { channels, kernel, stride, padding, .. } => {
                if flat.is_some() {
                    c.fail(format!("model.layers[{i}].type"), "conv layers must come before linear layers");
                    return;
                }
                let (hp, wp) = (h + 2 * padding, w + 2 * padding);
                if kernel > hp || kernel > wp {
                    c.fail(
                        format!("model.layers[{i}].kernel"),
                        format!("kernel {kernel} is larger than its {hp}x{wp} (padded) input"),
                    );
                    return;
                }
                params += (ch * kernel * kernel * channels + channels) as u128;
                h = (hp - kernel) / stride + 1;
                w = (wp - kernel) / stride + 1;
                ch = channels;
            }
            LayerConfig::Pool { size, .. } => {
                if flat.is_some() {
                    c.fail(format!("model.layers[{i}].type"), "pool layers must come before linear layers");
                    return;
                }
                if size > h || size > w {
                    c.fail(
                        format!("model.layers[{i}].size"),
                        format!("window {size} is larger than its {h}x{w} input"),
                    );
                    return;
                }
                h /= size;
                w /= size;
            }
            LayerConfig::Linear { width, skip, .. } => {
                let fan_in = flat.unwrap_or(ch * h * w);
                if skip && fan_in != width {
                    c.fail(
                        format!("model.layers[{i}].skip"),
                        format!("a skip connection needs equal input and output widths, got {fan_in} -> {width}"),
                    );
                }
                params += (fan_in * width + width) as u128;
                flat = Some(width);
            }
            LayerConfig::Cell { ref ops, .. } => {
                let Some(width) = flat else {
                    c.fail(
                        format!("model.layers[{i}].type"),
                        "a cell needs flat features: put a linear layer before it",
                    );
                    return;
                };
                let linear = ops.iter().filter(|o| **o == CellOp::Linear).count();
                params += (linear * (width * width + width)) as u128;
            }
        }
    }
    if let Some(out) = known_output_width(dataset) {
        params += (flat.unwrap_or(ch * h * w) * out + out) as u128;
    }
    if params > MAX_PARAMS {
        c.fail("model.layers", format!("the model has {params} parameters, more than the {MAX_PARAMS} allowed"));
    }
}

fn optimizer(c: &mut FieldErrors, o: Option<&proto::OptimizerSpec>) -> OptimizerConfig {
    let default = proto::OptimizerSpec { kind: "sgd".into(), ..Default::default() };
    let o = o.unwrap_or(&default);
    let kind_name = c
        .choice(
            "optimizer.kind",
            &o.kind,
            Some("sgd"),
            |k| ["sgd", "adamw"].into_iter().find(|n| *n == k),
            &["sgd", "adamw"],
        )
        .unwrap_or("sgd");
    let kind = if kind_name == "adamw" {
        c.unused("optimizer.momentum", o.momentum != 0.0, "adamw");
        c.unused("optimizer.nesterov", o.nesterov, "adamw");
        OptimizerKind::AdamW {
            beta1: c.in_range("optimizer.beta1", o.beta1.unwrap_or(0.9), 0.0, 1.0, false),
            beta2: c.in_range("optimizer.beta2", o.beta2.unwrap_or(0.999), 0.0, 1.0, false),
            eps: c.positive("optimizer.eps", o.eps.unwrap_or(1e-8)),
        }
    } else {
        c.unused("optimizer.beta1", o.beta1.is_some(), "sgd");
        c.unused("optimizer.beta2", o.beta2.is_some(), "sgd");
        c.unused("optimizer.eps", o.eps.is_some(), "sgd");
        let momentum = c.in_range("optimizer.momentum", o.momentum, 0.0, 1.0, false);
        if o.nesterov && momentum == 0.0 {
            c.fail("optimizer.nesterov", "needs optimizer.momentum > 0");
        }
        OptimizerKind::Sgd { momentum, nesterov: o.nesterov }
    };
    let default_lr = if kind_name == "adamw" { 1e-3 } else { 1e-2 };
    let lr = c.positive("optimizer.lr", o.lr.unwrap_or(default_lr));
    if lr > 100.0 {
        c.fail("optimizer.lr", "must be at most 100");
    }
    let default_wd = if kind_name == "adamw" { 0.01 } else { 0.0 };
    let weight_decay = c.in_range("optimizer.weight_decay", o.weight_decay.unwrap_or(default_wd), 0.0, 1.0, true);

    let s = o.schedule.clone().unwrap_or_default();
    let sched_kind = c
        .choice(
            "optimizer.schedule.kind",
            &s.kind,
            Some("constant"),
            |k| ["constant", "step", "cosine"].into_iter().find(|n| *n == k),
            &["constant", "step", "cosine"],
        )
        .unwrap_or("constant");
    let warmup_steps = c.non_negative("optimizer.schedule.warmup_steps", s.warmup_steps);
    let kind_s = match sched_kind {
        "step" => {
            c.unused("optimizer.schedule.min_lr", s.min_lr != 0.0, "the step schedule");
            ScheduleKind::Step {
                step_size: c.size("optimizer.schedule.step_size", s.step_size) as u64,
                gamma: {
                    let g = s.gamma.unwrap_or(0.1);
                    if !(g.is_finite() && g > 0.0 && g <= 1.0) {
                        c.fail("optimizer.schedule.gamma", format!("must be in (0, 1], got {g}"));
                    }
                    g
                },
            }
        }
        "cosine" => {
            c.unused("optimizer.schedule.step_size", s.step_size != 0, "the cosine schedule");
            c.unused("optimizer.schedule.gamma", s.gamma.is_some(), "the cosine schedule");
            ScheduleKind::Cosine { min_lr: c.in_range("optimizer.schedule.min_lr", s.min_lr, 0.0, lr, true) }
        }
        _ => {
            c.unused("optimizer.schedule.step_size", s.step_size != 0, "the constant schedule");
            c.unused("optimizer.schedule.gamma", s.gamma.is_some(), "the constant schedule");
            c.unused("optimizer.schedule.min_lr", s.min_lr != 0.0, "the constant schedule");
            ScheduleKind::Constant
        }
    };
    OptimizerConfig { kind, lr, weight_decay, schedule: Schedule { kind: kind_s, warmup_steps } }
}

fn parallel(
    c: &mut FieldErrors,
    spec: &JobSpec,
    resources: &Resources,
    model: &ModelConfig,
    training: &TrainingConfig,
) -> ParallelConfig {
    let p = spec.parallelism.unwrap_or_default();
    let data = match p.data {
        None => 1,
        Some(n) if n < 1 => {
            c.fail("parallelism.data", "must be >= 1");
            1
        }
        Some(n) if n > MAX_RANKS => {
            c.fail("parallelism.data", format!("must be at most {MAX_RANKS}"));
            1
        }
        Some(n) => n as usize,
    };
    let ps = spec.ps.clone().unwrap_or_default();
    let sync = match spec.sync.as_str() {
        "" | "allreduce" => {
            if spec.ps.is_some() {
                c.fail("ps", "applies only with sync = \"ps\"");
            }
            SyncKind::AllReduce
        }
        "ps" => {
            let shards = match ps.shards {
                None => 1,
                Some(n) if !(1..=MAX_SHARDS).contains(&n) => {
                    c.fail("ps.shards", format!("must be between 1 and {MAX_SHARDS}"));
                    1
                }
                Some(n) => n as usize,
            };
            let mode = match ps.mode.as_str() {
                "" | "async" => PsMode::Async,
                "sync" => PsMode::Sync,
                "ssp" => PsMode::Ssp { staleness: c.non_negative("ps.staleness", ps.staleness.unwrap_or(2)) },
                other => {
                    c.fail("ps.mode", format!("unknown value `{other}` (expected async, ssp or sync)"));
                    PsMode::Async
                }
            };
            if !matches!(mode, PsMode::Ssp { .. }) && ps.staleness.is_some() {
                c.fail("ps.staleness", "applies only with ps.mode = \"ssp\"");
            }
            if spec.allreduce.is_some() {
                c.fail("allreduce", "does not apply with sync = \"ps\"");
            }
            SyncKind::ParamServer { shards, mode }
        }
        other => {
            c.fail("sync", format!("unknown value `{other}` (expected allreduce or ps)"));
            SyncKind::AllReduce
        }
    };
    let a = spec.allreduce.clone().unwrap_or_default();
    let backend = c
        .choice(
            "allreduce.backend",
            &a.backend,
            Some(Backend::Auto),
            |b| match b {
                "auto" => Some(Backend::Auto),
                "ring" => Some(Backend::Ring),
                "nccl" => Some(Backend::Nccl),
                _ => None,
            },
            &["auto", "ring", "nccl"],
        )
        .unwrap_or(Backend::Auto);
    if backend == Backend::Nccl && resources.gpus == 0 {
        c.fail("allreduce.backend", "nccl needs a GPU per rank: set resources.gpus >= 1");
    }
    let bucket_mb = a.bucket_mb.unwrap_or(DEFAULT_BUCKET_MB);
    if !(bucket_mb.is_finite() && bucket_mb > 0.0 && bucket_mb <= 1024.0) {
        c.fail("allreduce.bucket_mb", format!("must be in (0, 1024], got {bucket_mb}"));
    }
    let checksum_every = c.non_negative("allreduce.checksum_every", a.checksum_every.unwrap_or(DEFAULT_CHECKSUM_EVERY));
    let pipeline = pipeline(c, spec, model, training, data, &sync, backend);
    let min_data = match p.data_min {
        None => data,
        Some(n) if n < 1 || n as usize > data => {
            c.fail("parallelism.data", format!("elastic range {n}..{data}: MIN must be between 1 and MAX"));
            data
        }
        Some(n) => {
            if !matches!(sync, SyncKind::AllReduce) {
                c.fail("parallelism.data", "an elastic range applies to all-reduce jobs, not sync = \"ps\"");
            }
            if pipeline.stages > 1 {
                c.fail("parallelism.data", "an elastic range applies to data parallelism without pipeline stages");
            }
            n as usize
        }
    };
    ParallelConfig {
        data,
        min_data,
        pipeline,
        sync,
        backend,
        bucket_bytes: ((bucket_mb.clamp(1.0 / 1024.0, 1024.0)) * 1024.0 * 1024.0) as usize,
        checksum_every,
    }
}

/// Pipeline stages and their partition. A model has one unit per `model.layers` entry plus the
/// output layer; each stage runs a contiguous, non-empty range of units.
fn pipeline(
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

fn resources(c: &mut FieldErrors, r: Option<&proto::ResourceSpec>) -> Resources {
    let r = r.cloned().unwrap_or_default();
    let cpus = c.size_or("resources.cpus", r.cpus, 1);
    if cpus > 4096 {
        c.fail("resources.cpus", "must be at most 4096");
    }
    let memory_mb = c.size_or("resources.memory_mb", r.memory_mb, DEFAULT_MEMORY_MB) as u64;
    let gpus = c.non_negative("resources.gpus", r.gpus);
    if gpus > 64 {
        c.fail("resources.gpus", "must be at most 64");
    }
    Resources { cpus: cpus as u32, memory_mb, gpus: gpus as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{SpecError, load_toml, parse_toml};

    const DIGITS: &str = r#"
        name = "digits"
        [model]
        kind = "mlp"
        layers = [{ width = 64 }, { width = 32, activation = "tanh" }]
        [dataset]
        kind = "digits"
        [optimizer]
        kind = "adamw"
        lr = 0.003
        [optimizer.schedule]
        kind = "cosine"
        warmup_steps = 20
        [training]
        batch_size = 32
        epochs = 5
        seed = 7
    "#;

    fn errors_of(text: &str) -> Vec<String> {
        match load_toml(text) {
            Err(SpecError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("expected field errors, got {other}"),
            Ok(_) => panic!("expected field errors, spec was accepted"),
        }
    }

    #[test]
    fn a_good_spec_gets_its_defaults() {
        let (_, cfg) = load_toml(DIGITS).expect("valid");
        assert_eq!(cfg.model.layers.len(), 2);
        assert_eq!(cfg.model.layers[1], LayerConfig::Linear { width: 32, activation: Activation::Tanh, skip: false });
        assert_eq!(cfg.dataset.validation_split, 0.2);
        assert_eq!(cfg.dataset.seed, 7);
        assert_eq!(cfg.training.duration, Duration::Epochs(5));
        assert_eq!(cfg.training.log_every, 10);
        assert!(matches!(cfg.optimizer.kind, OptimizerKind::AdamW { beta1, .. } if beta1 == 0.9));
        assert_eq!(cfg.optimizer.weight_decay, 0.01);
        assert_eq!(cfg.resources, Resources { cpus: 1, memory_mb: 512, gpus: 0 });
        assert_eq!(cfg.parallel.data, 1);
        assert_eq!(cfg.parallel.backend, Backend::Auto);
        assert_eq!(cfg.training.accumulate_steps, 1);
        assert_eq!(cfg.training.collective_timeout, std::time::Duration::from_secs(60));
    }

    #[test]
    fn parameter_server_settings_are_checked() {
        let ps = |extra: &str| format!("sync = \"ps\"\n{DIGITS}\n[parallelism]\ndata = 3\n[ps]\n{extra}\n");
        let (_, cfg) = load_toml(&ps("shards = 2\nmode = \"ssp\"\nstaleness = 3")).expect("valid");
        assert_eq!(cfg.parallel.sync, SyncKind::ParamServer { shards: 2, mode: PsMode::Ssp { staleness: 3 } });
        let (_, cfg) = load_toml(&ps("")).expect("valid");
        assert_eq!(cfg.parallel.sync, SyncKind::ParamServer { shards: 1, mode: PsMode::Async });
        assert_eq!(errors_of(&ps("shards = 0")), vec!["ps.shards: must be between 1 and 64"]);
        assert_eq!(
            errors_of(&ps("mode = \"eventual\"")),
            vec!["ps.mode: unknown value `eventual` (expected async, ssp or sync)"]
        );
        assert_eq!(
            errors_of(&ps("mode = \"sync\"\nstaleness = 1")),
            vec!["ps.staleness: applies only with ps.mode = \"ssp\""]
        );
    }

    #[test]
    fn data_parallel_settings_are_checked() {
        let text = format!(
            "{DIGITS}\naccumulate_steps = 4\ncollective_timeout = 5\n[parallelism]\ndata = 3\n\
             [allreduce]\nbackend = \"ring\"\nbucket_mb = 2\n"
        );
        let (_, cfg) = load_toml(&text).expect("valid");
        assert_eq!(cfg.parallel.data, 3);
        assert_eq!(cfg.parallel.backend, Backend::Ring);
        assert_eq!(cfg.parallel.bucket_bytes, 2 << 20);
        assert_eq!(cfg.training.accumulate_steps, 4);
        let bad = format!(
            "{DIGITS}\naccumulate_steps = 0\ncollective_timeout = -1\n[parallelism]\ndata = 0\n\
             [allreduce]\nbackend = \"nccl\"\n"
        );
        let errors = errors_of(&bad);
        for expected in [
            "training.accumulate_steps: must be > 0 (required)",
            "training.collective_timeout: must be seconds in (0, 86400], got -1",
            "parallelism.data: must be >= 1",
            "allreduce.backend: nccl needs a GPU per rank: set resources.gpus >= 1",
        ] {
            assert!(errors.iter().any(|e| e == expected), "missing `{expected}` in {errors:#?}");
        }
    }

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

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let text = r#"
            name = ""
            [model]
            kind = "mlp"
            dropout = 1.5
            layers = [{ width = 64 }, { width = 32 }, { width = 0 }, { width = -4 }]
            [dataset]
            kind = "synthetic_classification"
            samples = -10
            features = 8
            classes = 3
            [optimizer]
            lr = -1.0
            [training]
            batch_size = 0
            epochs = 3
            [resources]
            cpus = 0
        "#;
        let errors = errors_of(text);
        for expected in [
            "name: must not be empty",
            "model.dropout: must be in [0, 1), got 1.5",
            "model.layers[2].width: must be > 0 (required)",
            "model.layers[3].width: must be > 0",
            "dataset.samples: must be > 0",
            "optimizer.lr: must be a finite number > 0, got -1",
            "training.batch_size: must be > 0 (required)",
            "resources.cpus: must be > 0 (required)",
        ] {
            assert!(errors.iter().any(|e| e == expected), "missing `{expected}` in {errors:#?}");
        }
        assert_eq!(errors.len(), 8, "{errors:#?}");
    }

    #[test]
    fn unknown_keys_and_bad_toml_fail_to_parse() {
        let err = parse_toml("name = \"x\"\n[model]\nkind = \"mlp\"\nwidht = 3\n").expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `widht`"), "{err}");
        let err = parse_toml("name = \"x\n").expect_err("broken string");
        assert!(matches!(err, SpecError::Parse { .. }));
        let err = parse_toml("[training]\nbatch_size = \"big\"\n").expect_err("wrong type");
        assert!(err.to_string().contains("batch_size"), "{err}");
    }

    #[test]
    fn fields_of_other_kinds_are_rejected() {
        let errors = errors_of(&DIGITS.replace("kind = \"digits\"", "kind = \"digits\"\nimages = \"a.idx\""));
        assert_eq!(errors, vec!["dataset.images: does not apply to dataset kind `digits`"]);
        let errors = errors_of(&DIGITS.replace("{ width = 64 }", "{ width = 64, kernel = 3 }"));
        assert_eq!(errors, vec!["model.layers[0].kernel: does not apply to a linear layer"]);
    }

    #[test]
    fn epochs_and_steps_are_exclusive() {
        let errors = errors_of(&DIGITS.replace("epochs = 5", "epochs = 5\nsteps = 100"));
        assert_eq!(errors, vec!["training.steps: set either training.epochs or training.steps, not both"]);
        let errors = errors_of(&DIGITS.replace("epochs = 5", "epochs = -5"));
        assert_eq!(errors, vec!["training.epochs: must be > 0"]);
    }

    #[test]
    fn cnn_shapes_are_checked_against_digits() {
        let cnn = |layers: &str| {
            DIGITS.replace("kind = \"mlp\"", "kind = \"cnn\"").replace(
                "layers = [{ width = 64 }, { width = 32, activation = \"tanh\" }]",
                &format!("layers = [{layers}]"),
            )
        };
        let ok = cnn(r#"{ type = "conv", channels = 8, kernel = 3, padding = 1 }, { type = "pool" }, { width = 32 }"#);
        let (_, cfg) = load_toml(&ok).expect("valid cnn");
        assert_eq!(cfg.model.layers.len(), 3);
        let errors = errors_of(&cnn(r#"{ type = "conv", channels = 8, kernel = 9 }"#));
        assert_eq!(errors, vec!["model.layers[0].kernel: kernel 9 is larger than its 8x8 (padded) input"]);
        let errors = errors_of(&cnn(r#"{ type = "pool", size = 4 }, { type = "pool", size = 4 }"#));
        assert_eq!(errors, vec!["model.layers[1].size: window 4 is larger than its 2x2 input"]);
        let errors = errors_of(&DIGITS.replace("{ width = 64 }", "{ type = \"conv\", channels = 2, kernel = 3 }"));
        assert_eq!(errors, vec!["model.layers[0].type: conv layers need model.kind = \"cnn\""]);
    }

    #[test]
    fn missing_sections_are_named() {
        let errors = errors_of("name = \"empty\"\n");
        assert!(errors.contains(&"model: required".to_owned()), "{errors:#?}");
        assert!(errors.contains(&"dataset: required".to_owned()), "{errors:#?}");
        assert!(errors.iter().any(|e| e.starts_with("training: required")), "{errors:#?}");
    }

    #[test]
    fn spec_round_trips_through_toml() {
        let (spec, _) = load_toml(DIGITS).expect("valid");
        let again = parse_toml(&crate::spec::to_toml(&spec)).expect("re-parse");
        assert_eq!(spec, again);
    }
}
