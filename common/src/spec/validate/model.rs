//! The `model` section: the kind, the layers with their settings, and the shapes they take on
//! the dataset when that is known at submit time.

use crate::proto;
use crate::spec::config::{
    Activation, CellOp, DatasetConfig, DatasetSource, LayerConfig, ModelConfig, ModelKind, PoolKind, cell_nodes,
};
use crate::spec::errors::FieldErrors;
use crate::spec::shape::{DataShape, infer_shape};

/// Largest parameter count of a model whose shape is known at submit time.
const MAX_PARAMS: u128 = 1 << 31;

pub(super) fn model(c: &mut FieldErrors, m: Option<&proto::ModelSpec>, dataset: &DatasetConfig) -> ModelConfig {
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

/// The data's shape when it is known at submit time: from the dataset kind, or from a declared
/// `model.input_shape` (the output width is not known then).
pub(super) fn known_data(d: &DatasetConfig, declared: Option<[usize; 3]>) -> Option<DataShape> {
    let raw = raw_data(d, declared)?;
    if d.transforms.is_empty() {
        return Some(raw);
    }
    // Transforms give flat features, of a width known only when every step fixes it.
    let features = super::transforms::width(d, raw.features)?;
    Some(DataShape { features, image: None, outputs: raw.outputs })
}

/// [`known_data`] before the dataset's transforms (whose outputs are the same).
pub(super) fn raw_data(d: &DatasetConfig, declared: Option<[usize; 3]>) -> Option<DataShape> {
    match d.source {
        DatasetSource::Digits => Some(DataShape { features: 64, image: Some([1, 8, 8]), outputs: 10 }),
        DatasetSource::SyntheticClassification { features, classes: outputs, .. }
        | DatasetSource::SyntheticRegression { features, targets: outputs, .. } => {
            Some(DataShape { features, image: None, outputs })
        }
        _ => {
            let shape = declared?;
            let features = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
            Some(DataShape { features, image: Some(shape), outputs: 0 })
        }
    }
}

/// Follows the shape through the layers when the data's shape is known at submit time: every
/// layer must fit its input, and the parameter count must stay sane.
fn check_shapes(c: &mut FieldErrors, m: &ModelConfig, dataset: &DatasetConfig) {
    let Some(data) = known_data(dataset, m.input_shape) else {
        return;
    };
    match infer_shape(m, &data) {
        Ok(shape) => {
            let params = shape.param_count();
            if params > MAX_PARAMS {
                c.fail(
                    "model.layers",
                    format!("the model has {params} parameters, more than the {MAX_PARAMS} allowed"),
                );
            }
        }
        Err(errors) => {
            for e in errors {
                c.fail(format!("model.{}", e.setting()), e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DIGITS, errors_of};
    use crate::spec::load_toml;

    #[test]
    fn layer_fields_of_other_layer_types_are_rejected() {
        let errors = errors_of(&DIGITS.replace("{ width = 64 }", "{ width = 64, kernel = 3 }"));
        assert_eq!(errors, vec!["model.layers[0].kernel: does not apply to a linear layer"]);
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
}
