//! A pipeline stage as a way of cooperating: it builds only its units, runs its micro-batches'
//! forwards and backwards in the schedule's order (keeping or recomputing activations), sends
//! activations on and their gradients back over its [`StageLink`], and takes one optimizer step
//! per mini-batch, so a pipeline trains the same parameters as one worker on the same batches.
//! With replicas, each stage all-reduces its gradients with the same stage of the others first.
//!
//! Stop requests, the step's loss and the validation sums ride along with the activations and
//! gradients, so every stage stops after the same step and reports the same numbers.

use std::path::Path;
use std::time::Instant;

use crate::backend::Tensor;
use shoal_common::spec::TrainConfig;

use super::partition::{partition, write_bounds};
use super::schedule::{Op, micro_rows, schedule_ops};
use super::wire::{pack_f64, protocol, put_targets, slice_targets, take_targets, to_tensor, unpack_f64};
use crate::collective::Collective;
use crate::data::{Batch, Dataset};
use crate::distributed::{self, Buckets};
use crate::engine::{
    Cooperation, EVAL_BATCH, EvalSums, Placement, Plan, RunOptions, StageStats, Step, StepOut, checked_loss, eval_sums,
};
use crate::error::{Result, TrainError};
use crate::link::{Dir, MsgKind, PipePeers, StageLink, StageMsg};
use crate::model::{DataShape, Model};
use crate::nn::{Ctx, Mode, Saved};
use crate::rng::Rng;

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

/// What a stage's micro-batches produced.
struct StageOut {
    loss_sum: f64,
    correct: f64,
    rows: usize,
    flag: f32,
}

/// One stage of a pipeline (and its replicas).
pub struct Pipeline<'a> {
    link: &'a mut dyn StageLink,
    replicas: Option<&'a mut dyn Collective>,
    stage: usize,
    stages: usize,
    replica: usize,
    replica_count: usize,
    /// Unit bounds of every stage, chosen when the stage is built.
    bounds: Vec<usize>,
    /// Set when there is more than one replica.
    buckets: Option<Buckets>,
    /// Live activation bytes; the peak since the stats window opened is in `stats`.
    held: usize,
    stats: StageStats,
    /// Busy seconds when the current progress window opened.
    busy_at_start: f64,
}

impl<'a> Pipeline<'a> {
    pub fn new(peers: PipePeers<'a>) -> Self {
        let PipePeers { link, replicas } = peers;
        let (stage, stages) = (link.stage(), link.stages());
        let (replica, replica_count) = replicas.as_ref().map_or((0, 1), |c| (c.rank(), c.world_size()));
        Self {
            link,
            replicas,
            stage,
            stages,
            replica,
            replica_count,
            bounds: Vec::new(),
            buckets: None,
            held: 0,
            stats: StageStats::default(),
            busy_at_start: 0.0,
        }
    }

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
    fn run_ops(&mut self, s: &mut Step<'_>, batch: Option<&Batch>) -> Result<StageOut> {
        let (cfg, threads, step, flag) = (s.cfg, s.threads, s.step, s.flag);
        let model = &mut *s.model;
        let schedule = cfg.parallel.pipeline.schedule;
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
        let mut out = StageOut { loss_sum: 0.0, correct: 0.0, rows: total_rows, flag };
        let input_dims = model.input_dims().to_vec();
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
                        Some(b) => (
                            model.backend().rows(&b.x, offsets[i], rows_of[i])?,
                            slice_targets(&b.targets, offsets[i], rows_of[i]),
                        ),
                        None => {
                            let mut msg = match first_msg.take() {
                                Some(msg) => msg,
                                None => self.recv(MsgKind::Forward, Dir::Prev, i)?,
                            };
                            let targets = take_targets(&mut msg);
                            (to_tensor(model.backend().as_ref(), msg.data, &input_dims)?, targets)
                        }
                    };
                    let t0 = Instant::now();
                    let mut ctx =
                        Ctx::new(Mode::Train, threads, Rng::derive(cfg.training.seed, "dropout", dropout_seed(i)));
                    let (y, saved) = model.forward(&x, &mut ctx)?;
                    let loss = match self.is_last() {
                        true => Some(checked_loss(
                            &mut *s.objective,
                            model.backend().as_ref(),
                            &x,
                            &y,
                            &targets,
                            scale,
                            step,
                        )?),
                        false => None,
                    };
                    let slot = &mut slots[i];
                    if recompute {
                        slot.bytes += x.bytes();
                        slot.input = Some(x);
                    } else {
                        slot.bytes += saved.iter().map(Saved::bytes).sum::<usize>();
                        slot.saved = Some(saved);
                    }
                    let mut send = None;
                    match loss {
                        Some(loss) => {
                            out.loss_sum += loss.loss_sum;
                            out.correct += loss.correct as f64;
                            slot.bytes += loss.grad.bytes();
                            slot.grad = Some(loss.grad);
                        }
                        None => send = Some(model.backend().to_host(&y)?),
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
                        put_targets(&mut msg, &targets);
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
                        to_tensor(model.backend().as_ref(), msg.data, model.output_dims())?
                    };
                    let t0 = Instant::now();
                    let slot = std::mem::take(&mut slots[i]);
                    let saved = match (slot.saved, slot.input) {
                        (Some(saved), _) => saved,
                        (None, Some(x)) => {
                            let mut ctx = Ctx::new(
                                Mode::Train,
                                threads,
                                Rng::derive(cfg.training.seed, "dropout", dropout_seed(i)),
                            );
                            let (_, saved) = model.forward(&x, &mut ctx)?;
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
                    let (input_grad, deferred) = model.backward_input_first(saved, grad, threads)?;
                    let mut busy = t0.elapsed().as_secs_f64();
                    if !self.is_first() {
                        let g = input_grad.ok_or_else(|| {
                            protocol("an input gradient", &StageMsg::new(MsgKind::Backward, i, vec![]))
                        })?;
                        let mut msg = StageMsg::new(MsgKind::Backward, i, model.backend().to_host(&g)?);
                        msg.flag = flag;
                        msg.aux = [out.loss_sum, out.correct];
                        self.link.send(Dir::Prev, msg)?;
                    }
                    let t1 = Instant::now();
                    model.finish_backward(deferred, threads)?;
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
    fn evaluate_stage(&mut self, model: &Model, val: &Dataset, threads: usize) -> Result<EvalSums> {
        let rows = distributed::shard_rows(val.rows, self.replica, self.replica_count);
        let chunks: Vec<&[usize]> = rows.chunks(EVAL_BATCH).collect();
        let mut sums = [0f64; 6];
        let input_dims = model.input_dims().to_vec();
        let mut ctx = Ctx::new(Mode::Eval, threads, Rng::new(0));
        for (i, chunk) in chunks.iter().enumerate() {
            let (x, targets) = if self.is_first() {
                let (x, targets) = val.gather(chunk);
                (model.backend().batch_from_host(x, &[chunk.len(), val.features])?, targets)
            } else {
                let mut msg = self.recv(MsgKind::EvalForward, Dir::Prev, i)?;
                let targets = take_targets(&mut msg);
                (to_tensor(model.backend().as_ref(), msg.data, &input_dims)?, targets)
            };
            let (y, _) = model.forward(&x, &mut ctx)?;
            if self.is_last() {
                eval_sums(model.backend().as_ref(), &mut sums, &y, &targets)?;
            } else {
                let mut msg = StageMsg::new(MsgKind::EvalForward, i, model.backend().to_host(&y)?);
                put_targets(&mut msg, &targets);
                self.link.send(Dir::Next, msg)?;
            }
        }
        if self.is_last() {
            if let Some(c) = self.replicas.as_deref_mut().filter(|c| c.world_size() > 1) {
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

impl Cooperation for Pipeline<'_> {
    fn placement(&self) -> Placement {
        Placement {
            rank: self.replica * self.stages + self.stage,
            data_rank: self.replica,
            data_world: self.replica_count,
        }
    }

    fn loads_data(&self) -> bool {
        self.is_first()
    }

    fn build(
        &mut self,
        cfg: &TrainConfig,
        shape: &DataShape,
        plan: &Plan,
        opts: &RunOptions,
    ) -> Result<(Model, String)> {
        // A shorter-lived handle (`as_deref_mut` would keep `replicas` borrowed: `&mut dyn` is
        // invariant in the trait object's lifetime).
        let replicas: Option<&mut dyn Collective> = match &mut self.replicas {
            Some(c) => Some(&mut **c),
            None => None,
        };
        let bounds = partition(cfg, shape, plan, opts, &mut *self.link, replicas, self.replica)?;
        let (stage, stages) = (self.stage, self.stages);
        let units = bounds[stage]..bounds[stage + 1];
        let model = Model::build_stage_on(&cfg.model, shape, cfg.training.seed, units, &opts.backend())?;
        let described = format!(
            "stage {}/{stages}, units {}..{} of {bounds:?}: {}",
            stage + 1,
            bounds[stage],
            bounds[stage + 1],
            model.describe()
        );
        self.stats = StageStats {
            stage,
            stages,
            bounds: bounds.clone(),
            micro_batches: cfg.parallel.pipeline.micro_batches,
            ..Default::default()
        };
        self.bounds = bounds;
        Ok((model, described))
    }

    fn join(&mut self, cfg: &TrainConfig, _: &Plan, model: &mut Model, _: u64, _: &RunOptions) -> Result<()> {
        if let Some(c) = self.replicas.as_deref_mut().filter(|c| c.world_size() > 1) {
            distributed::broadcast_params(model, c)?;
            self.buckets = Some(Buckets::new(model, cfg.parallel.bucket_bytes));
        }
        Ok(())
    }

    fn stops_together(&self) -> bool {
        true
    }

    fn warmed_up(&mut self) {
        self.stats = StageStats {
            stage: self.stats.stage,
            stages: self.stats.stages,
            bounds: self.stats.bounds.clone(),
            micro_batches: self.stats.micro_batches,
            peak_activation_bytes: self.held,
            ..Default::default()
        };
    }

    fn step(&mut self, mut s: Step<'_>) -> Result<StepOut> {
        let batch = s.next_batch()?;
        let out = self.run_ops(&mut s, batch.as_ref())?;
        let update = Instant::now();
        let mut flag = out.flag;
        if let (Some(b), Some(c)) = (self.buckets.as_mut(), self.replicas.as_deref_mut()) {
            let t0 = Instant::now();
            flag = b.all_reduce(s.model, c, flag)?;
            s.window.comm_since(t0);
        }
        let lr = s.opt.step(s.model.params_mut())?;
        s.model.zero_grad();
        self.stats.steps += 1;
        self.stats.update_s += update.elapsed().as_secs_f64();
        s.window.record(out.loss_sum, out.rows, out.correct);
        Ok(StepOut { lr, flag })
    }

    fn evaluate(&mut self, model: &Model, val: &Dataset, threads: usize) -> Result<Option<EvalSums>> {
        Ok(Some(self.evaluate_stage(model, val, threads)?))
    }

    fn save_extra(&mut self, dir: &Path) -> Result<()> {
        write_bounds(dir, &self.bounds)
    }

    fn metrics(&mut self, span_s: f64) -> Vec<(String, f64)> {
        let busy = self.stats.busy_s() - self.busy_at_start;
        self.busy_at_start = self.stats.busy_s();
        vec![
            ("stage".into(), self.stage as f64),
            ("bubble".into(), (1.0 - busy / span_s).clamp(0.0, 1.0)),
            ("activation_mb".into(), self.stats.peak_activation_bytes as f64 / (1 << 20) as f64),
        ]
    }

    fn finish(&mut self, _model: &mut Model, wall_s: f64) -> Result<()> {
        self.stats.wall_s = wall_s;
        Ok(())
    }

    fn stage_stats(&self) -> Option<StageStats> {
        Some(self.stats.clone())
    }

    fn abort(&mut self, error: &TrainError) {
        self.link.abort(&error.to_string());
    }
}
