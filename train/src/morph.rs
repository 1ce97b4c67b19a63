//! Function-preserving network morphisms (Net2Net): a child network that only widens a trained
//! parent's layers or inserts identity layers into it inherits the parent's weights and computes
//! exactly the parent's function, so a search can grow a model without starting it from scratch.
//!
//! Every unit (a flat feature or a channel) of the child's activations between two layers copies
//! one unit of the parent's activations at the same point; `Flow` tracks which. A layer then takes
//! its parent's weights at the mapped rows and columns, and divides each incoming weight by the
//! number of child units that copy the same parent unit, so the replicas together contribute
//! exactly what the one parent unit did.
//!
//! Cells and linear layers with a skip connection are inherited only unchanged: the same settings
//! at the same width, with the parent's activations arriving exactly as the parent had them.

use std::collections::{HashMap, HashSet};

use candle_core::Tensor;
use shoal_common::spec::{Activation, CellOp, LayerConfig, ModelConfig, cell_edges, cell_nodes, infer_shape};

use crate::backend::{HOST, candle_values};
use crate::error::{Result, TrainError};
use crate::model::DataShape;
use crate::rng::Rng;

/// Builds the parameters of `child` from a trained `parent`, when `child` can be reached from
/// `parent` by function-preserving morphs: widening linear layers (more units) or conv layers
/// (more channels), and inserting new linear layers (without skip connections) initialised to the
/// identity; cells and skip layers are copied unchanged. Returns the
/// child's named tensors (ready for Model::load_named) and a short description of the morphs
/// applied (e.g. "widen layers[1] 32->48; insert identity layer at layers[2]").
///
/// Layer indices in the description and in errors are the child's. New units copy units of the
/// parent drawn from `seed`; dropout is ignored (it is the identity at inference).
pub fn inherit(
    parent: &ModelConfig,
    parent_params: &HashMap<String, Tensor>,
    child: &ModelConfig,
    data: &DataShape,
    seed: u64,
) -> Result<(HashMap<String, Tensor>, String)> {
    let parent_dims = layer_dims(parent, data, "parent")?;
    let child_dims = layer_dims(child, data, "child")?;
    if parent_dims[0] != child_dims[0] {
        return Err(shape_error(
            "input_shape",
            format!("the child sees samples as {:?}, the parent as {:?}", child_dims[0], parent_dims[0]),
        ));
    }
    let steps = plan(&parent.layers, &child.layers, &parent_dims, &child_dims)?;

    let mut tensors = HashMap::new();
    let mut notes = Vec::new();
    let mut flow = Flow::identity(child_dims[0][0]);
    for (i, (layer, step)) in child.layers.iter().zip(&steps).enumerate() {
        let mut rng = Rng::derive(seed, "morph", i as u64);
        let name = format!("layers.{i}");
        match (*step, layer) {
            (Step::Insert { width }, _) => {
                let (weight, bias) = flow.insert_identity(width, &mut rng);
                let inputs = child_dims[i][0];
                tensors.insert(format!("{name}.weight"), Tensor::from_vec(weight, (width, inputs), &HOST)?);
                tensors.insert(format!("{name}.bias"), Tensor::from_vec(bias, width, &HOST)?);
                notes.push(if width > inputs {
                    format!("insert identity layer at layers[{i}] widened {inputs}->{width}")
                } else {
                    format!("insert identity layer at layers[{i}]")
                });
            }
            (Step::Inherit(k), &LayerConfig::Linear { width, skip, .. }) => {
                if let [_, h, w] = child_dims[i][..] {
                    flow.flatten(h * w);
                }
                if skip {
                    // The skip adds the input unit by unit, so it must arrive as the parent's did.
                    flow.require_unchanged(i)?;
                }
                let inputs = parent_dims[k].iter().product::<usize>();
                let outputs = parent_dims[k + 1][0];
                let source = ParentLayer::fetch(parent_params, &format!("layers.{k}"), outputs, inputs, 1)?;
                let (weight, bias) = flow.inherit(&source, width, &mut rng);
                let shape = (width, child_dims[i].iter().product::<usize>());
                tensors.insert(format!("{name}.weight"), Tensor::from_vec(weight, shape, &HOST)?);
                tensors.insert(format!("{name}.bias"), Tensor::from_vec(bias, width, &HOST)?);
                if width > outputs {
                    notes.push(format!("widen {} {outputs}->{width}", at(i, k)));
                }
            }
            (Step::Inherit(k), &LayerConfig::Conv { channels, kernel, .. }) => {
                let in_c = parent_dims[k][0];
                let outputs = parent_dims[k + 1][0];
                let source = ParentLayer::fetch(parent_params, &format!("layers.{k}"), outputs, in_c, kernel * kernel)?;
                let (weight, bias) = flow.inherit(&source, channels, &mut rng);
                let shape = (channels, child_dims[i][0], kernel, kernel);
                tensors.insert(format!("{name}.weight"), Tensor::from_vec(weight, shape, &HOST)?);
                tensors.insert(format!("{name}.bias"), Tensor::from_vec(bias, channels, &HOST)?);
                if channels > outputs {
                    notes.push(format!("widen {} {outputs}->{channels} channels", at(i, k)));
                }
            }
            // Pooling works channel by channel, so the channel map passes through unchanged.
            (Step::Inherit(_), LayerConfig::Pool { .. }) => {}
            // A cell is copied as it is, onto the activations the parent's cell saw.
            (Step::Inherit(k), LayerConfig::Cell { ops, .. }) => {
                flow.require_unchanged(i)?;
                let width = child_dims[i][0];
                for (e, _) in ops.iter().enumerate().filter(|(_, op)| **op == CellOp::Linear) {
                    let source = ParentLayer::fetch(parent_params, &format!("layers.{k}.edge{e}"), width, width, 1)?;
                    let edge = format!("{name}.edge{e}");
                    tensors.insert(format!("{edge}.weight"), Tensor::from_vec(source.weight, (width, width), &HOST)?);
                    tensors.insert(format!("{edge}.bias"), Tensor::from_vec(source.bias, width, &HOST)?);
                }
            }
        }
    }

    let last = &child_dims[child.layers.len()];
    if let [_, h, w] = last[..] {
        flow.flatten(h * w);
    }
    let inputs = parent_dims[parent.layers.len()].iter().product::<usize>();
    let mut rng = Rng::derive(seed, "morph", child.layers.len() as u64);
    let source = ParentLayer::fetch(parent_params, "output", data.outputs, inputs, 1)?;
    let (weight, bias) = flow.inherit(&source, data.outputs, &mut rng);
    let child_inputs = last.iter().product::<usize>();
    tensors.insert("output.weight".into(), Tensor::from_vec(weight, (data.outputs, child_inputs), &HOST)?);
    tensors.insert("output.bias".into(), Tensor::from_vec(bias, data.outputs, &HOST)?);

    let description = if notes.is_empty() { "unchanged".to_string() } else { notes.join("; ") };
    Ok((tensors, description))
}

fn shape_error(field: impl Into<String>, reason: impl Into<String>) -> TrainError {
    TrainError::Shape { field: field.into(), reason: reason.into() }
}

/// "layers[i]", naming the parent's index too when insertions have shifted it.
fn at(child: usize, parent: usize) -> String {
    if child == parent { format!("layers[{child}]") } else { format!("layers[{child}] (parent layers[{parent}])") }
}

/// Per-sample input dims of every layer of `cfg`, then the dims the output layer consumes, as
/// [`infer_shape`] gives them; errors say whether they are the parent's or the child's.
fn layer_dims(cfg: &ModelConfig, data: &DataShape, role: &str) -> Result<Vec<Vec<usize>>> {
    match infer_shape(cfg, data) {
        Ok(shape) => Ok(shape.dims),
        Err(errors) => Err(shape_error(errors[0].field(), format!("in the {role}, {}", errors[0]))),
    }
}

/// What a child layer is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// It inherits (and maybe widens) the parent layer with this index.
    Inherit(usize),
    /// It is a new linear layer of this width, initialised to the identity.
    Insert { width: usize },
}

/// Aligns the child's layers with the parent's. Greedy matching is not enough (a wider layer may
/// match a later parent layer that it should not take), so this searches, preferring inheritance,
/// and remembers dead ends; the error reports the failure that got furthest into the child.
fn plan(
    parent: &[LayerConfig],
    child: &[LayerConfig],
    parent_dims: &[Vec<usize>],
    child_dims: &[Vec<usize>],
) -> Result<Vec<Step>> {
    let mut planner = Planner { parent, child, parent_dims, child_dims, failed: HashSet::new(), deepest: None };
    let mut steps = Vec::with_capacity(child.len());
    if planner.search(0, 0, false, &mut steps) {
        return Ok(steps);
    }
    let (_, field, reason) = planner.deepest.unwrap_or_else(|| (0, "layers".into(), "no morph applies".into()));
    Err(shape_error(field, reason))
}

struct Planner<'a> {
    parent: &'a [LayerConfig],
    child: &'a [LayerConfig],
    /// Per-sample input dims of every layer, as [`layer_dims`] gives them.
    parent_dims: &'a [Vec<usize>],
    child_dims: &'a [Vec<usize>],
    /// States (child layer, parent layer, input known non-negative) that lead nowhere.
    failed: HashSet<(usize, usize, bool)>,
    /// The first failure at the deepest child layer reached: (depth, field, reason).
    deepest: Option<(usize, String, String)>,
}

impl Planner<'_> {
    /// Whether child layers `i..` can be built from parent layers `k..`; `non_negative` says whether
    /// the child's activations entering layer `i` are known to be non-negative.
    fn search(&mut self, i: usize, k: usize, non_negative: bool, steps: &mut Vec<Step>) -> bool {
        if i == self.child.len() {
            if k == self.parent.len() {
                return true;
            }
            let reason = format!(
                "the parent's layers[{k}] ({}) has no counterpart in the child; morphs cannot remove layers",
                describe(&self.parent[k])
            );
            self.fail(i, "layers".into(), reason);
            return false;
        }
        if self.failed.contains(&(i, k, non_negative)) {
            return false;
        }
        let mut reasons = Vec::new();
        match self.parent.get(k) {
            Some(p) => match matches(p, &self.child[i], &self.parent_dims[k], &self.child_dims[i]) {
                Ok(()) => {
                    steps.push(Step::Inherit(k));
                    if self.search(i + 1, k + 1, non_negative_after(p, non_negative), steps) {
                        return true;
                    }
                    steps.pop();
                }
                Err(why) => {
                    reasons.push(format!("it cannot inherit the parent's layers[{k}] ({}): {why}", describe(p)))
                }
            },
            None => reasons.push("the parent has no layer left for it to inherit".into()),
        }
        match self.insertable(i, non_negative) {
            Ok((width, after)) => {
                steps.push(Step::Insert { width });
                if self.search(i + 1, k, after, steps) {
                    return true;
                }
                steps.pop();
            }
            Err(why) => reasons.push(format!("it cannot be an inserted identity layer: {why}")),
        }
        if reasons.len() == 2 {
            self.fail(
                i,
                format!("layers[{i}]"),
                format!("{} is no morph of the parent: {}", describe(&self.child[i]), reasons.join("; ")),
            );
        }
        self.failed.insert((i, k, non_negative));
        false
    }

    fn fail(&mut self, depth: usize, field: String, reason: String) {
        if self.deepest.as_ref().is_none_or(|(d, _, _)| depth > *d) {
            self.deepest = Some((depth, field, reason));
        }
    }

    /// Whether child layer `i` can be a new identity layer; if so, whether its output is known to
    /// be non-negative. A layer `y = act(I·x + 0)` preserves the function only when `act(x) == x`
    /// for every `x` it can see: always for the identity, and for relu or leaky relu only on
    /// inputs known to be non-negative (after relu or sigmoid; never assumed of the data).
    fn insertable(&self, i: usize, non_negative: bool) -> Result<(usize, bool), String> {
        let LayerConfig::Linear { width, activation, skip } = self.child[i] else {
            return Err("only linear layers can be inserted".into());
        };
        if skip {
            return Err("it has a skip connection, which would add its input a second time".into());
        }
        let [inputs] = self.child_dims[i][..] else {
            return Err(format!(
                "its input is the {:?} output of a conv or pool layer, not a flat vector",
                self.child_dims[i]
            ));
        };
        let before = match i.checked_sub(1).map(|p| &self.child[p]) {
            Some(&LayerConfig::Linear { skip: true, .. }) => "the previous layer adds its own input".into(),
            Some(&LayerConfig::Cell { .. }) => "the previous layer is a cell".into(),
            Some(&LayerConfig::Linear { activation, .. } | &LayerConfig::Conv { activation, .. }) => {
                format!("the previous layer's activation is {}", activation.name())
            }
            _ => "it receives the data".into(),
        };
        let after = match activation {
            Activation::Identity => non_negative,
            Activation::Relu | Activation::LeakyRelu if non_negative => true,
            Activation::Relu | Activation::LeakyRelu => {
                return Err(format!("{} is the identity only on non-negative inputs, and {before}", activation.name()));
            }
            other => return Err(format!("{} is not the identity on any range of inputs", other.name())),
        };
        if width < inputs {
            return Err(format!("it has {width} units, fewer than the {inputs} it receives"));
        }
        Ok((width, after))
    }
}

/// Whether the child's layer `c` can inherit the parent's layer `p`: the same kind and settings,
/// at least as wide; cells and skip layers exactly as they are, on inputs of the same width
/// (`p_in` and `c_in` are their per-sample input dims).
fn matches(p: &LayerConfig, c: &LayerConfig, p_in: &[usize], c_in: &[usize]) -> Result<(), String> {
    let same_activation = |pa: Activation, ca: Activation| {
        if pa == ca { Ok(()) } else { Err(format!("its activation is {}, not {}", ca.name(), pa.name())) }
    };
    match (p, c) {
        (
            &LayerConfig::Linear { width: pw, activation: pa, skip: ps },
            &LayerConfig::Linear { width: cw, activation: ca, skip: cs },
        ) => {
            match (ps, cs) {
                (true, false) => return Err("the parent's layer has a skip connection and it has none".into()),
                (false, true) => return Err("it has a skip connection and the parent's layer has none".into()),
                (true, true) if cw != pw => {
                    return Err(format!(
                        "a layer with a skip connection is inherited only unchanged, and its {cw} units differ \
                         from the parent's {pw}"
                    ));
                }
                _ => {}
            }
            same_activation(pa, ca)?;
            if cw < pw {
                return Err(format!("its {cw} units are fewer than the parent's {pw}; morphs cannot narrow"));
            }
            Ok(())
        }
        (
            &LayerConfig::Conv { channels: pc, kernel: pk, stride: ps, padding: pp, activation: pa },
            &LayerConfig::Conv { channels: cc, kernel: ck, stride: cs, padding: cp, activation: ca },
        ) => {
            if (pk, ps, pp) != (ck, cs, cp) {
                return Err(format!(
                    "its kernel/stride/padding {ck}/{cs}/{cp} differ from the parent's {pk}/{ps}/{pp}"
                ));
            }
            same_activation(pa, ca)?;
            if cc < pc {
                return Err(format!("its {cc} channels are fewer than the parent's {pc}; morphs cannot narrow"));
            }
            Ok(())
        }
        (&LayerConfig::Pool { kind: pk, size: ps }, &LayerConfig::Pool { kind: ck, size: cs }) => {
            if (pk, ps) == (ck, cs) { Ok(()) } else { Err("its pooling kind or size differs".into()) }
        }
        (LayerConfig::Cell { ops: po, activation: pa }, LayerConfig::Cell { ops: co, activation: ca }) => {
            if po != co {
                return Err("a cell is inherited only unchanged, and its ops differ from the parent's".into());
            }
            same_activation(*pa, *ca)?;
            if p_in != c_in {
                return Err(format!(
                    "a cell is inherited only unchanged, and its input is {c_in:?} where the parent's is {p_in:?}"
                ));
            }
            Ok(())
        }
        _ => Err(format!("it is a {} layer, the parent's is a {} layer", kind(c), kind(p))),
    }
}

/// Whether a parent layer's outputs are non-negative, given whether its inputs are.
fn non_negative_after(layer: &LayerConfig, input_non_negative: bool) -> bool {
    let positive = |activation| matches!(activation, Activation::Relu | Activation::Sigmoid);
    match *layer {
        LayerConfig::Linear { activation, skip: true, .. } => positive(activation) && input_non_negative,
        LayerConfig::Linear { activation, .. } | LayerConfig::Conv { activation, .. } => positive(activation),
        // Max and mean of non-negative values are non-negative.
        LayerConfig::Pool { .. } => input_non_negative,
        // A node sums non-negative terms when each edge is zero, the identity of a non-negative
        // node, or linear with a non-negative activation.
        LayerConfig::Cell { ref ops, activation } => {
            let nodes = cell_nodes(ops.len()).unwrap_or(0);
            let mut non_negative = vec![input_non_negative];
            non_negative.resize(nodes + 1, true);
            for (&(from, to), op) in cell_edges(nodes).iter().zip(ops) {
                non_negative[to] &= match op {
                    CellOp::Zero => true,
                    CellOp::Identity => non_negative[from],
                    CellOp::Linear => positive(activation),
                };
            }
            non_negative[nodes] && nodes > 0
        }
    }
}

fn kind(layer: &LayerConfig) -> &'static str {
    match layer {
        LayerConfig::Linear { .. } => "linear",
        LayerConfig::Conv { .. } => "conv",
        LayerConfig::Pool { .. } => "pool",
        LayerConfig::Cell { .. } => "cell",
    }
}

fn describe(layer: &LayerConfig) -> String {
    match *layer {
        LayerConfig::Linear { width, activation, skip } => {
            format!("linear {width} {}{}", activation.name(), if skip { " skip" } else { "" })
        }
        LayerConfig::Cell { ref ops, activation } => {
            let ops: Vec<&str> = ops.iter().map(|o| o.name()).collect();
            format!("cell [{}] {}", ops.join(" "), activation.name())
        }
        LayerConfig::Conv { channels, kernel, stride, padding, activation } => {
            format!("conv {channels}ch k{kernel} s{stride} p{padding} {}", activation.name())
        }
        LayerConfig::Pool { kind, size } => format!("{kind:?} pool {size}").to_lowercase(),
    }
}

/// How the child's current activations copy the parent's: `map[u]` is the parent unit (flat feature
/// or channel) that child unit `u` holds a copy of. Every parent unit has at least one copy.
struct Flow {
    map: Vec<usize>,
    /// Units of the parent's activations at this point.
    parent_units: usize,
}

impl Flow {
    fn identity(units: usize) -> Self {
        Self { map: (0..units).collect(), parent_units: units }
    }

    /// Errors unless every child unit holds its own parent unit, in order: what layers that are
    /// inherited only unchanged (child layer `i`) need.
    fn require_unchanged(&self, i: usize) -> Result<()> {
        if self.map.len() == self.parent_units && self.map.iter().enumerate().all(|(u, &p)| u == p) {
            return Ok(());
        }
        Err(shape_error(
            format!("layers[{i}]"),
            format!(
                "its input has {} units copying the parent's {}, but it is inherited only unchanged",
                self.map.len(),
                self.parent_units
            ),
        ))
    }

    /// Copies of each parent unit among the child's units.
    fn copies(&self) -> Vec<usize> {
        let mut copies = vec![0; self.parent_units];
        for &p in &self.map {
            copies[p] += 1;
        }
        copies
    }

    /// Follows the flatten of `[channels, h, w]` into channel-major features (`c·h·w + s`).
    fn flatten(&mut self, spatial: usize) {
        self.map = self.map.iter().flat_map(|&p| (0..spatial).map(move |s| p * spatial + s)).collect();
        self.parent_units *= spatial;
    }

    /// Weight and bias of a child layer with `width` outputs that inherits `source`: its first
    /// outputs are the parent's, the rest copy random ones. Moves the flow past the layer.
    fn inherit(&mut self, source: &ParentLayer, width: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
        let (outputs, block) = (source.bias.len(), source.block);
        debug_assert_eq!(source.inputs, self.parent_units, "the flow must be at the layer's input");
        let rows: Vec<usize> =
            (0..width).map(|j| if j < outputs { j } else { rng.below(outputs as u64) as usize }).collect();
        let copies = self.copies();
        let mut w = Vec::with_capacity(width * self.map.len() * block);
        for &r in &rows {
            for &p in &self.map {
                let share = 1.0 / copies[p] as f32;
                let start = (r * source.inputs + p) * block;
                w.extend(source.weight[start..start + block].iter().map(|v| v * share));
            }
        }
        let b = rows.iter().map(|&r| source.bias[r]).collect();
        self.map = rows;
        self.parent_units = outputs;
        (w, b)
    }

    /// Weight and bias of a new `width`-unit layer that passes its input through: the identity on
    /// the first units, and for each extra unit a copy of a random input unit. Moves the flow past
    /// the layer (its units copy the same parent units as its inputs).
    fn insert_identity(&mut self, width: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
        let inputs = self.map.len();
        let sources: Vec<usize> =
            (0..width).map(|j| if j < inputs { j } else { rng.below(inputs as u64) as usize }).collect();
        let mut w = vec![0.0; width * inputs];
        for (j, &s) in sources.iter().enumerate() {
            w[j * inputs + s] = 1.0;
        }
        self.map = sources.iter().map(|&s| self.map[s]).collect();
        (w, vec![0.0; width])
    }
}

/// A parameterised layer of the parent: weight `[outputs, inputs, block]` (block: k² for a conv,
/// 1 for a linear layer) and bias `[outputs]`, as f32 values.
struct ParentLayer {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    block: usize,
}

impl ParentLayer {
    /// Reads `{name}.weight` and `{name}.bias`, checked against the sizes the parent's config implies.
    fn fetch(
        params: &HashMap<String, Tensor>,
        name: &str,
        outputs: usize,
        inputs: usize,
        block: usize,
    ) -> Result<Self> {
        let weight = fetch(params, &format!("{name}.weight"), outputs, inputs * block)?;
        let bias = fetch(params, &format!("{name}.bias"), outputs, 1)?;
        Ok(Self { weight, bias, inputs, block })
    }
}

/// The parent's tensor `name` as `rows · cols` f32 values.
fn fetch(params: &HashMap<String, Tensor>, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
    let t =
        params.get(name).ok_or_else(|| shape_error(name, "the parent's parameters have no such tensor".to_string()))?;
    if t.elem_count() != rows * cols || t.dim(0)? != rows {
        return Err(shape_error(
            name,
            format!("the parent's tensor has shape {:?}, its config implies {rows} rows of {cols}", t.dims()),
        ));
    }
    Ok(candle_values(t)?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use candle_core::DType;
    use shoal_common::spec::{ModelKind, PoolKind};

    use super::*;
    use crate::Model;
    use crate::nn::{Ctx, Mode};

    fn linear(width: usize, activation: Activation) -> LayerConfig {
        LayerConfig::Linear { width, activation, skip: false }
    }

    fn conv(channels: usize, kernel: usize, stride: usize, padding: usize, activation: Activation) -> LayerConfig {
        LayerConfig::Conv { channels, kernel, stride, padding, activation }
    }

    fn config(kind: ModelKind, layers: Vec<LayerConfig>, dropout: f64) -> ModelConfig {
        ModelConfig { kind, layers, dropout, input_shape: None }
    }

    fn mlp(layers: &[(usize, Activation)]) -> ModelConfig {
        config(ModelKind::Mlp, layers.iter().map(|&(w, a)| linear(w, a)).collect(), 0.2)
    }

    fn flat(features: usize) -> DataShape {
        DataShape { features, image: None, outputs: 3 }
    }

    fn image(shape: [usize; 3]) -> DataShape {
        DataShape { features: shape.iter().product(), image: Some(shape), outputs: 4 }
    }

    fn outputs(model: &Model, x: &Tensor) -> Vec<f32> {
        let mut ctx = Ctx::new(Mode::Eval, 1, Rng::new(0));
        model.forward(&x.clone().into(), &mut ctx).expect("forward").0.to_host_vec().expect("vec")
    }

    struct Morphed {
        description: String,
        parent_params: usize,
        child_params: usize,
        parent: HashMap<String, Tensor>,
        child: HashMap<String, Tensor>,
    }

    /// Builds a randomly initialised parent, morphs it into `child`, and checks that the child's
    /// eval-mode outputs on random inputs equal the parent's (reference: the parent's own forward
    /// pass), to 1e-4 relative with an absolute floor of 1e-4.
    fn assert_preserved(parent: &ModelConfig, child: &ModelConfig, data: &DataShape) -> Morphed {
        let parent_model = Model::build(parent, data, 7).expect("build parent");
        let mut rng = Rng::new(3);
        let rows = 6;
        let x: Vec<f32> = (0..rows * data.features).map(|_| rng.normal() as f32).collect();
        let x = Tensor::from_vec(x, (rows, data.features), &HOST).expect("x");
        let parent_params = parent_model.named_tensors().expect("named");
        let (params, description) = inherit(parent, &parent_params, child, data, 11).expect("inherit");
        let mut child_model = Model::build(child, data, 99).expect("build child");
        let want = outputs(&parent_model, &x);
        // A freshly initialised child differs, so agreement below comes from the inherited weights.
        assert_ne!(outputs(&child_model, &x), want);
        child_model.load_named(&params, Path::new("morph")).expect("load");
        let got = outputs(&child_model, &x);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{description}: child {g} vs parent {w}");
        }
        Morphed {
            description,
            parent_params: parent_model.param_count(),
            child_params: child_model.param_count(),
            parent: parent_params,
            child: params,
        }
    }

    fn rows_of(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().expect("rows")
    }

    #[test]
    fn widening_a_hidden_linear_layer_preserves_the_function() {
        for act in [Activation::Relu, Activation::Tanh] {
            let parent = mlp(&[(16, act), (12, act)]);
            let child = mlp(&[(24, act), (12, act)]);
            let m = assert_preserved(&parent, &child, &flat(10));
            assert_eq!(m.description, "widen layers[0] 16->24");
            assert!(m.child_params > m.parent_params);
            // New units are copies of parent units: every child row is a parent row.
            let parent_rows = rows_of(&m.parent["layers.0.weight"]);
            for row in rows_of(&m.child["layers.0.weight"]) {
                assert!(parent_rows.contains(&row), "{act:?}: a new unit copies no parent unit");
            }
        }
    }

    #[test]
    fn widening_the_last_hidden_layer_remaps_the_output_layer() {
        for act in [Activation::Relu, Activation::Tanh] {
            let parent = mlp(&[(16, act), (12, act)]);
            let m = assert_preserved(&parent, &mlp(&[(16, act), (20, act)]), &flat(10));
            assert_eq!(m.description, "widen layers[1] 12->20");
            assert!(m.child_params > m.parent_params);
            let m = assert_preserved(&parent, &mlp(&[(21, act), (30, act)]), &flat(10));
            assert_eq!(m.description, "widen layers[0] 16->21; widen layers[1] 12->30");
        }
    }

    #[test]
    fn an_inserted_identity_layer_preserves_the_function() {
        use Activation::{Identity, LeakyRelu, Relu, Tanh};
        let data = flat(10);
        // Relu after relu, in the middle and just before the output layer.
        let parent = mlp(&[(16, Relu), (12, Relu)]);
        let m = assert_preserved(&parent, &mlp(&[(16, Relu), (16, Relu), (12, Relu)]), &data);
        assert_eq!(m.description, "insert identity layer at layers[1]");
        assert!(m.child_params > m.parent_params);
        let m = assert_preserved(&parent, &mlp(&[(16, Relu), (12, Relu), (12, LeakyRelu)]), &data);
        assert_eq!(m.description, "insert identity layer at layers[2]");
        // An identity activation is fine anywhere: after tanh, and on the raw data.
        let parent = mlp(&[(16, Tanh), (12, Tanh)]);
        let m = assert_preserved(&parent, &mlp(&[(16, Tanh), (16, Identity), (12, Tanh)]), &data);
        assert_eq!(m.description, "insert identity layer at layers[1]");
        let m = assert_preserved(&parent, &mlp(&[(10, Identity), (16, Tanh), (12, Tanh)]), &data);
        assert_eq!(m.description, "insert identity layer at layers[0]");
        // The weights are the identity and the bias zero.
        let eye = Tensor::eye(10, DType::F32, &HOST).expect("eye");
        assert_eq!(rows_of(&m.child["layers.0.weight"]), rows_of(&eye));
        assert_eq!(m.child["layers.0.bias"].to_vec1::<f32>().expect("bias"), vec![0.0; 10]);
    }

    #[test]
    fn widening_a_conv_layer_before_pool_and_linear_preserves_the_function() {
        use Activation::{Relu, Tanh};
        let data = image([1, 8, 8]);
        for pool in [PoolKind::Max, PoolKind::Avg] {
            let cnn = |channels: usize, width: usize| {
                let pool = LayerConfig::Pool { kind: pool, size: 2 };
                config(ModelKind::Cnn, vec![conv(channels, 3, 1, 1, Relu), pool, linear(width, Tanh)], 0.1)
            };
            let m = assert_preserved(&cnn(4, 10), &cnn(6, 10), &data);
            assert_eq!(m.description, "widen layers[0] 4->6 channels");
            assert!(m.child_params > m.parent_params);
            let m = assert_preserved(&cnn(4, 10), &cnn(7, 13), &data);
            assert_eq!(m.description, "widen layers[0] 4->7 channels; widen layers[2] 10->13");
        }
    }

    #[test]
    fn widening_a_conv_layer_before_another_conv_preserves_the_function() {
        use Activation::{Gelu, Relu, Tanh};
        let data = image([2, 9, 9]);
        // Conv into conv into a pool into the output layer; then conv straight into a linear layer.
        let deep = |a: usize, b: usize| {
            let pool = LayerConfig::Pool { kind: PoolKind::Max, size: 2 };
            config(ModelKind::Cnn, vec![conv(a, 3, 1, 1, Tanh), conv(b, 3, 2, 0, Gelu), pool], 0.0)
        };
        let m = assert_preserved(&deep(3, 5), &deep(6, 5), &data);
        assert_eq!(m.description, "widen layers[0] 3->6 channels");
        assert!(m.child_params > m.parent_params);
        let m = assert_preserved(&deep(3, 5), &deep(4, 9), &data);
        assert_eq!(m.description, "widen layers[0] 3->4 channels; widen layers[1] 5->9 channels");
        let shallow =
            |a: usize, b: usize| config(ModelKind::Cnn, vec![conv(a, 3, 2, 1, Relu), conv(b, 2, 1, 0, Relu)], 0.0);
        assert_preserved(&shallow(2, 3), &shallow(5, 4), &data);
    }

    #[test]
    fn widening_and_deepening_combine() {
        use Activation::{Identity, Relu};
        let parent = mlp(&[(16, Relu), (8, Relu)]);
        // Greedy alignment would let layers[1] inherit the parent's 8-unit layer and then fail on
        // layers[2]; the planner backtracks to an insertion (itself widened 24->30).
        let child = mlp(&[(24, Relu), (30, Relu), (12, Relu), (12, Identity)]);
        let m = assert_preserved(&parent, &child, &flat(10));
        assert_eq!(
            m.description,
            "widen layers[0] 16->24; insert identity layer at layers[1] widened 24->30; \
             widen layers[2] (parent layers[1]) 8->12; insert identity layer at layers[3]"
        );
        assert!(m.child_params > m.parent_params);
        // A CNN grown in both directions.
        let data = image([1, 8, 8]);
        let cnn = |channels: usize, hidden: &[usize]| {
            let mut layers = vec![conv(channels, 3, 1, 1, Relu), LayerConfig::Pool { kind: PoolKind::Avg, size: 2 }];
            layers.extend(hidden.iter().map(|&w| linear(w, Relu)));
            config(ModelKind::Cnn, layers, 0.3)
        };
        let m = assert_preserved(&cnn(3, &[10]), &cnn(5, &[14, 14, 20]), &data);
        assert_eq!(
            m.description,
            "widen layers[0] 3->5 channels; widen layers[2] 10->14; insert identity layer at layers[3]; \
             insert identity layer at layers[4] widened 14->20"
        );
    }

    #[test]
    fn an_unchanged_child_copies_the_parent() {
        let data = image([1, 8, 8]);
        let cfg = config(
            ModelKind::Cnn,
            vec![conv(3, 3, 1, 1, Activation::Relu), LayerConfig::Pool { kind: PoolKind::Max, size: 2 }],
            0.0,
        );
        let m = assert_preserved(&cfg, &cfg, &data);
        assert_eq!(m.description, "unchanged");
        assert_eq!(m.parent.len(), m.child.len());
        for (name, t) in &m.parent {
            let a = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("parent");
            let b = m.child[name].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("child");
            assert_eq!(a, b, "{name}");
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_copies() {
        let parent = mlp(&[(4, Activation::Relu)]);
        let child = mlp(&[(20, Activation::Relu)]);
        let params = Model::build(&parent, &flat(5), 1).expect("build").named_tensors().expect("named");
        let run = |seed| {
            let (t, _) = inherit(&parent, &params, &child, &flat(5), seed).expect("inherit");
            rows_of(&t["layers.0.weight"])
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn morphs_that_change_the_function_are_refused() {
        use Activation::{Identity, Relu, Tanh};
        let data = flat(10);
        let refuse = |parent: &ModelConfig, child: &ModelConfig, data: &DataShape| {
            let params = Model::build(parent, data, 1).expect("build").named_tensors().expect("named");
            let err = inherit(parent, &params, child, data, 0).expect_err("refused");
            assert!(matches!(err, TrainError::Shape { .. }), "{err}");
            err.to_string()
        };
        let parent = mlp(&[(16, Relu), (12, Relu)]);
        let err = refuse(&parent, &mlp(&[(16, Relu), (8, Relu)]), &data);
        assert!(err.starts_with("model.layers[1]: ") && err.contains("fewer than the parent's 12"), "{err}");
        let err = refuse(&parent, &mlp(&[(16, Relu)]), &data);
        assert!(err.contains("layers[1] (linear 12 relu) has no counterpart"), "{err}");
        let err = refuse(&parent, &mlp(&[(16, Relu), (12, Tanh)]), &data);
        assert!(err.starts_with("model.layers[1]: ") && err.contains("activation is tanh, not relu"), "{err}");
        // A relu identity layer after tanh would zero the negative outputs.
        let parent = mlp(&[(16, Tanh), (12, Tanh)]);
        let err = refuse(&parent, &mlp(&[(16, Tanh), (16, Relu), (12, Tanh)]), &data);
        assert!(err.starts_with("model.layers[1]: ") && err.contains("previous layer's activation is tanh"), "{err}");
        // Nor on the raw data, which may be negative.
        let err = refuse(&parent, &mlp(&[(10, Relu), (16, Tanh), (12, Tanh)]), &data);
        assert!(err.starts_with("model.layers[0]: ") && err.contains("it receives the data"), "{err}");
        // Non-idempotent activations are never identity layers.
        let err = refuse(&parent, &mlp(&[(16, Tanh), (16, Tanh), (12, Tanh)]), &data);
        assert!(err.contains("tanh is not the identity"), "{err}");

        let data = image([1, 8, 8]);
        let cnn = |layers| config(ModelKind::Cnn, layers, 0.0);
        let parent = cnn(vec![conv(4, 3, 1, 1, Relu), linear(8, Relu)]);
        let err = refuse(&parent, &cnn(vec![conv(4, 5, 1, 2, Relu), linear(8, Relu)]), &data);
        assert!(err.starts_with("model.layers[0]: ") && err.contains("kernel/stride/padding"), "{err}");
        let err = refuse(&parent, &cnn(vec![conv(3, 3, 1, 1, Relu), linear(8, Relu)]), &data);
        assert!(err.contains("3 channels are fewer than the parent's 4"), "{err}");
        // A type change: a pool where the parent has a conv.
        let err =
            refuse(&parent, &cnn(vec![LayerConfig::Pool { kind: PoolKind::Max, size: 2 }, linear(8, Relu)]), &data);
        assert!(err.contains("it is a pool layer, the parent's is a conv layer"), "{err}");
        // A linear layer on a conv's spatial output is not a flat identity layer.
        let err = refuse(&parent, &cnn(vec![conv(4, 3, 1, 1, Relu), linear(256, Identity), linear(8, Relu)]), &data);
        assert!(err.contains("not a flat vector"), "{err}");
    }

    fn cell(names: &[&str], activation: Activation) -> LayerConfig {
        LayerConfig::Cell { ops: names.iter().map(|n| CellOp::parse(n).expect("op")).collect(), activation }
    }

    fn skip(width: usize, activation: Activation) -> LayerConfig {
        LayerConfig::Linear { width, activation, skip: true }
    }

    const MIXED: &[&str] = &["linear", "identity", "linear", "zero", "linear", "identity"];

    #[test]
    fn a_child_with_the_parents_cell_and_skip_layer_inherits_them_unchanged() {
        use Activation::{Identity, Relu, Tanh};
        let data = flat(10);
        let parent =
            config(ModelKind::Mlp, vec![linear(8, Tanh), cell(MIXED, Relu), skip(8, Tanh), linear(6, Relu)], 0.1);
        let m = assert_preserved(&parent, &parent, &data);
        assert_eq!(m.description, "unchanged");
        // Grown after them: the last hidden layer widened and an identity layer inserted after the cell.
        let child = config(
            ModelKind::Mlp,
            vec![linear(8, Tanh), cell(MIXED, Relu), linear(8, Identity), skip(8, Tanh), linear(9, Relu)],
            0.1,
        );
        let m = assert_preserved(&parent, &child, &data);
        assert_eq!(m.description, "insert identity layer at layers[2]; widen layers[4] (parent layers[3]) 6->9");
        for (from, to) in [
            ("layers.1.edge0.weight", "layers.1.edge0.weight"),
            ("layers.1.edge2.bias", "layers.1.edge2.bias"),
            ("layers.1.edge4.weight", "layers.1.edge4.weight"),
            ("layers.2.weight", "layers.3.weight"),
            ("layers.2.bias", "layers.3.bias"),
        ] {
            let a = m.parent[from].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("parent");
            let b = m.child[to].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("child");
            assert_eq!(a, b, "{from} -> {to}");
        }
        assert!(!m.child.contains_key("layers.1.edge1.weight"), "identity edges have no weights");
    }

    #[test]
    fn cells_and_skip_layers_that_change_are_refused() {
        use Activation::{Identity, Relu, Tanh};
        let data = flat(10);
        let refuse = |parent: &[LayerConfig], child: &[LayerConfig]| {
            let (parent, child) =
                (config(ModelKind::Mlp, parent.to_vec(), 0.0), config(ModelKind::Mlp, child.to_vec(), 0.0));
            let params = Model::build(&parent, &data, 1).expect("build").named_tensors().expect("named");
            let err = inherit(&parent, &params, &child, &data, 0).expect_err("refused");
            assert!(matches!(err, TrainError::Shape { .. }), "{err}");
            err.to_string()
        };
        let parent = [linear(8, Tanh), cell(MIXED, Relu), skip(8, Tanh)];
        let other_ops = ["linear", "identity", "linear", "zero", "identity", "identity"];
        let err = refuse(&parent, &[linear(8, Tanh), cell(&other_ops, Relu), skip(8, Tanh)]);
        assert!(err.starts_with("model.layers[1]: ") && err.contains("its ops differ from the parent's"), "{err}");
        assert!(err.contains("only linear layers can be inserted"), "{err}");
        let err = refuse(&parent, &[linear(8, Tanh), cell(MIXED, Tanh), skip(8, Tanh)]);
        assert!(err.starts_with("model.layers[1]: ") && err.contains("activation is tanh, not relu"), "{err}");
        // Widening the layer before a cell would widen the cell.
        let err = refuse(&parent, &[linear(12, Tanh), cell(MIXED, Relu), skip(12, Tanh)]);
        assert!(
            err.starts_with("model.layers[1]: ") && err.contains("its input is [12] where the parent's is [8]"),
            "{err}"
        );
        // A skip layer is neither widened, nor added, nor dropped.
        let parent = [linear(8, Tanh), skip(8, Tanh)];
        let err = refuse(&parent, &[linear(10, Tanh), skip(10, Tanh)]);
        assert!(
            err.starts_with("model.layers[1]: ") && err.contains("its 10 units differ from the parent's 8"),
            "{err}"
        );
        let err = refuse(&parent, &[linear(8, Tanh), linear(8, Tanh)]);
        assert!(err.contains("the parent's layer has a skip connection and it has none"), "{err}");
        let err = refuse(&[linear(8, Tanh), linear(8, Tanh)], &[linear(8, Tanh), skip(8, Tanh)]);
        assert!(err.contains("it has a skip connection and the parent's layer has none"), "{err}");
        let err = refuse(&parent, &[linear(8, Tanh), skip(8, Tanh), skip(8, Identity)]);
        assert!(err.starts_with("model.layers[2]: ") && err.contains("would add its input a second time"), "{err}");
    }

    #[test]
    fn parameters_that_do_not_fit_the_parent_config_are_refused() {
        let data = flat(10);
        let parent = mlp(&[(16, Activation::Relu)]);
        let other =
            Model::build(&mlp(&[(15, Activation::Relu)]), &data, 1).expect("build").named_tensors().expect("named");
        let err = inherit(&parent, &other, &parent, &data, 0).expect_err("refused").to_string();
        assert!(err.starts_with("model.layers.0.weight: "), "{err}");
        let mut missing = Model::build(&parent, &data, 1).expect("build").named_tensors().expect("named");
        missing.remove("output.bias");
        let err = inherit(&parent, &missing, &parent, &data, 0).expect_err("refused").to_string();
        assert!(err.contains("output.bias"), "{err}");
    }
}
