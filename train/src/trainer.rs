//! The step loop: batches from the prefetching loader, forward, loss, backward, optimizer step;
//! progress reports every `log_every` steps, validation, checkpoints, and a check for cancellation
//! or a drain request between steps. It runs on the caller's thread (a dedicated one in the worker).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use shoal_common::spec::{Duration, TrainConfig};

use crate::checkpoint::{self, CheckpointState};
use crate::collective::{Collective, ParamStore, Peers};
use crate::data::{BatchPlan, Dataset, Loader, Splits, TargetData, steps_per_epoch};
use crate::distributed::{self, Buckets};
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::nn::loss::{Targets, loss_and_grad};
use crate::nn::{Ctx, Mode};
use crate::optim::Optimizer;
use crate::rng::Rng;

/// Rows per forward pass during validation.
pub(crate) const EVAL_BATCH: usize = 1024;
/// Batches the loader prepares ahead of the step loop.
const PREFETCH: usize = 4;

/// Why the host wants the loop to stop early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Stop now; the job was cancelled.
    Cancel,
    /// Finish the step, checkpoint, stop; the job will resume elsewhere.
    Drain,
}

/// Training progress since the previous report.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainPoint {
    /// Steps completed.
    pub step: u64,
    pub total_steps: u64,
    /// 1-based epoch the last step belonged to.
    pub epoch: u64,
    pub total_epochs: u64,
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub samples_per_s: f64,
    pub lr: f64,
    pub elapsed_s: f64,
    /// Share of the window the step loop spent waiting for data.
    pub data_wait_share: f64,
    /// Share of the window spent in collectives with other ranks.
    pub comm_share: f64,
    /// The data-parallel rank reporting.
    pub rank: usize,
    /// Further measurements (parameter-server pushes/s, staleness, ...).
    pub extra: Vec<(String, f64)>,
}

/// A validation result.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalPoint {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub accuracy: Option<f64>,
    /// Coefficient of determination (regression only).
    pub r2: Option<f64>,
    pub elapsed_s: f64,
}

/// What the loop tells its host.
#[derive(Clone, Debug)]
pub enum Report {
    Started { total_steps: u64, steps_per_epoch: u64, params: usize, model: String, resumed_at: Option<u64> },
    Train(TrainPoint),
    Validation(EvalPoint),
    Checkpoint { step: u64, path: PathBuf },
}

/// The loop's view of whoever runs it.
pub trait Host {
    fn report(&mut self, report: Report);
    /// Polled between steps.
    fn stop(&self) -> Option<Stop>;
}

/// How to run a job.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Where this job's checkpoints go; `None` disables them.
    pub checkpoint_dir: Option<PathBuf>,
    /// A checkpoint directory to resume from.
    pub resume_from: Option<PathBuf>,
    /// Matmul threads.
    pub threads: usize,
    /// The spec as TOML, saved with checkpoints.
    pub spec_toml: String,
    /// Checkpoints to keep.
    pub keep_checkpoints: usize,
    /// Steps excluded from the steady-state throughput in the summary.
    pub warmup_steps: u64,
}

/// How a finished run went.
#[derive(Clone, Debug)]
pub struct Summary {
    pub steps: u64,
    pub epochs: u64,
    pub first_loss: f64,
    pub last_loss: f64,
    /// Mean training loss of the last 10 steps.
    pub last10_loss: f64,
    pub validation: Option<EvalPoint>,
    /// Samples per second over the whole run.
    pub samples_per_s: f64,
    /// Samples per second after `warmup_steps`.
    pub steady_samples_per_s: f64,
    pub steady_elapsed_s: f64,
    pub elapsed_s: f64,
    pub checkpoint: Option<PathBuf>,
    /// How a pipeline stage spent the steps after `warmup_steps`.
    pub pipeline: Option<crate::pipeline::StageStats>,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Completed(Summary),
    Cancelled { step: u64 },
    Interrupted { step: u64, checkpoint: Option<PathBuf> },
}

/// Sums over the steps since the previous report.
#[derive(Default)]
struct Window {
    loss: f64,
    rows: usize,
    correct: usize,
    wait_s: f64,
    comm_s: f64,
    started: Option<Instant>,
}

/// Step counts of a run, in micro-batches and optimizer steps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub batch: usize,
    pub accumulate: u64,
    pub micro_per_epoch: u64,
    pub total_micro: u64,
    pub total_steps: u64,
    pub total_epochs: u64,
}

impl Plan {
    pub(crate) fn new(cfg: &TrainConfig, train_rows: usize, world: usize) -> Self {
        let t = &cfg.training;
        let shard = train_rows.div_ceil(world.max(1));
        let batch = t.batch_size.min(shard).max(1);
        let accumulate = t.accumulate_steps.max(1) as u64;
        let micro_per_epoch = steps_per_epoch(shard, batch);
        let total_micro = match t.duration {
            Duration::Epochs(e) => e * micro_per_epoch,
            Duration::Steps(s) => s * accumulate,
        };
        Self {
            batch,
            accumulate,
            micro_per_epoch,
            total_micro,
            total_steps: total_micro.div_ceil(accumulate),
            total_epochs: total_micro.div_ceil(micro_per_epoch),
        }
    }

    /// 1-based epoch of the last micro-batch of optimizer step `done` (1-based).
    pub(crate) fn epoch_after(&self, done: u64) -> u64 {
        ((done * self.accumulate).min(self.total_micro) - 1) / self.micro_per_epoch + 1
    }

    pub(crate) fn ends_epoch(&self, done: u64) -> bool {
        let micro = (done * self.accumulate).min(self.total_micro);
        let before = ((done - 1) * self.accumulate).min(self.total_micro);
        micro / self.micro_per_epoch != before / self.micro_per_epoch || micro == self.total_micro
    }
}

/// A shorter-lived handle on an optional trait object (a plain `as_deref_mut` would keep it
/// borrowed for the whole loop: `&mut dyn Trait` is invariant in the trait object's lifetime).
pub(crate) fn reborrow<'a>(c: &'a mut Option<&mut dyn Collective>) -> Option<&'a mut dyn Collective> {
    match c {
        Some(c) => Some(&mut **c),
        None => None,
    }
}

fn reborrow_store<'a>(s: &'a mut Option<&mut dyn ParamStore>) -> Option<&'a mut dyn ParamStore> {
    match s {
        Some(s) => Some(&mut **s),
        None => None,
    }
}

/// Writes a checkpoint (rank 0 only: the others have no checkpoint directory). With parameter
/// servers, every shard saves its state into the same directory.
#[allow(clippy::too_many_arguments)]
pub(crate) fn save_checkpoint(
    cfg: &TrainConfig,
    opts: &RunOptions,
    plan: &Plan,
    model: &Model,
    opt: &Optimizer,
    step: u64,
    host: &mut dyn Host,
    store: Option<&mut dyn ParamStore>,
) -> Result<Option<PathBuf>> {
    let Some(root) = &opts.checkpoint_dir else { return Ok(None) };
    let state = CheckpointState::new(step, plan.epoch_after(step.max(1)), &cfg.name);
    let path = checkpoint::save(
        root,
        &state,
        &model.named_tensors(),
        &opt.named_state()?,
        &opts.spec_toml,
        opts.keep_checkpoints.max(1),
    )?;
    if let Some(s) = store {
        s.save(&path)?;
    }
    host.report(Report::Checkpoint { step, path: path.clone() });
    Ok(Some(path))
}

/// Trains `cfg` on already loaded data. With peers this runs one data-parallel rank on its shard
/// of the data: gradients are summed across ranks every step (all-reduce), or pushed to parameter
/// servers that apply the optimizer and serve the parameters back.
pub fn train(
    cfg: &TrainConfig,
    data: Splits,
    opts: &RunOptions,
    host: &mut dyn Host,
    peers: Peers<'_>,
) -> Result<Outcome> {
    let threads = opts.threads.max(1);
    let t = &cfg.training;
    let (mut collective, mut store): (Option<&mut dyn Collective>, Option<&mut dyn ParamStore>) = match peers {
        Peers::Pipeline(p) => return crate::pipeline::train(cfg, data, opts, host, p),
        Peers::Alone => (None, None),
        Peers::AllReduce(c) => (Some(c), None),
        Peers::ParamServer(s) => (None, Some(s)),
    };
    let (rank, world) = match (&collective, &store) {
        (Some(c), _) => (c.rank(), c.world_size()),
        (_, Some(s)) => (s.rank(), s.world_size()),
        _ => (0, 1),
    };
    let plan = Plan::new(cfg, data.train.rows, world);
    let classification = data.train.is_classification();
    let total_steps = plan.total_steps;

    let mut model = Model::build(&cfg.model, &data.train.shape(), t.seed)?;
    let mut opt = Optimizer::new(cfg.optimizer, total_steps, model.params())?;
    let mut start_step = 0;
    let mut described = model.describe();
    if let (Some(inherit), None) = (&cfg.inherit, &opts.resume_from) {
        described = format!("{described}; {}", inherit_weights(&mut model, cfg, inherit, &data.train.shape())?);
    }
    if let Some(dir) = &opts.resume_from {
        let loaded = checkpoint::load(dir)?;
        model.load_named(&loaded.model, dir)?;
        opt.load_state(&loaded.optimizer, loaded.state.step, dir)?;
        start_step = loaded.state.step.min(total_steps);
    }
    let mut buckets = None;
    if let Some(c) = reborrow(&mut collective).filter(|c| c.world_size() > 1) {
        distributed::broadcast_params(&mut model, c)?;
        buckets = Some(Buckets::new(&model, cfg.parallel.bucket_bytes));
    }
    // With parameter servers the servers own the parameters: rank 0 seeds them, everyone pulls.
    let mut flat = Vec::new();
    if let Some(s) = reborrow_store(&mut store) {
        flat = distributed::flat_params(&model)?;
        if rank == 0 {
            s.init(&flat, total_steps, opts.resume_from.as_deref())?;
        }
        s.pull(start_step, &mut flat)?;
        distributed::set_flat_params(&mut model, &flat)?;
    }
    host.report(Report::Started {
        total_steps,
        steps_per_epoch: plan.micro_per_epoch.div_ceil(plan.accumulate),
        params: model.param_count(),
        model: described,
        resumed_at: opts.resume_from.as_ref().map(|_| start_step),
    });

    let train_data = Arc::new(data.train);
    let loader = Loader::spawn_on(
        train_data,
        BatchPlan {
            batch: plan.batch,
            shuffle: t.shuffle,
            seed: t.seed,
            start_step: start_step * plan.accumulate,
            total_steps: plan.total_micro,
            depth: PREFETCH,
            rank,
            world,
        },
        model.backend().clone(),
    )?;
    let started = Instant::now();
    let mut steady_start: Option<(Instant, u64)> = None;
    let mut window = Window::default();
    let mut first_loss = None;
    let mut recent = std::collections::VecDeque::with_capacity(10);
    let mut last_eval: Option<EvalPoint> = None;
    let mut last_checkpoint: Option<PathBuf> = None;
    let mut samples: u64 = 0;

    for step in start_step..total_steps {
        // Alone (or with parameter servers), stop between steps. With all-reduce peers the request
        // rides along with this step's gradients so that every rank stops after the same step.
        let requested = host.stop();
        let mut flag = 0.0;
        match (requested, &buckets) {
            (Some(Stop::Cancel), None) => return Ok(Outcome::Cancelled { step }),
            (Some(Stop::Drain), None) => {
                let checkpoint = if step > start_step || opts.resume_from.is_none() {
                    save_checkpoint(cfg, opts, &plan, &model, &opt, step, host, reborrow_store(&mut store))?
                } else {
                    opts.resume_from.clone()
                };
                return Ok(Outcome::Interrupted { step, checkpoint });
            }
            (Some(Stop::Cancel), Some(_)) => flag = distributed::FLAG_CANCEL,
            (Some(Stop::Drain), Some(_)) => flag = distributed::FLAG_DRAIN,
            (None, _) => {}
        }
        if step == start_step + opts.warmup_steps {
            steady_start = Some((Instant::now(), samples));
        }
        let micro = distributed::micro_range(step, plan.accumulate, plan.total_micro);
        // All-reduce sums the ranks' gradients, so each rank scales its share by 1/world;
        // parameter servers average (sync) or apply each push (async) themselves.
        let ranks_summed = if buckets.is_some() { world as f32 } else { 1.0 };
        let scale_div = (micro.end - micro.start) as f32 * ranks_summed;
        let mut step_loss = 0.0;
        let mut step_rows = 0;
        for _ in micro {
            let wait = Instant::now();
            let b = loader.next()?;
            window.started.get_or_insert(wait);
            window.wait_s += wait.elapsed().as_secs_f64();

            let mut ctx =
                Ctx::new(Mode::Train, threads, Rng::derive(t.seed, "dropout", b.step * world as u64 + rank as u64));
            let (out, saved) = model.forward(&b.x, &mut ctx)?;
            let rows = b.rows();
            let loss = loss_and_grad(model.backend().as_ref(), &out, &b.targets, 1.0 / (rows as f32 * scale_div))?;
            if !loss.mean().is_finite() {
                return Err(TrainError::Diverged { step: step + 1, loss: loss.mean() });
            }
            model.backward(saved, loss.grad, threads)?;
            step_loss += loss.loss_sum;
            step_rows += rows;
            window.loss += loss.loss_sum;
            window.rows += rows;
            window.correct += loss.correct;
        }
        let mut global_flag = 0.0;
        let lr = if let Some(s) = reborrow_store(&mut store) {
            let t0 = Instant::now();
            let grads = distributed::flat_grads(&model)?;
            if s.overlaps() {
                // Push this step and pull the next parameters in the background while the next
                // step computes on the parameters of the previous exchange.
                s.start_exchange(step, grads)?;
                if s.finish_exchange(&mut flat, 1)? {
                    distributed::set_flat_params(&mut model, &flat)?;
                }
            } else {
                s.push(step, &grads)?;
                s.pull(step + 1, &mut flat)?;
                distributed::set_flat_params(&mut model, &flat)?;
            }
            window.comm_s += t0.elapsed().as_secs_f64();
            model.zero_grad();
            opt.skip()
        } else {
            if let (Some(b), Some(c)) = (buckets.as_mut(), reborrow(&mut collective)) {
                let t0 = Instant::now();
                global_flag = b.all_reduce(&mut model, c, flag)?;
                window.comm_s += t0.elapsed().as_secs_f64();
            }
            let lr = opt.step(model.params_mut())?;
            model.zero_grad();
            lr
        };

        let mean = step_loss / step_rows.max(1) as f64;
        samples += step_rows as u64;
        first_loss.get_or_insert(mean);
        if recent.len() == 10 {
            recent.pop_front();
        }
        recent.push_back(mean);

        let done = step + 1;
        let epoch = plan.epoch_after(done);
        if let Some(c) = reborrow(&mut collective).filter(|_| buckets.is_some()) {
            if cfg.parallel.checksum_every > 0 && done % cfg.parallel.checksum_every == 0 {
                let t0 = Instant::now();
                distributed::verify_in_step(&model, c, done)?;
                window.comm_s += t0.elapsed().as_secs_f64();
            }
        }
        if done % t.log_every == 0 || done == total_steps {
            let span = window.started.map_or(0.0, |s| s.elapsed().as_secs_f64()).max(1e-9);
            let extra = reborrow_store(&mut store).map(|s| s.take_metrics()).unwrap_or_default();
            host.report(Report::Train(TrainPoint {
                step: done,
                total_steps,
                epoch,
                total_epochs: plan.total_epochs,
                loss: window.loss / window.rows.max(1) as f64,
                accuracy: classification.then(|| window.correct as f64 / window.rows.max(1) as f64),
                samples_per_s: window.rows as f64 / span,
                lr,
                elapsed_s: started.elapsed().as_secs_f64(),
                data_wait_share: (window.wait_s / span).min(1.0),
                comm_share: (window.comm_s / span).min(1.0),
                rank,
                extra,
            }));
            window = Window::default();
        }
        if global_flag >= distributed::FLAG_CANCEL {
            return Ok(Outcome::Cancelled { step: done });
        }
        if global_flag >= distributed::FLAG_DRAIN {
            let checkpoint = save_checkpoint(cfg, opts, &plan, &model, &opt, done, host, None)?;
            return Ok(Outcome::Interrupted { step: done, checkpoint });
        }
        // With parameter servers only rank 0 evaluates (there is no collective to combine shards).
        let evaluates = store.is_none() || rank == 0;
        let eval_due = if t.eval_every > 0 { done % t.eval_every == 0 } else { plan.ends_epoch(done) };
        if let Some(val) = data.validation.as_ref().filter(|_| eval_due && done < total_steps && evaluates) {
            let point = evaluate(&model, val, threads, done, epoch, started, reborrow(&mut collective))?;
            if rank == 0 {
                host.report(Report::Validation(point.clone()));
            }
            last_eval = Some(point);
        }
        if t.checkpoint_every > 0 && done % t.checkpoint_every == 0 && done < total_steps {
            last_checkpoint = save_checkpoint(cfg, opts, &plan, &model, &opt, done, host, reborrow_store(&mut store))?
                .or(last_checkpoint);
        }
    }

    if let Some(s) = reborrow_store(&mut store) {
        // Land the exchanges still in flight, then take the servers' final parameters.
        if s.overlaps() {
            s.finish_exchange(&mut flat, 0)?;
        }
        s.pull(total_steps, &mut flat)?;
        distributed::set_flat_params(&mut model, &flat)?;
    }
    let epochs = plan.total_epochs;
    if let Some(val) = data.validation.as_ref().filter(|_| store.is_none() || rank == 0) {
        let point = evaluate(&model, val, threads, total_steps, epochs, started, reborrow(&mut collective))?;
        if rank == 0 {
            host.report(Report::Validation(point.clone()));
        }
        last_eval = Some(point);
    }
    if total_steps > start_step || last_checkpoint.is_none() {
        last_checkpoint =
            save_checkpoint(cfg, opts, &plan, &model, &opt, total_steps, host, reborrow_store(&mut store))?
                .or(last_checkpoint);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let (steady_samples_per_s, steady_elapsed_s) = match steady_start {
        Some((t0, s0)) => {
            let e = t0.elapsed().as_secs_f64().max(1e-9);
            ((samples - s0) as f64 / e, e)
        }
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
        pipeline: None,
    }))
}

/// Loss and accuracy (or R²) of the model over a dataset, without gradients. With peers, each
/// Loads a parent's checkpoint into `model` through function-preserving morphs. Returns what was
/// done, for the job's log.
fn inherit_weights(
    model: &mut Model,
    cfg: &TrainConfig,
    inherit: &shoal_common::spec::InheritConfig,
    shape: &crate::model::DataShape,
) -> Result<String> {
    let dir = if inherit.checkpoint.join("model.safetensors").exists() {
        inherit.checkpoint.clone()
    } else {
        checkpoint::latest(&inherit.checkpoint).unwrap_or_else(|| inherit.checkpoint.clone())
    };
    let parent = checkpoint::load(&dir)?;
    let (params, morphs) = crate::morph::inherit(&inherit.model, &parent.model, &cfg.model, shape, cfg.training.seed)?;
    model.load_named(&params, &dir)?;
    Ok(format!("inherited from {} ({morphs})", dir.display()))
}

/// rank evaluates a strided shard and the sums are combined, so all ranks get the same result.
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    threads: usize,
    step: u64,
    epoch: u64,
    started: Instant,
    collective: Option<&mut dyn Collective>,
) -> Result<EvalPoint> {
    let (rank, world) = collective.as_ref().map_or((0, 1), |c| (c.rank(), c.world_size()));
    let rows = distributed::shard_rows(data.rows, rank, world);
    // [loss, correct, rows, squared error, sum of targets, sum of squared targets]
    let mut sums = [0f64; 6];
    let mut ctx = Ctx::new(Mode::Eval, threads, Rng::new(0));
    for chunk in rows.chunks(EVAL_BATCH) {
        let (x, targets) = data.gather(chunk);
        let x = model.backend().from_host(x, &[chunk.len(), data.features])?;
        let (out, _) = model.forward(&x, &mut ctx)?;
        eval_sums(model.backend().as_ref(), &mut sums, &out, &targets)?;
    }
    if let Some(c) = collective.filter(|c| c.world_size() > 1) {
        distributed::reduce_sums(&mut sums, c)?;
    }
    Ok(eval_point(&sums, data, step, epoch, started))
}

/// Evaluation sums of one chunk of rows: [loss, correct, rows, squared error, Σ targets, Σ targets²].
pub(crate) fn eval_sums(
    backend: &dyn crate::backend::Backend,
    sums: &mut [f64; 6],
    out: &candle_core::Tensor,
    targets: &Targets,
) -> Result<()> {
    let l = loss_and_grad(backend, out, targets, 1.0)?;
    sums[0] += l.loss_sum;
    sums[1] += l.correct as f64;
    sums[2] += targets.rows() as f64;
    if let Targets::Values { values, width } = targets {
        sums[3] += l.loss_sum * *width as f64;
        sums[4] += values.iter().map(|&v| f64::from(v)).sum::<f64>();
        sums[5] += values.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
    }
    Ok(())
}

/// The validation result from summed [`eval_sums`].
pub(crate) fn eval_point(sums: &[f64; 6], data: &Dataset, step: u64, epoch: u64, started: Instant) -> EvalPoint {
    let n = sums[2].max(1.0);
    let (accuracy, r2) = match &data.targets {
        TargetData::Classes { .. } => (Some(sums[1] / n), None),
        TargetData::Values { width, .. } => {
            let count = n * *width as f64;
            let total = sums[5] - sums[4] * sums[4] / count;
            (None, Some(if total > 0.0 { 1.0 - sums[3] / total } else { 0.0 }))
        }
    };
    EvalPoint { step, epoch, loss: sums[0] / n, accuracy, r2, elapsed_s: started.elapsed().as_secs_f64() }
}

#[cfg(test)]
mod tests {
    use shoal_common::spec::load_toml;

    use super::*;
    use crate::data;

    struct Recorder {
        reports: Vec<Report>,
        stop_after: Option<(u64, Stop)>,
        steps_seen: std::cell::Cell<u64>,
    }

    impl Recorder {
        fn new() -> Self {
            Self { reports: Vec::new(), stop_after: None, steps_seen: std::cell::Cell::new(0) }
        }
    }

    impl Host for Recorder {
        fn report(&mut self, report: Report) {
            if let Report::Train(p) = &report {
                self.steps_seen.set(p.step);
            }
            self.reports.push(report);
        }

        fn stop(&self) -> Option<Stop> {
            self.stop_after.and_then(|(at, s)| (self.steps_seen.get() >= at).then_some(s))
        }
    }

    fn config(extra: &str) -> TrainConfig {
        let text = format!(
            r#"
            name = "unit"
            [model]
            kind = "mlp"
            layers = [{{ width = 32 }}]
            [dataset]
            kind = "synthetic_classification"
            samples = 1200
            features = 10
            classes = 3
            validation_split = 0.25
            [optimizer]
            kind = "sgd"
            lr = 0.1
            momentum = 0.9
            [training]
            batch_size = 32
            seed = 5
            log_every = 5
            {extra}
            "#
        );
        load_toml(&text).expect("valid spec").1
    }

    #[test]
    fn loss_falls_on_a_learnable_task() {
        let cfg = config("epochs = 6");
        let splits = data::load(&cfg.dataset).expect("data");
        let mut host = Recorder::new();
        let outcome = train(&cfg, splits, &RunOptions { threads: 1, ..Default::default() }, &mut host, Peers::Alone)
            .expect("train");
        let Outcome::Completed(s) = outcome else { panic!("not completed: {outcome:?}") };
        assert_eq!(s.steps, 6 * 29);
        assert!(s.last10_loss < 0.5 * s.first_loss, "loss {} -> {}", s.first_loss, s.last10_loss);
        let val = s.validation.expect("validation");
        assert!(val.accuracy.expect("accuracy") > 0.8, "{val:?}");
        let trains = host.reports.iter().filter(|r| matches!(r, Report::Train(_))).count();
        assert_eq!(trains, (6 * 29) / 5 + 1);
        let evals = host.reports.iter().filter(|r| matches!(r, Report::Validation(_))).count();
        assert_eq!(evals, 6, "one validation per epoch end");
    }

    #[test]
    fn a_drained_run_resumes_to_the_same_parameters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config("steps = 40\ncheckpoint_every = 15");
        let opts = |sub: &str, resume: Option<PathBuf>| RunOptions {
            checkpoint_dir: Some(dir.path().join(sub)),
            resume_from: resume,
            threads: 1,
            spec_toml: String::new(),
            keep_checkpoints: 3,
            warmup_steps: 0,
        };
        let straight =
            train(&cfg, data::load(&cfg.dataset).expect("data"), &opts("a", None), &mut Recorder::new(), Peers::Alone)
                .expect("train");
        let Outcome::Completed(straight) = straight else { panic!("not completed") };

        let mut host = Recorder::new();
        host.stop_after = Some((20, Stop::Drain));
        let first = train(&cfg, data::load(&cfg.dataset).expect("data"), &opts("b", None), &mut host, Peers::Alone)
            .expect("train");
        let Outcome::Interrupted { step, checkpoint } = first else { panic!("not interrupted: {first:?}") };
        assert_eq!(step, 20);
        let resumed = train(
            &cfg,
            data::load(&cfg.dataset).expect("data"),
            &opts("b", checkpoint),
            &mut Recorder::new(),
            Peers::Alone,
        )
        .expect("resume");
        let Outcome::Completed(resumed) = resumed else { panic!("not completed") };

        let a = checkpoint::load(&straight.checkpoint.expect("ckpt")).expect("load");
        let b = checkpoint::load(&resumed.checkpoint.expect("ckpt")).expect("load");
        assert_eq!(a.state.step, 40);
        for (name, t) in &a.model {
            let u = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("vec");
            let v = b.model[name].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("vec");
            assert_eq!(u, v, "{name} differs after resuming");
        }
    }

    #[test]
    fn cancellation_stops_between_steps() {
        let cfg = config("steps = 1000");
        let mut host = Recorder::new();
        host.stop_after = Some((10, Stop::Cancel));
        let outcome = train(
            &cfg,
            data::load(&cfg.dataset).expect("data"),
            &RunOptions { threads: 1, ..Default::default() },
            &mut host,
            Peers::Alone,
        )
        .expect("train");
        assert!(matches!(outcome, Outcome::Cancelled { step: 10 }), "{outcome:?}");
    }

    #[test]
    fn regression_reports_r2() {
        let text = r#"
            name = "reg"
            [model]
            kind = "mlp"
            layers = [{ width = 16, activation = "tanh" }]
            [dataset]
            kind = "synthetic_regression"
            samples = 800
            features = 5
            noise = 0.05
            [optimizer]
            kind = "adamw"
            lr = 0.01
            [training]
            batch_size = 32
            epochs = 15
        "#;
        let cfg = load_toml(text).expect("valid").1;
        let outcome = train(
            &cfg,
            data::load(&cfg.dataset).expect("data"),
            &RunOptions { threads: 1, ..Default::default() },
            &mut Recorder::new(),
            Peers::Alone,
        )
        .expect("train");
        let Outcome::Completed(s) = outcome else { panic!("not completed") };
        let val = s.validation.expect("validation");
        assert!(val.accuracy.is_none());
        assert!(val.r2.expect("r2") > 0.9, "{val:?}");
    }
}
