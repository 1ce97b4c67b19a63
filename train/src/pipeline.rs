//! Pipeline parallelism: the model's units are cut into K contiguous stages, one per worker, and
//! each mini-batch is split into M micro-batches that flow through the stages. Activations go to
//! the next stage and their gradients come back over a [`StageLink`]; the step loop here decides
//! the order of work (GPipe or 1F1B), keeps or recomputes activations, accumulates gradients over
//! the micro-batches and takes one optimizer step per mini-batch, so a pipeline trains the same
//! parameters as one worker on the same batches. With D replicas, each stage all-reduces its
//! gradients with the same stage of the other replicas before the step.
//!
//! Stop requests, the step's loss and the validation sums ride along with the activations and
//! gradients, so every stage stops after the same step and reports the same numbers.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;
use shoal_common::spec::{Partition, PipeSchedule, TrainConfig};

use crate::backend::Backend;
use crate::checkpoint;
use crate::collective::{Collective, CollectiveError};
use crate::data::{Batch, BatchPlan, Dataset, Loader, Splits};
use crate::distributed::{self, Buckets};
use crate::error::{Result, TrainError};
use crate::model::{DataShape, Model};
use crate::nn::loss::{Targets, loss_and_grad};
use crate::nn::{Ctx, Mode, Saved};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::trainer::{
    EVAL_BATCH, EvalPoint, Host, Outcome, Plan, Report, RunOptions, Stop, Summary, TrainPoint, eval_point, eval_sums,
    reborrow, save_checkpoint,
};

/// Batches the first stage's loader prepares ahead.
const PREFETCH: usize = 4;
/// Timed repetitions per unit when balancing stages by measured time.
const PROFILE_REPS: usize = 3;
/// File in a stage's checkpoint that records the partition it was trained with.
const PARTITION_FILE: &str = "pipeline-bounds.txt";

/// What a message between neighbouring stages carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgKind {
    /// Activations of a training micro-batch, with its targets, towards the last stage.
    Forward,
    /// The gradient of those activations, back towards the first stage.
    Backward,
    /// Activations of a validation chunk.
    EvalForward,
    /// Validation sums, from the last stage back to the first.
    EvalResult,
    /// The stage boundaries chosen by the first stage.
    Partition,
}

impl MsgKind {
    pub fn code(self) -> u8 {
        match self {
            MsgKind::Forward => 1,
            MsgKind::Backward => 2,
            MsgKind::EvalForward => 3,
            MsgKind::EvalResult => 4,
            MsgKind::Partition => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => MsgKind::Forward,
            2 => MsgKind::Backward,
            3 => MsgKind::EvalForward,
            4 => MsgKind::EvalResult,
            5 => MsgKind::Partition,
            _ => return None,
        })
    }
}

/// One message between neighbouring stages.
#[derive(Clone, Debug, PartialEq)]
pub struct StageMsg {
    pub kind: MsgKind,
    /// Micro-batch (or validation chunk) index.
    pub mb: u32,
    /// Micro-batches in this step.
    pub count: u32,
    /// Largest stop request seen so far (see [`distributed::FLAG_CANCEL`]).
    pub flag: f32,
    /// Loss sum and correct rows of the step (on the last backward message).
    pub aux: [f64; 2],
    /// Targets per row (0 = class labels) and the targets themselves, for the last stage.
    pub target_width: u32,
    pub targets: Vec<f32>,
    /// Activations, gradients, sums or bounds.
    pub data: Vec<f32>,
}

impl StageMsg {
    pub fn new(kind: MsgKind, mb: usize, data: Vec<f32>) -> Self {
        Self { kind, mb: mb as u32, count: 0, flag: 0.0, aux: [0.0; 2], target_width: 0, targets: Vec::new(), data }
    }

    fn set_targets(&mut self, t: &Targets) {
        match t {
            Targets::Classes(c) => {
                self.target_width = 0;
                self.targets = c.iter().map(|&v| v as f32).collect();
            }
            Targets::Values { values, width } => {
                self.target_width = *width as u32;
                self.targets = values.clone();
            }
        }
    }

    fn take_targets(&mut self) -> Targets {
        let t = std::mem::take(&mut self.targets);
        if self.target_width == 0 {
            Targets::Classes(t.into_iter().map(|v| v as u32).collect())
        } else {
            Targets::Values { values: t, width: self.target_width as usize }
        }
    }
}

/// Which neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Prev,
    Next,
}

/// Links of one stage to its neighbours. Sends return at once (the transport queues them, so
/// sending overlaps compute); receives wait, with a deadline, for the next message from that
/// neighbour. Errors name the stage at fault.
pub trait StageLink {
    fn stage(&self) -> usize;

    fn stages(&self) -> usize;

    fn send(&mut self, to: Dir, msg: StageMsg) -> Result<(), CollectiveError>;

    fn recv(&mut self, from: Dir) -> Result<StageMsg, CollectiveError>;

    /// Tells both neighbours this stage is failing and why, so that they fail with the same reason
    /// instead of waiting out their deadline.
    fn abort(&mut self, reason: &str);
}

/// A stage's connections: its neighbours, and the same stage of the other pipeline replicas.
pub struct PipePeers<'a> {
    pub link: &'a mut dyn StageLink,
    /// World = the number of replicas; rank = this replica.
    pub replicas: Option<&'a mut dyn Collective>,
}

/// The order of one stage's work on a mini-batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Forward(usize),
    Backward(usize),
}

/// Stage `stage`'s operations for `m` micro-batches. GPipe: every forward, then every backward.
/// 1F1B: `stages - stage - 1` warm-up forwards, then one forward and one backward in turn, then the
/// remaining backwards, so at most `stages` micro-batches are in flight on any stage.
pub fn schedule_ops(schedule: PipeSchedule, stage: usize, stages: usize, m: usize) -> Vec<Op> {
    match schedule {
        PipeSchedule::GPipe => (0..m).map(Op::Forward).chain((0..m).map(Op::Backward)).collect(),
        PipeSchedule::OneFOneB => {
            let warm = (stages - stage - 1).min(m);
            let mut ops: Vec<Op> = (0..warm).map(Op::Forward).collect();
            for i in 0..m - warm {
                ops.push(Op::Forward(warm + i));
                ops.push(Op::Backward(i));
            }
            ops.extend((m - warm..m).map(Op::Backward));
            ops
        }
    }
}

/// Idle share of a stage in an ideal pipeline of equal stages: (K-1)/(M+K-1).
pub fn bubble_theory(stages: usize, m: usize) -> f64 {
    (stages as f64 - 1.0) / (m + stages - 1) as f64
}

/// Cuts `costs` into `parts` contiguous non-empty ranges minimising the costliest; returns the
/// `parts + 1` bounds.
pub fn balance(costs: &[f64], parts: usize) -> Vec<usize> {
    let n = costs.len();
    let parts = parts.clamp(1, n.max(1));
    let prefix: Vec<f64> = std::iter::once(0.0)
        .chain(costs.iter().scan(0.0, |acc, c| {
            *acc += c;
            Some(*acc)
        }))
        .collect();
    // best[k][i]: the smallest maximum over k parts of the first i units; from[k][i]: where part k starts.
    let mut best = vec![vec![f64::INFINITY; n + 1]; parts + 1];
    let mut from = vec![vec![0usize; n + 1]; parts + 1];
    best[0][0] = 0.0;
    for k in 1..=parts {
        for i in k..=n {
            for j in (k - 1)..i {
                let cost = best[k - 1][j].max(prefix[i] - prefix[j]);
                if cost < best[k][i] {
                    best[k][i] = cost;
                    from[k][i] = j;
                }
            }
        }
    }
    let mut bounds = vec![n];
    let mut i = n;
    for k in (1..=parts).rev() {
        i = from[k][i];
        bounds.push(i);
    }
    bounds.reverse();
    bounds
}

/// Parameters per unit.
pub fn unit_params(cfg: &TrainConfig, shape: &DataShape) -> Result<Vec<f64>> {
    (0..Model::unit_count(&cfg.model))
        .map(|u| Ok(Model::build_stage(&cfg.model, shape, cfg.training.seed, u..u + 1)?.param_count() as f64))
        .collect()
}

/// Forward plus backward seconds per unit on `rows` rows (the best of a few repetitions).
pub fn profile_units(cfg: &TrainConfig, shape: &DataShape, rows: usize, threads: usize) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for u in 0..Model::unit_count(&cfg.model) {
        let mut unit = Model::build_stage(&cfg.model, shape, cfg.training.seed, u..u + 1)?;
        let mut dims = vec![rows];
        dims.extend_from_slice(unit.input_dims());
        let mut rng = Rng::derive(cfg.training.seed, "profile", u as u64);
        let n: usize = dims.iter().product();
        let x = unit.backend().from_host((0..n).map(|_| rng.normal() as f32).collect::<Vec<f32>>(), &dims)?;
        let mut best = f64::INFINITY;
        for rep in 0..=PROFILE_REPS {
            let t0 = Instant::now();
            let mut ctx = Ctx::new(Mode::Train, threads, Rng::new(rep as u64));
            let (out, saved) = unit.forward(&x, &mut ctx)?;
            let grad = out.ones_like()?;
            unit.backward(saved, grad, threads)?;
            unit.zero_grad();
            if rep > 0 {
                best = best.min(t0.elapsed().as_secs_f64());
            }
        }
        times.push(best);
    }
    Ok(times)
}

/// How a stage spent its steps after the warm-up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageStats {
    pub stage: usize,
    pub stages: usize,
    /// Unit bounds of every stage.
    pub bounds: Vec<usize>,
    pub micro_batches: usize,
    pub steps: u64,
    /// Wall time of those steps.
    pub wall_s: f64,
    /// Forward (including the loss on the last stage) and backward compute (including any
    /// recomputation).
    pub forward_s: f64,
    pub backward_s: f64,
    pub forwards: u64,
    pub backwards: u64,
    /// Time blocked waiting for a neighbour's message.
    pub recv_wait_s: f64,
    /// Time in the optimizer step and the replicas' all-reduce.
    pub update_s: f64,
    /// Most activation bytes held at once (saved tensors, kept inputs, output gradients).
    pub peak_activation_bytes: usize,
}

impl StageStats {
    pub fn busy_s(&self) -> f64 {
        self.forward_s + self.backward_s
    }

    /// Idle share of the wall time.
    pub fn bubble(&self) -> f64 {
        if self.wall_s > 0.0 { (1.0 - self.busy_s() / self.wall_s).max(0.0) } else { 0.0 }
    }
}

/// A micro-batch in flight on this stage.
#[derive(Default)]
struct Slot {
    /// The stage's input, kept when activations are recomputed.
    input: Option<Tensor>,
    saved: Option<Vec<Saved>>,
    /// The loss gradient (last stage).
    grad: Option<Tensor>,
    bytes: usize,
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

/// Rows of each of `m` micro-batches of a `rows`-row batch (the first ones get the remainder).
fn micro_rows(rows: usize, m: usize) -> Vec<usize> {
    let (base, extra) = (rows / m, rows % m);
    (0..m).map(|i| base + usize::from(i < extra)).collect()
}

fn slice_targets(t: &Targets, start: usize, len: usize) -> Targets {
    match t {
        Targets::Classes(c) => Targets::Classes(c[start..start + len].to_vec()),
        Targets::Values { values, width } => {
            Targets::Values { values: values[start * width..(start + len) * width].to_vec(), width: *width }
        }
    }
}

fn protocol(what: &str, got: &StageMsg) -> TrainError {
    TrainError::Collective(CollectiveError(format!(
        "pipeline protocol error: expected {what}, got {:?} #{}",
        got.kind, got.mb
    )))
}

fn to_tensor(backend: &dyn Backend, data: Vec<f32>, input_dims: &[usize]) -> Result<Tensor> {
    let per: usize = input_dims.iter().product::<usize>().max(1);
    if data.len() % per != 0 {
        return Err(TrainError::Collective(CollectiveError(format!(
            "pipeline protocol error: {} values are not whole samples of {per}",
            data.len()
        ))));
    }
    let mut dims = vec![data.len() / per];
    dims.extend_from_slice(input_dims);
    Ok(backend.from_host(data, &dims)?)
}

/// Everything one stage needs during the run.
struct Stage<'a, 'l, 'r> {
    cfg: &'a TrainConfig,
    link: &'l mut dyn StageLink,
    replicas: Option<&'r mut dyn Collective>,
    model: Model,
    stage: usize,
    stages: usize,
    replica: usize,
    replica_count: usize,
    threads: usize,
    /// Live activation bytes; the peak since the stats window opened is in `stats`.
    held: usize,
    stats: StageStats,
}

/// What a step produced.
struct StepOut {
    loss_sum: f64,
    correct: f64,
    rows: usize,
    flag: f32,
}

impl Stage<'_, '_, '_> {
    fn is_first(&self) -> bool {
        self.stage == 0
    }

    fn is_last(&self) -> bool {
        self.stage + 1 == self.stages
    }

    fn hold(&mut self, bytes: isize) {
        self.held = (self.held as isize + bytes).max(0) as usize;
        self.stats.peak_activation_bytes = self.stats.peak_activation_bytes.max(self.held);
    }

    fn recv(&mut self, kind: MsgKind, dir: Dir, mb: usize) -> Result<StageMsg> {
        let t0 = Instant::now();
        let msg = self.link.recv(dir)?;
        self.stats.recv_wait_s += t0.elapsed().as_secs_f64();
        if msg.kind != kind || msg.mb as usize != mb {
            return Err(protocol(&format!("{kind:?} #{mb}"), &msg));
        }
        Ok(msg)
    }

    /// One mini-batch through this stage: the forwards and backwards of its micro-batches in the
    /// schedule's order. `batch` is the data (first stage only); `flag` this stage's stop request.
    fn step(&mut self, step: u64, batch: Option<&Batch>, flag: f32, schedule: PipeSchedule) -> Result<StepOut> {
        let cfg = self.cfg;
        let m_cfg = cfg.parallel.pipeline.micro_batches;
        // The first stage cuts the batch; the others learn the count and the stop requests so far
        // from the first micro-batch's activations.
        let mut first_msg = None;
        let (m, total_rows, mut flag) = match batch {
            Some(b) => {
                let rows = b.rows();
                (m_cfg.min(rows).max(1), rows, flag)
            }
            None => {
                let msg = self.recv(MsgKind::Forward, Dir::Prev, 0)?;
                let (m, rows, f) = (msg.count as usize, msg.aux[0] as usize, msg.flag.max(flag));
                first_msg = Some(msg);
                (m.max(1), rows, f)
            }
        };
        let rows_of = micro_rows(total_rows, m);
        let scale = 1.0 / (total_rows as f32 * self.replica_count as f32);
        let recompute = cfg.parallel.pipeline.recompute;
        let mut slots: Vec<Slot> = (0..m).map(|_| Slot::default()).collect();
        let mut out = StepOut { loss_sum: 0.0, correct: 0.0, rows: total_rows, flag };
        let input_dims = self.model.input_dims().to_vec();
        let (replica, replicas, stage, stages) = (self.replica, self.replica_count, self.stage, self.stages);
        let dropout_seed =
            |i: usize| ((step * replicas as u64 + replica as u64) * m as u64 + i as u64) * stages as u64 + stage as u64;
        let mut offset = 0;
        let mut offsets = Vec::with_capacity(m);
        for r in &rows_of {
            offsets.push(offset);
            offset += r;
        }

        for op in schedule_ops(schedule, self.stage, self.stages, m) {
            match op {
                Op::Forward(i) => {
                    let (x, targets) = match batch {
                        Some(b) => {
                            (b.x.narrow(0, offsets[i], rows_of[i])?, slice_targets(&b.targets, offsets[i], rows_of[i]))
                        }
                        None => {
                            let mut msg = match first_msg.take() {
                                Some(msg) => msg,
                                None => self.recv(MsgKind::Forward, Dir::Prev, i)?,
                            };
                            let targets = msg.take_targets();
                            (to_tensor(self.model.backend().as_ref(), msg.data, &input_dims)?, targets)
                        }
                    };
                    let t0 = Instant::now();
                    let mut ctx =
                        Ctx::new(Mode::Train, self.threads, Rng::derive(cfg.training.seed, "dropout", dropout_seed(i)));
                    let (y, saved) = self.model.forward(&x, &mut ctx)?;
                    let slot = &mut slots[i];
                    if recompute {
                        slot.bytes += tensor_bytes(&x);
                        slot.input = Some(x);
                    } else {
                        slot.bytes += saved.iter().map(Saved::bytes).sum::<usize>();
                        slot.saved = Some(saved);
                    }
                    let mut send = None;
                    if self.is_last() {
                        let loss = loss_and_grad(self.model.backend().as_ref(), &y, &targets, scale)?;
                        if !loss.mean().is_finite() {
                            return Err(TrainError::Diverged { step: step + 1, loss: loss.mean() });
                        }
                        out.loss_sum += loss.loss_sum;
                        out.correct += loss.correct as f64;
                        slot.bytes += tensor_bytes(&loss.grad);
                        slot.grad = Some(loss.grad);
                    } else {
                        send = Some(self.model.backend().to_host(&y)?);
                    }
                    let bytes = slot.bytes as isize;
                    self.stats.forward_s += t0.elapsed().as_secs_f64();
                    self.stats.forwards += 1;
                    self.hold(bytes);
                    if let Some(data) = send {
                        let mut msg = StageMsg::new(MsgKind::Forward, i, data);
                        msg.count = m as u32;
                        msg.flag = flag;
                        msg.aux[0] = total_rows as f64;
                        msg.set_targets(&targets);
                        self.link.send(Dir::Next, msg)?;
                    }
                }
                Op::Backward(i) => {
                    let grad = if self.is_last() {
                        slots[i]
                            .grad
                            .take()
                            .ok_or_else(|| protocol("a loss gradient", &StageMsg::new(MsgKind::Backward, i, vec![])))?
                    } else {
                        let msg = self.recv(MsgKind::Backward, Dir::Next, i)?;
                        // The last stage knows the whole pipeline's stop request and the loss.
                        flag = flag.max(msg.flag);
                        if i + 1 == m {
                            out.loss_sum = msg.aux[0];
                            out.correct = msg.aux[1];
                        }
                        let mut dims = vec![msg.data.len() / self.model.output_dims().iter().product::<usize>().max(1)];
                        dims.extend_from_slice(self.model.output_dims());
                        self.model.backend().from_host(msg.data, &dims)?
                    };
                    let t0 = Instant::now();
                    let slot = std::mem::take(&mut slots[i]);
                    let saved = match (slot.saved, slot.input) {
                        (Some(saved), _) => saved,
                        (None, Some(x)) => {
                            let mut ctx = Ctx::new(
                                Mode::Train,
                                self.threads,
                                Rng::derive(cfg.training.seed, "dropout", dropout_seed(i)),
                            );
                            let (_, saved) = self.model.forward(&x, &mut ctx)?;
                            let extra = saved.iter().map(Saved::bytes).sum::<usize>();
                            // The recomputed activations exist until this backward ends.
                            self.hold(extra as isize);
                            self.hold(-(extra as isize));
                            saved
                        }
                        (None, None) => {
                            return Err(protocol("kept activations", &StageMsg::new(MsgKind::Backward, i, vec![])));
                        }
                    };
                    // The previous stage waits for the input gradient, not for this stage's weight
                    // gradients: send it first, then finish the backward.
                    let (input_grad, deferred) = self.model.backward_input_first(saved, grad, self.threads)?;
                    let mut busy = t0.elapsed().as_secs_f64();
                    if !self.is_first() {
                        let g = input_grad.ok_or_else(|| {
                            protocol("an input gradient", &StageMsg::new(MsgKind::Backward, i, vec![]))
                        })?;
                        let mut msg = StageMsg::new(MsgKind::Backward, i, self.model.backend().to_host(&g)?);
                        msg.flag = flag;
                        msg.aux = [out.loss_sum, out.correct];
                        self.link.send(Dir::Prev, msg)?;
                    }
                    let t1 = Instant::now();
                    self.model.finish_backward(deferred, self.threads)?;
                    busy += t1.elapsed().as_secs_f64();
                    self.stats.backward_s += busy;
                    self.stats.backwards += 1;
                    self.hold(-(slot.bytes as isize));
                }
            }
        }
        out.flag = flag;
        Ok(out)
    }

    /// Validation through the pipeline; every stage returns the same sums.
    fn evaluate(&mut self, val: &Dataset) -> Result<[f64; 6]> {
        let rows = distributed::shard_rows(val.rows, self.replica, self.replica_count);
        let chunks: Vec<&[usize]> = rows.chunks(EVAL_BATCH).collect();
        let mut sums = [0f64; 6];
        let input_dims = self.model.input_dims().to_vec();
        let mut ctx = Ctx::new(Mode::Eval, self.threads, Rng::new(0));
        for (i, chunk) in chunks.iter().enumerate() {
            let (x, targets) = if self.is_first() {
                let (x, targets) = val.gather(chunk);
                (self.model.backend().from_host(x, &[chunk.len(), val.features])?, targets)
            } else {
                let mut msg = self.recv(MsgKind::EvalForward, Dir::Prev, i)?;
                let targets = msg.take_targets();
                (to_tensor(self.model.backend().as_ref(), msg.data, &input_dims)?, targets)
            };
            let (y, _) = self.model.forward(&x, &mut ctx)?;
            if self.is_last() {
                eval_sums(self.model.backend().as_ref(), &mut sums, &y, &targets)?;
            } else {
                let mut msg = StageMsg::new(MsgKind::EvalForward, i, self.model.backend().to_host(&y)?);
                msg.set_targets(&targets);
                self.link.send(Dir::Next, msg)?;
            }
        }
        if self.is_last() {
            if let Some(c) = reborrow(&mut self.replicas).filter(|c| c.world_size() > 1) {
                distributed::reduce_sums(&mut sums, c)?;
            }
        } else {
            let msg = self.recv(MsgKind::EvalResult, Dir::Next, 0)?;
            sums = unpack_f64(&msg.data)?;
        }
        if !self.is_first() {
            self.link.send(Dir::Prev, StageMsg::new(MsgKind::EvalResult, 0, pack_f64(&sums)))?;
        }
        Ok(sums)
    }
}

/// f64 values as pairs of f32 bit patterns, for messages that carry f32.
fn pack_f64(values: &[f64]) -> Vec<f32> {
    values
        .iter()
        .flat_map(|v| {
            let bits = v.to_bits();
            [f32::from_bits(bits as u32), f32::from_bits((bits >> 32) as u32)]
        })
        .collect()
}

fn unpack_f64<const N: usize>(data: &[f32]) -> Result<[f64; N]> {
    if data.len() != 2 * N {
        return Err(TrainError::Collective(CollectiveError(format!(
            "pipeline protocol error: expected {N} sums, got {} values",
            data.len() / 2
        ))));
    }
    let mut out = [0f64; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = f64::from_bits(u64::from(data[2 * i].to_bits()) | (u64::from(data[2 * i + 1].to_bits()) << 32));
    }
    Ok(out)
}

/// Unit bounds of every stage: explicit cuts, balanced parameter counts, or balanced measured
/// time. Measured bounds are chosen once (by the first stage of the first replica, or read back
/// from the checkpoint being resumed, so a resumed job keeps its partition) and passed on.
#[allow(clippy::too_many_arguments)]
fn partition(
    cfg: &TrainConfig,
    shape: &DataShape,
    plan: &Plan,
    opts: &RunOptions,
    link: &mut dyn StageLink,
    replicas: Option<&mut dyn Collective>,
    replica: usize,
) -> Result<Vec<usize>> {
    let units = Model::unit_count(&cfg.model);
    let (stage, stages) = (link.stage(), link.stages());
    let bounds = match &cfg.parallel.pipeline.partition {
        Partition::Cuts(c) => std::iter::once(0).chain(c.iter().copied()).chain(std::iter::once(units)).collect(),
        Partition::Params => balance(&unit_params(cfg, shape)?, stages),
        Partition::MeasuredTime => {
            let mut bounds = vec![0f32; stages + 1];
            if stage == 0 {
                if replica == 0 {
                    let chosen = match opts.resume_from.as_deref().and_then(read_bounds) {
                        Some(b) => b,
                        None => {
                            let rows = (plan.batch / cfg.parallel.pipeline.micro_batches).max(1);
                            let times = profile_units(cfg, shape, rows, opts.threads.max(1))?;
                            let chosen = balance(&times, stages);
                            tracing::info!(
                                unit_ms = ?times.iter().map(|t| (t * 1e4).round() / 10.0).collect::<Vec<_>>(),
                                bounds = ?chosen,
                                "balanced the pipeline stages by measured time"
                            );
                            chosen
                        }
                    };
                    bounds = chosen.iter().map(|&b| b as f32).collect();
                }
                if let Some(c) = replicas.filter(|c| c.world_size() > 1) {
                    c.broadcast(&mut bounds, 0)?;
                }
            } else {
                let msg = link.recv(Dir::Prev)?;
                if msg.kind != MsgKind::Partition {
                    return Err(protocol("the partition", &msg));
                }
                bounds = msg.data;
            }
            if stage + 1 < stages {
                link.send(Dir::Next, StageMsg::new(MsgKind::Partition, 0, bounds.clone()))?;
            }
            bounds.iter().map(|&b| b as usize).collect()
        }
    };
    let valid = bounds.len() == stages + 1
        && bounds[0] == 0
        && bounds[stages] == units
        && bounds.windows(2).all(|w| w[0] < w[1]);
    if !valid {
        return Err(TrainError::Shape {
            field: "pipeline".into(),
            reason: format!("stage bounds {bounds:?} do not cut {units} units into {stages} non-empty stages"),
        });
    }
    Ok(bounds)
}

fn read_bounds(dir: &Path) -> Option<Vec<usize>> {
    let text = std::fs::read_to_string(dir.join(PARTITION_FILE)).ok()?;
    text.trim().split(',').map(|v| v.trim().parse().ok()).collect()
}

/// Sums over the steps since the previous report.
#[derive(Default)]
struct Window {
    loss: f64,
    rows: usize,
    correct: f64,
    wait_s: f64,
    comm_s: f64,
    busy_at_start: f64,
    started: Option<Instant>,
}

/// Trains one pipeline stage. On failure the neighbours are told why before this returns.
pub fn train(
    cfg: &TrainConfig,
    data: Splits,
    opts: &RunOptions,
    host: &mut dyn Host,
    peers: PipePeers<'_>,
) -> Result<Outcome> {
    let PipePeers { link, replicas } = peers;
    let result = run(cfg, data, opts, host, &mut *link, replicas);
    if let Err(e) = &result {
        link.abort(&e.to_string());
    }
    result
}

fn run(
    cfg: &TrainConfig,
    data: Splits,
    opts: &RunOptions,
    host: &mut dyn Host,
    link: &mut dyn StageLink,
    mut replicas: Option<&mut dyn Collective>,
) -> Result<Outcome> {
    let threads = opts.threads.max(1);
    let t = &cfg.training;
    let pipe = &cfg.parallel.pipeline;
    let (stage, stages) = (link.stage(), link.stages());
    let (replica, replica_count) = replicas.as_ref().map_or((0, 1), |c| (c.rank(), c.world_size()));
    let rank = replica * stages + stage;
    let shape = data.train.shape();
    let plan = Plan::new(cfg, data.train.rows, replica_count);
    let total_steps = plan.total_steps;
    let classification = data.train.is_classification();

    let bounds = partition(cfg, &shape, &plan, opts, link, reborrow(&mut replicas), replica)?;
    let mut model = Model::build_stage(&cfg.model, &shape, t.seed, bounds[stage]..bounds[stage + 1])?;
    let mut opt = Optimizer::new(cfg.optimizer, total_steps, model.params())?;
    let mut start_step = 0;
    if let Some(dir) = &opts.resume_from {
        let loaded = checkpoint::load(dir)?;
        model.load_named(&loaded.model, dir)?;
        opt.load_state(&loaded.optimizer, loaded.state.step, dir)?;
        start_step = loaded.state.step.min(total_steps);
    }
    let mut buckets = None;
    if let Some(c) = reborrow(&mut replicas).filter(|c| c.world_size() > 1) {
        distributed::broadcast_params(&mut model, c)?;
        buckets = Some(Buckets::new(&model, cfg.parallel.bucket_bytes));
    }
    host.report(Report::Started {
        total_steps,
        steps_per_epoch: plan.micro_per_epoch,
        params: model.param_count(),
        model: format!(
            "stage {}/{stages}, units {}..{} of {bounds:?}: {}",
            stage + 1,
            bounds[stage],
            bounds[stage + 1],
            model.describe()
        ),
        resumed_at: opts.resume_from.as_ref().map(|_| start_step),
    });

    let loader = if stage == 0 {
        Some(Loader::spawn_on(
            Arc::new(data.train),
            BatchPlan {
                batch: plan.batch,
                shuffle: t.shuffle,
                seed: t.seed,
                start_step,
                total_steps: plan.total_micro,
                depth: PREFETCH,
                rank: replica,
                world: replica_count,
            },
            model.backend().clone(),
        )?)
    } else {
        None
    };
    let stats =
        StageStats { stage, stages, bounds: bounds.clone(), micro_batches: pipe.micro_batches, ..Default::default() };
    let mut st = Stage { cfg, link, replicas, model, stage, stages, replica, replica_count, threads, held: 0, stats };
    let save = |st: &Stage, opt: &Optimizer, step: u64, host: &mut dyn Host| -> Result<Option<PathBuf>> {
        let path = save_checkpoint(cfg, opts, &plan, &st.model, opt, step, host, None)?;
        if let Some(p) = &path {
            let text: Vec<String> = bounds.iter().map(ToString::to_string).collect();
            std::fs::write(p.join(PARTITION_FILE), text.join(","))
                .map_err(|e| TrainError::checkpoint(p, format!("cannot record the partition: {e}")))?;
        }
        Ok(path)
    };

    let started = Instant::now();
    let mut steady_start: Option<(Instant, u64)> = None;
    let mut window = Window::default();
    let mut first_loss = None;
    let mut recent = VecDeque::with_capacity(10);
    let mut last_eval: Option<EvalPoint> = None;
    let mut last_checkpoint: Option<PathBuf> = None;
    let mut samples: u64 = 0;

    for step in start_step..total_steps {
        let requested = match host.stop() {
            Some(Stop::Cancel) => distributed::FLAG_CANCEL,
            Some(Stop::Drain) => distributed::FLAG_DRAIN,
            None => 0.0,
        };
        if step == start_step + opts.warmup_steps {
            steady_start = Some((Instant::now(), samples));
            st.stats = StageStats { peak_activation_bytes: st.held, steps: 0, ..stats_identity(&st.stats) };
        }
        let batch = match &loader {
            Some(l) => {
                let wait = Instant::now();
                let b = l.next()?;
                window.started.get_or_insert(wait);
                window.wait_s += wait.elapsed().as_secs_f64();
                Some(b)
            }
            None => {
                window.started.get_or_insert_with(Instant::now);
                None
            }
        };
        let out = st.step(step, batch.as_ref(), requested, pipe.schedule)?;
        let update = Instant::now();
        let mut flag = out.flag;
        if let (Some(b), Some(c)) = (buckets.as_mut(), reborrow(&mut st.replicas)) {
            let t0 = Instant::now();
            flag = b.all_reduce(&mut st.model, c, flag)?;
            window.comm_s += t0.elapsed().as_secs_f64();
        }
        let lr = opt.step(st.model.params_mut())?;
        st.model.zero_grad();
        st.stats.steps += 1;
        st.stats.update_s += update.elapsed().as_secs_f64();

        let mean = out.loss_sum / out.rows.max(1) as f64;
        samples += out.rows as u64;
        first_loss.get_or_insert(mean);
        if recent.len() == 10 {
            recent.pop_front();
        }
        recent.push_back(mean);
        window.loss += out.loss_sum;
        window.rows += out.rows;
        window.correct += out.correct;

        let done = step + 1;
        let epoch = plan.epoch_after(done);
        if done % t.log_every == 0 || done == total_steps {
            let span = window.started.map_or(0.0, |s| s.elapsed().as_secs_f64()).max(1e-9);
            let busy = st.stats.busy_s() - window.busy_at_start;
            host.report(Report::Train(TrainPoint {
                step: done,
                total_steps,
                epoch,
                total_epochs: plan.total_epochs,
                loss: window.loss / window.rows.max(1) as f64,
                accuracy: classification.then(|| window.correct / window.rows.max(1) as f64),
                samples_per_s: window.rows as f64 / span,
                lr,
                elapsed_s: started.elapsed().as_secs_f64(),
                data_wait_share: (window.wait_s / span).min(1.0),
                comm_share: (window.comm_s / span).min(1.0),
                rank,
                extra: vec![
                    ("stage".into(), stage as f64),
                    ("bubble".into(), (1.0 - busy / span).clamp(0.0, 1.0)),
                    ("activation_mb".into(), st.stats.peak_activation_bytes as f64 / (1 << 20) as f64),
                ],
            }));
            window = Window { busy_at_start: st.stats.busy_s(), ..Window::default() };
        }
        if flag >= distributed::FLAG_CANCEL {
            return Ok(Outcome::Cancelled { step: done });
        }
        if flag >= distributed::FLAG_DRAIN {
            let checkpoint = save(&st, &opt, done, host)?;
            return Ok(Outcome::Interrupted { step: done, checkpoint });
        }
        let eval_due = if t.eval_every > 0 { done % t.eval_every == 0 } else { plan.ends_epoch(done) };
        if let Some(val) = data.validation.as_ref().filter(|_| eval_due && done < total_steps) {
            let point = eval_point(&st.evaluate(val)?, val, done, epoch, started);
            if rank == 0 {
                host.report(Report::Validation(point.clone()));
            }
            last_eval = Some(point);
        }
        if t.checkpoint_every > 0 && done % t.checkpoint_every == 0 && done < total_steps {
            last_checkpoint = save(&st, &opt, done, host)?.or(last_checkpoint);
        }
    }
    let steady = steady_start.map(|(t0, s0)| (t0.elapsed().as_secs_f64().max(1e-9), s0));
    st.stats.wall_s = steady.map_or_else(|| started.elapsed().as_secs_f64(), |(e, _)| e);

    let epochs = plan.total_epochs;
    if let Some(val) = data.validation.as_ref() {
        let point = eval_point(&st.evaluate(val)?, val, total_steps, epochs, started);
        if rank == 0 {
            host.report(Report::Validation(point.clone()));
        }
        last_eval = Some(point);
    }
    if total_steps > start_step || last_checkpoint.is_none() {
        last_checkpoint = save(&st, &opt, total_steps, host)?.or(last_checkpoint);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let (steady_samples_per_s, steady_elapsed_s) = match steady {
        Some((e, s0)) => ((samples - s0) as f64 / e, e),
        None => (samples as f64 / elapsed_s.max(1e-9), elapsed_s),
    };
    Ok(Outcome::Completed(Summary {
        steps: total_steps,
        epochs,
        first_loss: first_loss.unwrap_or(f64::NAN),
        last_loss: recent.back().copied().unwrap_or(f64::NAN),
        last10_loss: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        validation: last_eval,
        samples_per_s: samples as f64 / elapsed_s.max(1e-9),
        steady_samples_per_s,
        steady_elapsed_s,
        elapsed_s,
        checkpoint: last_checkpoint,
        pipeline: Some(st.stats.clone()),
    }))
}

/// The identifying fields of `stats`, with the counters cleared.
fn stats_identity(stats: &StageStats) -> StageStats {
    StageStats {
        stage: stats.stage,
        stages: stats.stages,
        bounds: stats.bounds.clone(),
        micro_batches: stats.micro_batches,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(ops: &[Op]) -> usize {
        let mut live = 0usize;
        let mut peak = 0;
        for op in ops {
            match op {
                Op::Forward(_) => live += 1,
                Op::Backward(_) => live -= 1,
            }
            peak = peak.max(live);
        }
        peak
    }

    #[test]
    fn schedules_run_every_micro_batch_once_and_1f1b_bounds_what_is_in_flight() {
        for stages in 1..=4 {
            for m in 1..=9 {
                for stage in 0..stages {
                    for schedule in [PipeSchedule::GPipe, PipeSchedule::OneFOneB] {
                        let ops = schedule_ops(schedule, stage, stages, m);
                        assert_eq!(ops.len(), 2 * m);
                        for i in 0..m {
                            let f = ops.iter().position(|o| *o == Op::Forward(i)).expect("forward");
                            let b = ops.iter().position(|o| *o == Op::Backward(i)).expect("backward");
                            assert!(f < b, "{schedule:?} runs B{i} before F{i}");
                        }
                        let peak = in_flight(&ops);
                        match schedule {
                            PipeSchedule::GPipe => assert_eq!(peak, m),
                            PipeSchedule::OneFOneB => assert_eq!(peak, (stages - stage).min(m), "{stages} {stage} {m}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn balance_minimises_the_costliest_stage() {
        assert_eq!(balance(&[4.0, 2.7, 0.05], 2), vec![0, 1, 3]);
        assert_eq!(balance(&[1.0, 1.0, 1.0, 1.0], 2), vec![0, 2, 4]);
        assert_eq!(balance(&[1.0, 1.0, 1.0, 1.0], 4), vec![0, 1, 2, 3, 4]);
        assert_eq!(balance(&[5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2), vec![0, 1, 6]);
        let b = balance(&[3.0, 1.0, 1.0, 1.0, 3.0], 3);
        assert_eq!(b, vec![0, 1, 4, 5]);
    }

    #[test]
    fn sums_survive_the_f32_wire_format() {
        let v = [1.0 / 3.0, -2.5e300, f64::MIN_POSITIVE, 0.0, 7.0, 1e-12];
        assert_eq!(unpack_f64::<6>(&pack_f64(&v)).expect("unpack"), v);
    }

    #[test]
    fn micro_batches_share_the_rows() {
        assert_eq!(micro_rows(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(micro_rows(512, 4), vec![128; 4]);
    }
}
