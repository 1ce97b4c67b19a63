//! Shape inference: the per-sample dims every layer of a model sees on data of a given shape, and
//! the model's parameter count. Validation, model building and morphs all ask this one function,
//! so a model that passes validation is a model the engine can build.

use super::config::{CellOp, LayerConfig, ModelConfig};

/// What a model must consume and produce, per sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataShape {
    /// Flat features per sample.
    pub features: usize,
    /// (channels, height, width) when the samples are images.
    pub image: Option<[usize; 3]>,
    /// Classes (classification) or target columns (regression); 0 when not known yet, and the
    /// output layer then counts no parameters.
    pub outputs: usize,
}

/// The dims a model's layers see, per sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// Input dims of every layer of `model.layers`, then the dims the output layer consumes:
    /// `[features]` for flat data, `[channels, height, width]` until the first linear layer or cell
    /// for images.
    pub dims: Vec<Vec<usize>>,
    /// Parameters of every layer of `model.layers`, then of the output layer.
    pub params: Vec<u128>,
}

impl ModelShape {
    /// Per-sample input dims of the model.
    pub fn input(&self) -> &[usize] {
        &self.dims[0]
    }

    /// All parameters of the model.
    pub fn param_count(&self) -> u128 {
        self.params.iter().sum()
    }
}

/// Why a model does not fit its data. `layer` is an index into `model.layers`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Conv or pool layers on data that has no image shape.
    #[error("conv and pool layers need an image shape; the dataset has {features} flat features")]
    NoImage { features: usize },
    /// `model.input_shape` does not hold the data's features.
    #[error("{}x{}x{} = {} values but the dataset has {features} features", shape[0], shape[1], shape[2], volume(shape))]
    InputSize { shape: [usize; 3], features: usize },
    /// A conv or pool layer after a linear layer or cell.
    #[error("{kind} layers must come before linear layers and cells")]
    SpatialAfterFlat { layer: usize, kind: &'static str },
    /// A conv kernel wider than its padded input.
    #[error("kernel {kernel} is larger than its {height}x{width} (padded) input")]
    KernelTooLarge { layer: usize, kernel: usize, height: usize, width: usize },
    /// A pooling window wider than its input.
    #[error("window {size} is larger than its {height}x{width} input")]
    WindowTooLarge { layer: usize, size: usize, height: usize, width: usize },
    /// A skip connection between different widths.
    #[error("a skip connection needs equal input and output widths, got {inputs} -> {width}")]
    SkipWidth { layer: usize, inputs: usize, width: usize },
    /// A cell or skip connection on the spatial output of a conv or pool layer.
    #[error("{what} needs flat features, not the {dims:?} output of a conv or pool layer")]
    NotFlat { layer: usize, what: &'static str, dims: Vec<usize> },
    /// A layer with no outputs (a width or channel count of 0).
    #[error("output shape {dims:?} is empty")]
    Empty { layer: usize, dims: Vec<usize> },
}

impl ShapeError {
    /// The layer at fault, if it is one layer.
    pub fn layer(&self) -> Option<usize> {
        match *self {
            Self::NoImage { .. } | Self::InputSize { .. } => None,
            Self::SpatialAfterFlat { layer, .. }
            | Self::KernelTooLarge { layer, .. }
            | Self::WindowTooLarge { layer, .. }
            | Self::SkipWidth { layer, .. }
            | Self::NotFlat { layer, .. }
            | Self::Empty { layer, .. } => Some(layer),
        }
    }

    /// The field at fault within `model`: `layers[2]` or `input_shape`.
    pub fn field(&self) -> String {
        match self.layer() {
            Some(i) => format!("layers[{i}]"),
            None => "input_shape".into(),
        }
    }

    /// The setting at fault within `model`, as precise as it is known: `layers[2].kernel`.
    pub fn setting(&self) -> String {
        let setting = match self {
            Self::NoImage { .. } | Self::InputSize { .. } | Self::Empty { .. } => return self.field(),
            Self::SpatialAfterFlat { .. } | Self::NotFlat { what: "a cell", .. } => "type",
            Self::KernelTooLarge { .. } => "kernel",
            Self::WindowTooLarge { .. } => "size",
            Self::SkipWidth { .. } | Self::NotFlat { .. } => "skip",
        };
        format!("{}.{setting}", self.field())
    }
}

/// Values in a tensor of these dims.
fn volume(dims: &[usize]) -> u128 {
    dims.iter().map(|&d| d as u128).product()
}

/// Follows the per-sample shape through `model`'s layers on `data`. Flat data (or a model without
/// conv and pool layers) enters as `[features]`; conv and pool layers need `model.input_shape` or
/// the data's image shape. Errors come in layer order: inference goes on past a skip connection
/// whose widths differ (its output is still known) and stops at the first error that leaves the
/// shape unknown.
pub fn infer_shape(model: &ModelConfig, data: &DataShape) -> Result<ModelShape, Vec<ShapeError>> {
    if let Some(shape) = model.input_shape
        && volume(&shape) != data.features as u128
    {
        return Err(vec![ShapeError::InputSize { shape, features: data.features }]);
    }
    let spatial = model.layers.iter().any(|l| matches!(l, LayerConfig::Conv { .. } | LayerConfig::Pool { .. }));
    let input = if spatial {
        let Some(shape) = model.input_shape.or(data.image) else {
            return Err(vec![ShapeError::NoImage { features: data.features }]);
        };
        shape.to_vec()
    } else {
        vec![data.features]
    };

    let mut errors = Vec::new();
    let mut dims = vec![input];
    let mut params = Vec::with_capacity(model.layers.len() + 1);
    for (i, layer) in model.layers.iter().enumerate() {
        match step(i, layer, &dims[i]) {
            Ok((output, p, skip_error)) => {
                errors.extend(skip_error);
                if output.contains(&0) {
                    errors.push(ShapeError::Empty { layer: i, dims: output });
                    return Err(errors);
                }
                dims.push(output);
                params.push(p);
            }
            Err(e) => {
                errors.push(e);
                return Err(errors);
            }
        }
    }
    let outputs = data.outputs as u128;
    params.push(volume(&dims[model.layers.len()]) * outputs + outputs);
    if errors.is_empty() { Ok(ModelShape { dims, params }) } else { Err(errors) }
}

/// One layer on input dims `input`: its output dims, its parameters and a skip-width error that
/// does not stop inference.
fn step(i: usize, layer: &LayerConfig, input: &[usize]) -> Result<(Vec<usize>, u128, Option<ShapeError>), ShapeError> {
    match *layer {
        LayerConfig::Linear { width, skip, .. } => {
            let mut skip_error = None;
            if skip {
                let &[inputs] = input else {
                    return Err(ShapeError::NotFlat { layer: i, what: "a skip connection", dims: input.to_vec() });
                };
                if inputs != width {
                    skip_error = Some(ShapeError::SkipWidth { layer: i, inputs, width });
                }
            }
            let width128 = width as u128;
            Ok((vec![width], volume(input) * width128 + width128, skip_error))
        }
        LayerConfig::Cell { ref ops, .. } => {
            let &[width] = input else {
                return Err(ShapeError::NotFlat { layer: i, what: "a cell", dims: input.to_vec() });
            };
            let linear = ops.iter().filter(|o| **o == CellOp::Linear).count() as u128;
            let width128 = width as u128;
            Ok((vec![width], linear * (width128 * width128 + width128), None))
        }
        LayerConfig::Conv { channels, kernel, stride, padding, .. } => {
            let &[in_channels, h, w] = input else {
                return Err(ShapeError::SpatialAfterFlat { layer: i, kind: "conv" });
            };
            let pad = |n: usize| n.saturating_add(padding.saturating_mul(2));
            let (hp, wp) = (pad(h), pad(w));
            if kernel > hp || kernel > wp {
                return Err(ShapeError::KernelTooLarge { layer: i, kernel, height: hp, width: wp });
            }
            let stride = stride.max(1);
            let output = vec![channels, (hp - kernel) / stride + 1, (wp - kernel) / stride + 1];
            let channels128 = channels as u128;
            Ok((output, in_channels as u128 * (kernel as u128).pow(2) * channels128 + channels128, None))
        }
        LayerConfig::Pool { size, .. } => {
            let &[channels, h, w] = input else {
                return Err(ShapeError::SpatialAfterFlat { layer: i, kind: "pool" });
            };
            if size > h || size > w {
                return Err(ShapeError::WindowTooLarge { layer: i, size, height: h, width: w });
            }
            let size = size.max(1);
            Ok((vec![channels, h / size, w / size], 0, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Activation, ModelKind, PoolKind};

    fn linear(width: usize, skip: bool) -> LayerConfig {
        LayerConfig::Linear { width, activation: Activation::Relu, skip }
    }

    fn model(kind: ModelKind, layers: Vec<LayerConfig>) -> ModelConfig {
        ModelConfig { kind, layers, dropout: 0.0, input_shape: None }
    }

    const DIGITS: DataShape = DataShape { features: 64, image: Some([1, 8, 8]), outputs: 10 };

    #[test]
    fn dims_and_params_follow_the_layers() {
        // conv 1->4, k3 p1 on 8x8 keeps 8x8 (4*9+4 = 40 params); pool 2 halves it; linear 4*4*4 -> 5.
        let cnn = model(
            ModelKind::Cnn,
            vec![
                LayerConfig::Conv { channels: 4, kernel: 3, stride: 1, padding: 1, activation: Activation::Relu },
                LayerConfig::Pool { kind: PoolKind::Max, size: 2 },
                linear(5, false),
                LayerConfig::Cell {
                    ops: vec![CellOp::Linear, CellOp::Identity, CellOp::Linear],
                    activation: Activation::Relu,
                },
            ],
        );
        let shape = infer_shape(&cnn, &DIGITS).expect("fits");
        assert_eq!(shape.dims, vec![vec![1, 8, 8], vec![4, 8, 8], vec![4, 4, 4], vec![5], vec![5]]);
        assert_eq!(shape.params, vec![40, 0, 64 * 5 + 5, 2 * (25 + 5), 5 * 10 + 10]);
        assert_eq!(shape.param_count(), 40 + 325 + 60 + 60);
        // Without conv or pool layers the digits are flat.
        let mlp = model(ModelKind::Mlp, vec![linear(8, false)]);
        assert_eq!(infer_shape(&mlp, &DIGITS).expect("fits").input(), [64]);
    }

    #[test]
    fn errors_name_the_layer_and_the_setting() {
        let flat = DataShape { features: 6, image: None, outputs: 2 };
        let errors =
            infer_shape(&model(ModelKind::Mlp, vec![linear(8, false), linear(4, true), linear(3, true)]), &flat)
                .expect_err("two bad skips");
        let shown: Vec<String> = errors.iter().map(|e| format!("{}: {e}", e.setting())).collect();
        assert_eq!(
            shown,
            [
                "layers[1].skip: a skip connection needs equal input and output widths, got 8 -> 4",
                "layers[2].skip: a skip connection needs equal input and output widths, got 4 -> 3",
            ]
        );
        let pool = LayerConfig::Pool { kind: PoolKind::Max, size: 2 };
        let errors = infer_shape(&model(ModelKind::Cnn, vec![pool.clone()]), &flat).expect_err("no image");
        assert_eq!(errors[0].field(), "input_shape");
        assert_eq!(errors[0].to_string(), "conv and pool layers need an image shape; the dataset has 6 flat features");
        let cell = LayerConfig::Cell { ops: vec![CellOp::Identity], activation: Activation::Relu };
        let errors = infer_shape(&model(ModelKind::Cnn, vec![pool.clone(), cell]), &DIGITS).expect_err("cell on image");
        assert_eq!(errors[0].setting(), "layers[1].type");
        assert_eq!(
            errors[0].to_string(),
            "a cell needs flat features, not the [1, 4, 4] output of a conv or pool layer"
        );
        let errors = infer_shape(&model(ModelKind::Cnn, vec![linear(8, false), pool]), &DIGITS).expect_err("pool late");
        assert_eq!(errors[0].to_string(), "pool layers must come before linear layers and cells");
        let mut declared = model(ModelKind::Mlp, vec![linear(8, false)]);
        declared.input_shape = Some([2, 2, 2]);
        let errors = infer_shape(&declared, &flat).expect_err("8 values for 6 features");
        assert_eq!(errors[0].to_string(), "2x2x2 = 8 values but the dataset has 6 features");
    }
}
