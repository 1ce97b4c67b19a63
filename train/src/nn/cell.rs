//! A DAG cell on flat features that keeps their width: node 0 is the input, node j sums an
//! operation (zero, identity, or a width x width linear map with the cell's activation) applied to
//! each of the nodes before it, and the last node is the output. The backend's linear kernels run
//! the edges.

use std::sync::Arc;

use candle_core::Result;
use shoal_common::spec::{Activation, CellOp, cell_edges, cell_nodes};

use super::Param;
use super::layer::{Ctx, Layer, Saved};
use crate::backend::{Backend, Tensor};
use crate::rng::Rng;

/// One edge of the cell: `from -> to` with its operation, and for a linear edge the index of its
/// weight in the parameter list (its bias follows it).
#[derive(Clone, Copy, Debug)]
struct Edge {
    from: usize,
    to: usize,
    op: CellOp,
    param: usize,
}

pub struct Cell {
    /// Weight and bias of every linear edge, in edge order.
    params: Vec<Param>,
    edges: Vec<Edge>,
    /// Nodes after the input.
    nodes: usize,
    width: usize,
    activation: Activation,
    backend: Arc<dyn Backend>,
}

impl Cell {
    /// A cell whose linear edges are initialised like [`super::Linear::new`] (uniform in
    /// ±1/√width, weight then bias, edge by edge) and named `{name}.edge{k}.weight` / `.bias`, with
    /// `k` the edge's index in `ops`.
    pub fn new(
        name: &str,
        width: usize,
        ops: &[CellOp],
        activation: Activation,
        rng: &mut Rng,
        backend: &Arc<dyn Backend>,
    ) -> Result<Self> {
        let Some(nodes) = cell_nodes(ops.len()) else {
            candle_core::bail!("a cell of n nodes has n(n+1)/2 edges, got {}", ops.len())
        };
        let bound = 1.0 / (width as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform_range(-bound, bound) as f32).collect() };
        let mut params = Vec::new();
        let mut edges = Vec::with_capacity(ops.len());
        for (k, (&(from, to), &op)) in cell_edges(nodes).iter().zip(ops).enumerate() {
            let param = params.len();
            if op == CellOp::Linear {
                params.push(Param::new(
                    format!("{name}.edge{k}.weight"),
                    draw(width * width),
                    &[width, width],
                    backend,
                )?);
                params.push(Param::new(format!("{name}.edge{k}.bias"), draw(width), &[width], backend)?);
            }
            edges.push(Edge { from, to, op, param });
        }
        Ok(Self { params, edges, nodes, width, activation, backend: backend.clone() })
    }

    fn linear_edges(&self) -> usize {
        self.edges.iter().filter(|e| e.op == CellOp::Linear).count()
    }

    /// Whether node `i` is the source of a linear edge (backward then needs its value).
    fn feeds_linear(&self, i: usize) -> bool {
        self.edges.iter().any(|e| e.from == i && e.op == CellOp::Linear)
    }

    /// Whether a linear edge keeps a tensor for the activation's backward (the one the backend's
    /// linear forward hands back); the identity needs none.
    fn keeps_activation(&self) -> bool {
        self.activation != Activation::Identity
    }

    fn add(&self, slot: &mut Option<Tensor>, t: Tensor) -> Result<()> {
        *slot = Some(match slot.take() {
            None => t,
            Some(s) => self.backend.add(&s, &t)?,
        });
        Ok(())
    }
}

impl Layer for Cell {
    fn kind(&self) -> &'static str {
        "cell"
    }

    /// Saves, in order: the value of every node that feeds a linear edge, then for every linear
    /// edge the one tensor its activation's backward reads (none for the identity).
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        let input_dims = x.dims().to_vec();
        let x = if x.rank() == 2 { x.clone() } else { x.flatten_from(1)? };
        let mut nodes: Vec<Tensor> = Vec::with_capacity(self.nodes + 1);
        nodes.push(x);
        let mut edge_saves = Vec::new();
        for j in 1..=self.nodes {
            let mut sum: Option<Tensor> = None;
            for e in self.edges.iter().filter(|e| e.to == j) {
                let h = &nodes[e.from];
                let term = match e.op {
                    CellOp::Zero => continue,
                    CellOp::Identity => h.clone(),
                    CellOp::Linear => {
                        let (w, b) = (&self.params[e.param].value, &self.params[e.param + 1].value);
                        let (y, keep) = self.backend.linear_forward(h, w, b, self.activation, ctx.threads)?;
                        if ctx.train() && self.keeps_activation() {
                            edge_saves.push(keep);
                        }
                        y
                    }
                };
                self.add(&mut sum, term)?;
            }
            // A node whose edges are all zero is zero.
            nodes.push(match sum {
                Some(s) => s,
                None => self.backend.zeros(nodes[0].dims())?,
            });
        }
        let y = nodes[self.nodes].clone();
        nodes.truncate(self.nodes);
        if !ctx.train() {
            return Ok((y, Saved::default()));
        }
        let mut tensors: Vec<Tensor> =
            nodes.into_iter().enumerate().filter(|(i, _)| self.feeds_linear(*i)).map(|(_, h)| h).collect();
        tensors.extend(edge_saves);
        Ok((y, Saved::new(tensors, &input_dims)))
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        threads: usize,
    ) -> Result<Option<Tensor>> {
        // Where each saved node value sits, and where the edge tensors start.
        let mut node_slot = vec![None; self.nodes + 1];
        let mut next = 0;
        for (i, slot) in node_slot.iter_mut().enumerate() {
            if self.feeds_linear(i) {
                *slot = Some(next);
                next += 1;
            }
        }
        let expected = next + if self.keeps_activation() { self.linear_edges() } else { 0 };
        if saved.tensors.len() != expected {
            candle_core::bail!("backward called without the activations of a training forward")
        }
        let rows = grad_out.elem_count() / self.width;
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes + 1];
        grads[self.nodes] = Some(grad_out.reshape((rows, self.width))?);
        // Edge tensors in edge order, so walk the edges backwards with a cursor from the end.
        let mut edge_slot = saved.tensors.len();
        // Edges are ordered by target node, so the reverse order visits every node after all the
        // nodes it feeds: its gradient is complete when its own incoming edges are reached.
        for k in (0..self.edges.len()).rev() {
            let e = self.edges[k];
            let saved_act = if e.op == CellOp::Linear && self.keeps_activation() {
                edge_slot -= 1;
                Some(saved.get(edge_slot)?)
            } else {
                None
            };
            // A node that reaches the output only through zero edges gets no gradient, and leaves its
            // edges' parameters without one (the optimizer skips them this step).
            let Some(g) = grads[e.to].clone() else { continue };
            let wants_input = e.from > 0 || need_input_grad;
            match e.op {
                CellOp::Zero => {}
                CellOp::Identity => {
                    if wants_input {
                        self.add(&mut grads[e.from], g)?;
                    }
                }
                CellOp::Linear => {
                    // The activation's backward may overwrite its gradient, which other edges read.
                    let dz = match saved_act {
                        Some(s) => self.backend.activation_backward(self.activation, s, self.backend.copy(&g)?)?,
                        None => g,
                    };
                    let slot = node_slot[e.from]
                        .ok_or_else(|| candle_core::Error::Msg(format!("cell node {} was not saved", e.from)))?;
                    let h = saved.get(slot)?;
                    let (weights, biases) = self.params.split_at_mut(e.param + 1);
                    let (w, b) = (&mut weights[e.param], &mut biases[0]);
                    self.backend.linear_weight_grad(h, &dz, &mut w.grad, w.grad_valid, threads)?;
                    self.backend.bias_grad(&dz, &mut b.grad, b.grad_valid)?;
                    (w.grad_valid, b.grad_valid) = (true, true);
                    if wants_input {
                        let dh = self.backend.linear_input_grad(&dz, &self.params[e.param].value, threads)?;
                        self.add(&mut grads[e.from], dh)?;
                    }
                }
            }
        }
        if !need_input_grad {
            return Ok(None);
        }
        let dx = match grads[0].take() {
            Some(g) => g,
            None => self.backend.zeros(&[rows, self.width])?,
        };
        Ok(Some(dx.reshape(saved.input_dims.as_slice())?))
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }

    fn macs(&self, _input: &[usize]) -> u64 {
        (self.linear_edges() * self.width * self.width) as u64
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::backend::{self, to_host_vec};
    use crate::nn::{Deferred, Mode};

    fn ops(names: &[&str]) -> Vec<CellOp> {
        names.iter().map(|n| CellOp::parse(n).expect("op")).collect()
    }

    pub(in crate::nn) fn random(shape: (usize, usize), seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let v: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.normal() as f32).collect();
        backend::cpu().from_host(v, &[shape.0, shape.1]).expect("tensor")
    }

    /// `Σ output · r` in f64 from an inference forward: the scalar whose gradient with respect to
    /// the output is `r`.
    fn probe(layer: &dyn Layer, x: &Tensor, r: &[f32]) -> f64 {
        let mut ctx = Ctx::new(Mode::Eval, 1, Rng::new(0));
        let y = to_host_vec(&layer.forward(x, &mut ctx).expect("forward").0).expect("vec");
        y.iter().zip(r).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
    }

    fn nudged(t: &Tensor, k: usize, by: f32) -> Tensor {
        let mut v = to_host_vec(t).expect("vec");
        v[k] += by;
        backend::cpu().from_host(v, t.dims()).expect("tensor")
    }

    /// How [`check_gradients`] runs backward.
    #[derive(Clone, Copy, Debug)]
    pub(in crate::nn) enum Path {
        /// `backward` in one go.
        Whole,
        /// `backward_input_first` then `finish_backward`, as a pipeline stage runs it.
        Split,
    }

    /// Checks a layer's parameter and input gradients of `Σ output · r` (r random) against central
    /// differences of its f32 forward (reference: the definition of the derivative, step 1e-2,
    /// summed in f64), to 2e-2 relative with an absolute floor of 1e-3. Parameters the backward
    /// left without a gradient must have a zero finite difference.
    pub(in crate::nn) fn check_gradients(layer: &mut dyn Layer, x: &Tensor, path: Path) {
        let mut ctx = Ctx::new(Mode::Train, 1, Rng::new(0));
        let (y, saved) = layer.forward(x, &mut ctx).expect("forward");
        let r = random(y.dims2().expect("flat output"), 17);
        let rv = to_host_vec(&r).expect("vec");
        layer.params_mut().iter_mut().for_each(Param::zero_grad);
        let dx = match path {
            Path::Whole => layer.backward(saved, backend::cpu().copy(&r).expect("copy"), true, 1).expect("backward"),
            Path::Split => {
                let (dx, deferred): (_, Option<Deferred>) =
                    layer.backward_input_first(saved, backend::cpu().copy(&r).expect("copy"), 1).expect("backward");
                if let Some(d) = deferred {
                    layer.finish_backward(d, 1).expect("finish");
                }
                dx
            }
        };
        let dx = to_host_vec(&dx.expect("input gradient")).expect("vec");
        let eps = 1e-2f32;
        let close = |what: String, fd: f64, a: f64| {
            assert!(
                (fd - a).abs() <= 2e-2 * fd.abs().max(a.abs()) + 1e-3,
                "{what}: finite difference {fd} vs backward {a}"
            );
        };
        assert_eq!(dx.len(), x.elem_count());
        for (k, &a) in dx.iter().enumerate() {
            let fd = (probe(layer, &nudged(x, k, eps), &rv) - probe(layer, &nudged(x, k, -eps), &rv))
                / (2.0 * f64::from(eps));
            close(format!("input[{k}]"), fd, f64::from(a));
        }
        for pi in 0..layer.params().len() {
            let p = &layer.params()[pi];
            let (name, value) = (p.name.clone(), p.value.clone());
            let grad = if p.grad_valid { to_host_vec(&p.grad).expect("vec") } else { vec![0.0; p.elem_count()] };
            let set = |layer: &mut dyn Layer, t: Tensor| layer.params_mut()[pi].value = t;
            for (k, &a) in grad.iter().enumerate() {
                set(layer, nudged(&value, k, eps));
                let plus = probe(layer, x, &rv);
                set(layer, nudged(&value, k, -eps));
                let minus = probe(layer, x, &rv);
                set(layer, value.clone());
                close(format!("{name}[{k}]"), (plus - minus) / (2.0 * f64::from(eps)), f64::from(a));
            }
        }
    }

    /// Three nodes with every kind of edge: (0,1) linear, (0,2) identity, (1,2) linear, (0,3) zero,
    /// (1,3) linear, (2,3) identity.
    fn mixed(activation: Activation) -> Cell {
        let ops = ops(&["linear", "identity", "linear", "zero", "linear", "identity"]);
        Cell::new("layers.1", 5, &ops, activation, &mut Rng::new(4), &backend::cpu()).expect("cell")
    }

    #[test]
    fn cell_gradients_match_finite_differences() {
        let x = random((3, 5), 1);
        // Tanh keeps the edge outputs, silu the pre-activations, the identity nothing.
        for act in [Activation::Tanh, Activation::Silu, Activation::Identity] {
            let mut cell = mixed(act);
            check_gradients(&mut cell, &x, Path::Whole);
            check_gradients(&mut cell, &x, Path::Split);
        }
    }

    #[test]
    fn cell_forward_sums_its_edges() {
        // Reference: the same DAG written out with candle ops, node by node.
        let x = random((3, 5), 2);
        let cell = mixed(Activation::Tanh);
        let p: Vec<&candle_core::Tensor> = cell.params().iter().map(|p| p.value.host().expect("host")).collect();
        let lin = |h: &candle_core::Tensor, e: usize| -> candle_core::Tensor {
            h.matmul(&p[2 * e].t().expect("t"))
                .and_then(|z| z.broadcast_add(p[2 * e + 1]))
                .and_then(|z| z.tanh())
                .expect("linear")
        };
        let xh = x.host().expect("host");
        let h1 = lin(xh, 0);
        let h2 = (xh + lin(&h1, 1)).expect("h2");
        let h3 = (lin(&h1, 2) + &h2).expect("h3");
        let mut ctx = Ctx::new(Mode::Train, 1, Rng::new(0));
        let (y, saved) = cell.forward(&x, &mut ctx).expect("forward");
        let (got, want) = (to_host_vec(&y).expect("y"), backend::candle_values(&h3).expect("h3"));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "cell {g} vs reference {w}");
        }
        let names: Vec<&str> = cell.params().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "layers.1.edge0.weight",
                "layers.1.edge0.bias",
                "layers.1.edge2.weight",
                "layers.1.edge2.bias",
                "layers.1.edge4.weight",
                "layers.1.edge4.bias"
            ]
        );
        // Nodes 0 and 1 feed linear edges, and each of the three linear edges keeps its output.
        assert_eq!(saved.tensors.len(), 5);
        assert_eq!(saved.bytes(), 5 * 3 * 5 * 4);
        assert_eq!(cell.macs(&[5]), 3 * 25);
        let mut ctx = Ctx::new(Mode::Eval, 1, Rng::new(0));
        assert_eq!(cell.forward(&x, &mut ctx).expect("forward").1.bytes(), 0);
    }

    #[test]
    fn a_cell_cut_off_by_zero_edges_outputs_zeros() {
        // (0,1) linear, (0,2) zero, (1,2) zero: the output node has no live edge.
        let ops = ops(&["linear", "zero", "zero"]);
        let mut cell = Cell::new("c", 4, &ops, Activation::Relu, &mut Rng::new(1), &backend::cpu()).expect("cell");
        let x = random((2, 4), 3);
        let mut ctx = Ctx::new(Mode::Train, 1, Rng::new(0));
        let (y, saved) = cell.forward(&x, &mut ctx).expect("forward");
        assert_eq!(to_host_vec(&y).expect("y"), vec![0.0; 8]);
        let dx = cell
            .backward(saved, y.host().and_then(|y| y.ones_like()).expect("ones").into(), true, 1)
            .expect("backward")
            .expect("dx");
        assert_eq!(to_host_vec(&dx).expect("dx"), vec![0.0; 8]);
        // The dead edge's parameters get no gradient this step, so the optimizer leaves them alone.
        assert!(cell.params().iter().all(|p| !p.grad_valid));
    }
}
