//! A sequential network built from a model spec and the shape of the data, with explicit forward
//! and backward passes and named parameters for checkpoints.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use shoal_common::spec::{Activation, LayerConfig, ModelConfig, ShapeError, infer_shape};

use crate::backend::{self, Backend, Tensor};
use crate::error::{Result, TrainError};
use crate::nn::{Cell, Conv2d, Ctx, Deferred, Dropout, Layer, Linear, Param, Pool2d, Residual, Saved};
use crate::rng::Rng;

/// What the model must consume and produce; shapes are inferred in shoal-common.
pub use shoal_common::spec::DataShape;

/// A model that does not fit its data, as the error the spec path names (`model.layers[1]`).
pub(crate) fn shape_error(e: &ShapeError) -> TrainError {
    TrainError::Shape { field: e.field(), reason: e.to_string() }
}

/// Parameter-gradient work left by [`Model::backward_input_first`]: (layer index, what it needs).
pub type DeferredGrads = Vec<(usize, Deferred)>;

/// A whole network, or one pipeline stage of it: the layers of a contiguous range of units. A unit
/// is one `model.layers` entry (with its dropout) or the output layer.
pub struct Model {
    layers: Vec<Box<dyn Layer>>,
    /// Per-sample input dims of every layer; the last entry is the output dims.
    dims: Vec<Vec<usize>>,
    /// The units held, out of `total_units`.
    units: Range<usize>,
    total_units: usize,
    /// Where the parameters, gradients and activations live.
    backend: Arc<dyn Backend>,
}

impl Model {
    /// Builds the network with PyTorch-style initialisation drawn from `seed`, on the CPU backend.
    pub fn build(cfg: &ModelConfig, data: &DataShape, seed: u64) -> Result<Self> {
        Self::build_on(cfg, data, seed, &backend::cpu())
    }

    /// [`Self::build`] on a given backend.
    pub fn build_on(cfg: &ModelConfig, data: &DataShape, seed: u64, backend: &Arc<dyn Backend>) -> Result<Self> {
        Self::build_stage_on(cfg, data, seed, 0..Self::unit_count(cfg), backend)
    }

    /// Units of a network: its layers plus the output layer.
    pub fn unit_count(cfg: &ModelConfig) -> usize {
        cfg.layers.len() + 1
    }

    /// Builds only the units in `units`. Each unit draws its initial weights from its own stream,
    /// so a stage holds exactly the values the whole network would.
    pub fn build_stage(cfg: &ModelConfig, data: &DataShape, seed: u64, units: Range<usize>) -> Result<Self> {
        Self::build_stage_on(cfg, data, seed, units, &backend::cpu())
    }

    /// [`Self::build_stage`] on a given backend.
    pub fn build_stage_on(
        cfg: &ModelConfig,
        data: &DataShape,
        seed: u64,
        units: Range<usize>,
        backend: &Arc<dyn Backend>,
    ) -> Result<Self> {
        let total_units = Self::unit_count(cfg);
        if units.is_empty() || units.end > total_units {
            return Err(TrainError::Shape {
                field: "pipeline".into(),
                reason: format!("units {units:?} are not a non-empty range of the model's {total_units}"),
            });
        }
        // Every layer's dims, checked for the whole model even when this stage holds part of it.
        let shape = infer_shape(cfg, data).map_err(|errors| shape_error(&errors[0]))?;
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let mut dims = vec![shape.dims[units.start].clone()];
        for (i, l) in cfg.layers.iter().enumerate().filter(|(i, _)| units.contains(i)) {
            let name = format!("layers.{i}");
            let mut rng = Rng::derive(seed, "init", i as u64);
            let input = &shape.dims[i];
            let layer: Box<dyn Layer> = match *l {
                LayerConfig::Linear { width, activation, skip } => {
                    let linear = Linear::new(&name, input.iter().product(), width, activation, &mut rng, backend)?;
                    if skip { Box::new(Residual::new(linear, backend)) } else { Box::new(linear) }
                }
                LayerConfig::Cell { ref ops, activation } => {
                    Box::new(Cell::new(&name, input[0], ops, activation, &mut rng, backend)?)
                }
                LayerConfig::Conv { channels, kernel, stride, padding, activation } => Box::new(Conv2d::new(
                    &name, input[0], channels, kernel, stride, padding, activation, &mut rng, backend,
                )?),
                LayerConfig::Pool { kind, size } => Box::new(Pool2d::new(kind, size, backend)),
            };
            layers.push(layer);
            dims.push(shape.dims[i + 1].clone());
            if cfg.dropout > 0.0 && matches!(l, LayerConfig::Linear { .. } | LayerConfig::Cell { .. }) {
                layers.push(Box::new(Dropout::new(cfg.dropout, backend)));
                dims.push(shape.dims[i + 1].clone());
            }
        }
        let out_unit = total_units - 1;
        if units.contains(&out_unit) {
            let inputs = shape.dims[out_unit].iter().product();
            let mut rng = Rng::derive(seed, "init", out_unit as u64);
            layers.push(Box::new(Linear::new(
                "output",
                inputs,
                data.outputs,
                Activation::Identity,
                &mut rng,
                backend,
            )?));
            dims.push(vec![data.outputs]);
        }
        Ok(Self { layers, dims, units, total_units, backend: backend.clone() })
    }

    /// Switches on quantization-aware training (fake int8 weights and inputs) in every layer that
    /// has an int8 form; returns how many do.
    pub fn fake_quantize(&mut self) -> usize {
        self.layers.iter_mut().map(|l| usize::from(l.fake_quantize())).sum()
    }

    /// The backend holding this model: make its inputs and gradients with it.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Per-sample input dims.
    pub fn input_dims(&self) -> &[usize] {
        &self.dims[0]
    }

    /// Per-sample output dims.
    pub fn output_dims(&self) -> &[usize] {
        self.dims.last().map_or(&[], Vec::as_slice)
    }

    /// The units this model holds.
    pub fn units(&self) -> Range<usize> {
        self.units.clone()
    }

    /// Whether this is the first stage (its input is the data, which needs no gradient).
    pub fn takes_data(&self) -> bool {
        self.units.start == 0
    }

    /// Whether this stage ends with the output layer.
    pub fn produces_output(&self) -> bool {
        self.units.end == self.total_units
    }

    fn shape_input(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        let mut shape = vec![rows];
        shape.extend_from_slice(self.input_dims());
        Ok(if x.dims() == shape.as_slice() { x.clone() } else { x.reshape(shape)? })
    }

    /// Forward through every layer; in training mode also returns what backward needs.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Vec<Saved>)> {
        let mut h = self.shape_input(x)?;
        let mut saved = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (y, s) = layer.forward(&h, ctx)?;
            saved.push(s);
            h = y;
        }
        Ok((h, saved))
    }

    /// Backward through every layer, accumulating parameter gradients. Returns the gradient of the
    /// input for a later pipeline stage; the data needs none, so the first stage skips it.
    pub fn backward(&mut self, saved: Vec<Saved>, grad: Tensor, threads: usize) -> Result<Option<Tensor>> {
        self.backward_observed(saved, grad, threads, &mut |_, _| Ok(()))
    }

    /// [`Self::backward`], calling `after(model, first)` as soon as a layer's parameter gradients
    /// are final: `first` is the index, in [`Self::params`] order, of that layer's first
    /// parameter, so every parameter from `first` on has its gradient for this pass. Gradient
    /// buckets start their all-reduce from there while backward goes on.
    pub fn backward_observed(
        &mut self,
        saved: Vec<Saved>,
        grad: Tensor,
        threads: usize,
        after: &mut dyn FnMut(&Model, usize) -> Result<()>,
    ) -> Result<Option<Tensor>> {
        let input_grad = !self.takes_data();
        self.backward_through(saved, grad, threads, input_grad, after)
    }

    /// Backward through every layer down to the gradient of the model's input, even for the
    /// first stage (which takes the data): how much each input value moves the outputs.
    pub fn input_gradient(&mut self, saved: Vec<Saved>, grad: Tensor, threads: usize) -> Result<Tensor> {
        self.backward_through(saved, grad, threads, true, &mut |_, _| Ok(()))?
            .ok_or_else(|| TrainError::from(candle_core::Error::Msg("a layer gave no input gradient".into())))
    }

    fn backward_through(
        &mut self,
        saved: Vec<Saved>,
        grad: Tensor,
        threads: usize,
        input_grad: bool,
        after: &mut dyn FnMut(&Model, usize) -> Result<()>,
    ) -> Result<Option<Tensor>> {
        let mut grad = grad;
        let mut first = self.params().count();
        let mut saved = saved;
        while let Some(s) = saved.pop() {
            let i = saved.len();
            let next = self.layers[i].backward(s, grad, i > 0 || input_grad, threads)?;
            first -= self.layers[i].params().len();
            after(self, first)?;
            match next {
                Some(g) => grad = g,
                None => return Ok(None),
            }
        }
        Ok(Some(grad))
    }

    /// Backward that computes the input gradient first (for a later pipeline stage, which is
    /// waiting for it) and leaves the parameter gradients it can for [`Self::finish_backward`].
    pub fn backward_input_first(
        &mut self,
        saved: Vec<Saved>,
        grad: Tensor,
        threads: usize,
    ) -> Result<(Option<Tensor>, DeferredGrads)> {
        if self.takes_data() {
            return Ok((self.backward(saved, grad, threads)?, Vec::new()));
        }
        let mut grad = grad;
        let mut deferred = Vec::new();
        for (i, (layer, s)) in self.layers.iter_mut().zip(saved).enumerate().rev() {
            let (g, later) = layer.backward_input_first(s, grad, threads)?;
            if let Some(d) = later {
                deferred.push((i, d));
            }
            match g {
                Some(g) => grad = g,
                None => return Ok((None, deferred)),
            }
        }
        Ok((Some(grad), deferred))
    }

    /// Accumulates the parameter gradients [`Self::backward_input_first`] left.
    pub fn finish_backward(&mut self, deferred: DeferredGrads, threads: usize) -> Result<()> {
        for (i, d) in deferred {
            self.layers[i].finish_backward(d, threads)?;
        }
        Ok(())
    }

    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(|l| l.params().iter())
    }

    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params_mut().iter_mut())
    }

    pub fn zero_grad(&mut self) {
        self.params_mut().for_each(Param::zero_grad);
    }

    pub fn param_count(&self) -> usize {
        self.params().map(Param::elem_count).sum()
    }

    /// Layer kinds in order, for logs.
    pub fn describe(&self) -> String {
        let parts: Vec<String> =
            self.layers.iter().zip(self.dims.iter().skip(1)).map(|(l, d)| format!("{}{:?}", l.kind(), d)).collect();
        format!("{:?} -> {}", self.dims[0], parts.join(" -> "))
    }

    /// Parameters by name, in host memory (for checkpoints). Host parameters are shared, not
    /// copied: save them before the next step.
    pub fn named_tensors(&self) -> Result<HashMap<String, candle_core::Tensor>> {
        self.params().map(|p| Ok((p.name.clone(), p.value.to_host_tensor()?))).collect()
    }

    /// Loads parameters saved by [`Self::named_tensors`]; every parameter must be present with its
    /// shape.
    pub fn load_named(
        &mut self,
        tensors: &HashMap<String, candle_core::Tensor>,
        origin: &std::path::Path,
    ) -> Result<()> {
        for p in self.params_mut() {
            let t = tensors
                .get(&p.name)
                .ok_or_else(|| TrainError::checkpoint(origin, format!("parameter `{}` is missing", p.name)))?;
            if t.dims() != p.value.dims() {
                return Err(TrainError::checkpoint(
                    origin,
                    format!("parameter `{}` has shape {:?}, the model wants {:?}", p.name, t.dims(), p.value.dims()),
                ));
            }
            p.value = p.backend().from_host_tensor(t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use shoal_common::spec::{ModelKind, PoolKind};

    use super::*;
    use crate::backend::to_host_vec;
    use crate::nn::Mode;
    use crate::nn::loss::{LossOutput, Targets};

    fn mlp(widths: &[usize], act: Activation, dropout: f64) -> ModelConfig {
        ModelConfig {
            kind: ModelKind::Mlp,
            layers: widths.iter().map(|&w| LayerConfig::Linear { width: w, activation: act, skip: false }).collect(),
            dropout,
            input_shape: None,
        }
    }

    fn batch(rows: usize, features: usize, classes: u32, seed: u64) -> (Tensor, Targets) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = (0..rows * features).map(|_| rng.normal() as f32).collect();
        let y: Vec<u32> = (0..rows).map(|_| rng.below(u64::from(classes)) as u32).collect();
        (backend::cpu().from_host(x, &[rows, features]).expect("x"), Targets::Classes(y))
    }

    fn loss_and_grad(model: &Model, out: &Tensor, t: &Targets, scale: f32) -> candle_core::Result<LossOutput> {
        crate::nn::loss::loss_and_grad(model.backend().as_ref(), out, t, scale)
    }

    /// Loss of the model on a batch (forward only), in f64 via the loss kernel.
    fn loss_of(model: &Model, x: &Tensor, t: &Targets) -> f64 {
        let mut ctx = Ctx::new(Mode::Eval, 1, Rng::new(0));
        let (out, _) = model.forward(x, &mut ctx).expect("forward");
        loss_and_grad(model, &out, t, 1.0).expect("loss").loss_sum
    }

    fn grads_of(model: &mut Model, x: &Tensor, t: &Targets) -> Vec<Vec<f32>> {
        let mut ctx = Ctx::new(Mode::Train, 1, Rng::new(0));
        let (out, saved) = model.forward(x, &mut ctx).expect("forward");
        let l = loss_and_grad(model, &out, t, 1.0).expect("loss");
        model.zero_grad();
        model.backward(saved, l.grad, 1).expect("backward");
        model.params().map(|p| to_host_vec(&p.grad).expect("grad")).collect()
    }

    /// Central differences on a few entries of every parameter (reference: the definition of the
    /// derivative, evaluated in f64 sums over f32 forwards).
    fn check_gradients(cfg: &ModelConfig, shape: &DataShape, x: &Tensor, t: &Targets) {
        let mut model = Model::build(cfg, shape, 3).expect("build");
        let analytic = grads_of(&mut model, x, t);
        let names: Vec<String> = model.params().map(|p| p.name.clone()).collect();
        for (pi, name) in names.iter().enumerate() {
            let n = analytic[pi].len();
            for &k in &[0, n / 3, n / 2, n - 1] {
                let backend = model.backend().clone();
                fn value(m: &mut Model, pi: usize) -> &mut Tensor {
                    &mut m.params_mut().nth(pi).expect("param").value
                }
                let orig = to_host_vec(value(&mut model, pi)).expect("vec");
                let h = 1e-3f32;
                let mut plus = orig.clone();
                plus[k] += h;
                backend.write(value(&mut model, pi), &plus).expect("set");
                let lp = loss_of(&model, x, t);
                let mut minus = orig.clone();
                minus[k] -= h;
                backend.write(value(&mut model, pi), &minus).expect("set");
                let lm = loss_of(&model, x, t);
                backend.write(value(&mut model, pi), &orig).expect("set");
                let fd = (lp - lm) / (2.0 * f64::from(h));
                let a = f64::from(analytic[pi][k]);
                assert!(
                    (fd - a).abs() <= 2e-2 * (1.0 + a.abs()),
                    "{name}[{k}]: finite difference {fd} vs backward {a}"
                );
            }
        }
    }

    #[test]
    fn mlp_gradients_match_finite_differences() {
        let shape = DataShape { features: 6, image: None, outputs: 3 };
        let (x, t) = batch(5, 6, 3, 1);
        for act in [Activation::Relu, Activation::Tanh, Activation::Gelu, Activation::Sigmoid] {
            check_gradients(&mlp(&[8, 7], act, 0.0), &shape, &x, &t);
        }
    }

    #[test]
    fn cnn_gradients_match_finite_differences() {
        // Both poolings, on an odd image (7x7: the last row and column are cut off by the floor).
        for kind in [PoolKind::Avg, PoolKind::Max] {
            let cfg = ModelConfig {
                kind: ModelKind::Cnn,
                layers: vec![
                    LayerConfig::Conv { channels: 3, kernel: 3, stride: 1, padding: 1, activation: Activation::Tanh },
                    LayerConfig::Pool { kind, size: 2 },
                    LayerConfig::Linear { width: 5, activation: Activation::Tanh, skip: false },
                ],
                dropout: 0.0,
                input_shape: None,
            };
            let shape = DataShape { features: 2 * 7 * 7, image: Some([2, 7, 7]), outputs: 4 };
            let (x, t) = batch(3, 98, 4, 2);
            check_gradients(&cfg, &shape, &x, &t);
        }
    }

    #[test]
    fn fused_kernels_agree_with_plain_candle_ops() {
        let shape = DataShape { features: 10, image: None, outputs: 4 };
        let (x, t) = batch(9, 10, 4, 5);
        for act in Activation::ALL {
            let cfg = mlp(&[16, 12], act, 0.0);
            let mut a = Model::build_on(&cfg, &shape, 11, &backend::cpu()).expect("build");
            let mut b = Model::build_on(&cfg, &shape, 11, &backend::reference()).expect("build");
            let ga = grads_of(&mut a, &x, &t);
            let gb = grads_of(&mut b, &x, &t);
            for (u, v) in ga.iter().zip(&gb) {
                for (p, q) in u.iter().zip(v) {
                    assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{act:?}: fused {p} vs candle {q}");
                }
            }
        }
    }

    #[test]
    fn input_gradients_match_finite_differences_with_dropout_off() {
        // Outputs weighted by w: the gradient of Σ out·w with respect to every input value.
        let shape = DataShape { features: 5, image: None, outputs: 3 };
        let mut model = Model::build(&mlp(&[9, 7], Activation::Tanh, 0.5), &shape, 4).expect("build");
        let (x, _) = batch(4, 5, 3, 2);
        let xs = to_host_vec(&x).expect("x");
        let w: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let objective = |model: &Model, v: &[f32]| {
            let mut ctx = Ctx::new(Mode::Eval, 1, Rng::new(0));
            let t = model.backend().batch_from_host(v.to_vec(), &[4, 5]).expect("batch");
            let out = to_host_vec(&model.forward(&t, &mut ctx).expect("fwd").0).expect("out");
            out.iter().zip(&w).map(|(o, w)| f64::from(o * w)).sum::<f64>()
        };
        let mut ctx = Ctx::new(Mode::Attribute, 1, Rng::new(9));
        let (out, saved) = model.forward(&x, &mut ctx).expect("forward");
        let grad = model.backend().batch_from_host(w.clone(), out.dims()).expect("grad");
        let dx = to_host_vec(&model.input_gradient(saved, grad, 1).expect("input gradient")).expect("dx");
        for i in 0..xs.len() {
            let (mut up, mut down) = (xs.clone(), xs.clone());
            up[i] += 1e-2;
            down[i] -= 1e-2;
            let numeric = (objective(&model, &up) - objective(&model, &down)) / 2e-2;
            assert!(
                (f64::from(dx[i]) - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
                "x[{i}]: {} vs {numeric}",
                dx[i]
            );
        }
    }

    #[test]
    fn dropout_is_off_at_inference_and_seeded_in_training() {
        let shape = DataShape { features: 4, image: None, outputs: 2 };
        let model = Model::build(&mlp(&[64], Activation::Relu, 0.5), &shape, 1).expect("build");
        let (x, _) = batch(8, 4, 2, 3);
        let run = |mode, seed| {
            let mut ctx = Ctx::new(mode, 1, Rng::new(seed));
            to_host_vec(&model.forward(&x, &mut ctx).expect("fwd").0).expect("vec")
        };
        assert_eq!(run(Mode::Eval, 1), run(Mode::Eval, 2));
        assert_eq!(run(Mode::Train, 1), run(Mode::Train, 1));
        assert_ne!(run(Mode::Train, 1), run(Mode::Train, 2));
        assert_ne!(run(Mode::Train, 1), run(Mode::Eval, 1));
    }

    /// A stem linear layer, two cells (the second a single linear edge) and a skip layer.
    fn searched(stem: usize, dropout: f64) -> ModelConfig {
        use shoal_common::spec::CellOp::{Identity, Linear as Lin, Zero};
        ModelConfig {
            kind: ModelKind::Mlp,
            layers: vec![
                LayerConfig::Linear { width: stem, activation: Activation::Tanh, skip: false },
                LayerConfig::Cell { ops: vec![Lin, Identity, Lin, Zero, Lin, Identity], activation: Activation::Gelu },
                LayerConfig::Cell { ops: vec![Lin], activation: Activation::Tanh },
                LayerConfig::Linear { width: stem, activation: Activation::Tanh, skip: true },
            ],
            dropout,
            input_shape: None,
        }
    }

    #[test]
    fn cell_and_skip_gradients_match_finite_differences() {
        let shape = DataShape { features: 6, image: None, outputs: 3 };
        let (x, t) = batch(4, 6, 3, 7);
        check_gradients(&searched(5, 0.0), &shape, &x, &t);
        let model = Model::build(&searched(5, 0.0), &shape, 3).expect("build");
        assert_eq!(model.describe(), "[6] -> linear[5] -> cell[5] -> cell[5] -> residual[5] -> linear[3]");
        let names: Vec<&str> = model.params().map(|p| p.name.as_str()).collect();
        assert_eq!(&names[2..4], ["layers.1.edge0.weight", "layers.1.edge0.bias"]);
        assert_eq!(&names[8..12], ["layers.2.edge0.weight", "layers.2.edge0.bias", "layers.3.weight", "layers.3.bias"]);
    }

    #[test]
    fn cells_and_skips_give_pipeline_stages_the_whole_model_gradients() {
        // Reference: the whole model's backward. The stages run the split backward a pipeline uses.
        let cfg = searched(8, 0.0);
        let shape = DataShape { features: 6, image: None, outputs: 3 };
        let (x, t) = batch(5, 6, 3, 8);
        let mut whole = Model::build(&cfg, &shape, 9).expect("build");
        let want = grads_of(&mut whole, &x, &t);
        let mut first = Model::build_stage(&cfg, &shape, 9, 0..2).expect("first");
        let mut second = Model::build_stage(&cfg, &shape, 9, 2..5).expect("second");
        let mut ctx = Ctx::new(Mode::Train, 1, Rng::new(0));
        let (h, saved_a) = first.forward(&x, &mut ctx).expect("forward");
        let (out, saved_b) = second.forward(&h, &mut ctx).expect("forward");
        let l = loss_and_grad(&second, &out, &t, 1.0).expect("loss");
        first.zero_grad();
        second.zero_grad();
        let (g, deferred) = second.backward_input_first(saved_b, l.grad, 1).expect("backward");
        first.backward(saved_a, g.expect("input gradient"), 1).expect("backward");
        second.finish_backward(deferred, 1).expect("finish");
        let got: Vec<Vec<f32>> =
            first.params().chain(second.params()).map(|p| to_host_vec(&p.grad).expect("grad")).collect();
        assert_eq!(got.len(), want.len());
        for (u, v) in got.iter().zip(&want) {
            for (p, q) in u.iter().zip(v) {
                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "stages {p} vs whole {q}");
            }
        }
    }

    #[test]
    fn a_model_with_cells_and_a_skip_layer_learns() {
        // Labels from a random linear teacher; full-batch SGD on the mean cross-entropy.
        let shape = DataShape { features: 6, image: None, outputs: 3 };
        let (x, _) = batch(64, 6, 3, 10);
        let teacher = backend::cpu()
            .from_host((0..18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect::<Vec<f32>>(), &[6, 3])
            .expect("teacher");
        let scores = x.host().and_then(|x| x.matmul(teacher.host()?)).expect("scores");
        let labels = scores.argmax(1).and_then(|a| a.to_vec1::<u32>()).expect("labels");
        let t = Targets::Classes(labels);
        let mut model = Model::build(&searched(12, 0.1), &shape, 4).expect("build");
        let mut losses = Vec::new();
        for step in 0..150 {
            let mut ctx = Ctx::new(Mode::Train, 1, Rng::derive(1, "dropout", step));
            let (out, saved) = model.forward(&x, &mut ctx).expect("forward");
            let l = loss_and_grad(&model, &out, &t, 1.0 / 64.0).expect("loss");
            losses.push(l.mean());
            model.zero_grad();
            model.backward(saved, l.grad, 1).expect("backward");
            for p in model.params_mut().filter(|p| p.grad_valid) {
                let next =
                    (p.value.host().expect("w") - (p.grad.host().expect("g") * 0.3).expect("scaled")).expect("step");
                p.value = next.into();
            }
        }
        let (first, last) = (losses[0], losses[losses.len() - 10..].iter().sum::<f64>() / 10.0);
        assert!(last < 0.5 * first, "loss {first} -> {last}");
    }

    #[test]
    fn build_rejects_bad_skips_and_cells_on_images() {
        let shape = DataShape { features: 6, image: None, outputs: 2 };
        let mut cfg = mlp(&[8, 4], Activation::Relu, 0.0);
        cfg.layers[1] = LayerConfig::Linear { width: 4, activation: Activation::Relu, skip: true };
        let err = Model::build(&cfg, &shape, 0).err().expect("error").to_string();
        assert_eq!(err, "model.layers[1]: a skip connection needs equal input and output widths, got 8 -> 4");
        // Also when the layer belongs to a later pipeline stage.
        let err = Model::build_stage(&cfg, &shape, 0, 0..1).err().expect("error").to_string();
        assert!(err.starts_with("model.layers[1]: a skip connection"), "{err}");
        let cfg = ModelConfig {
            kind: ModelKind::Cnn,
            layers: vec![
                LayerConfig::Pool { kind: PoolKind::Max, size: 2 },
                LayerConfig::Cell { ops: vec![shoal_common::spec::CellOp::Identity], activation: Activation::Relu },
            ],
            dropout: 0.0,
            input_shape: None,
        };
        let shape = DataShape { features: 16, image: Some([1, 4, 4]), outputs: 2 };
        let err = Model::build(&cfg, &shape, 0).err().expect("error").to_string();
        assert!(err.starts_with("model.layers[1]: a cell needs flat features"), "{err}");
    }

    #[test]
    fn build_rejects_cnn_without_image_shape() {
        let cfg = ModelConfig {
            kind: ModelKind::Cnn,
            layers: vec![LayerConfig::Pool { kind: PoolKind::Max, size: 2 }],
            dropout: 0.0,
            input_shape: None,
        };
        let err = Model::build(&cfg, &DataShape { features: 12, image: None, outputs: 2 }, 0).err().expect("error");
        assert!(err.to_string().starts_with("model.input_shape:"), "{err}");
    }
}
