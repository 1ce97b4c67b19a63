//! The step loop, written once for every way of cooperating: resume, the data loader, progress
//! reports, cancel and drain, evaluation and checkpoint schedules, and the final summary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use shoal_analysis::reduce::Pipeline;
use shoal_common::spec::TrainConfig;

use super::cooperation::{Cooperation, Step};
use super::eval::eval_point;
use super::objective::Objective;
use super::plan::Plan;
use super::progress::{Totals, Window};
use super::report::{EvalPoint, Host, Outcome, Report, RunOptions, Stop, Summary, TrainPoint};
use crate::checkpoint::{self, CheckpointState};
use crate::data::{BatchPlan, Dataset, Loader, Splits};
use crate::distributed;
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::optim::Optimizer;

/// Trains `cfg` on already loaded data, cooperating with other ranks through `coop` and taking
/// each micro-batch's loss from `objective`. On failure `coop` is told why before this returns.
pub fn run(
    cfg: &TrainConfig,
    data: Splits,
    opts: &RunOptions,
    host: &mut dyn Host,
    coop: &mut dyn Cooperation,
    objective: &mut dyn Objective,
) -> Result<Outcome> {
    let result = Run::start(cfg, &data, opts, host, coop).and_then(|run| run.steps(data, host, coop, objective));
    if let Err(e) = &result {
        coop.abort(e);
    }
    result
}

/// A run between set-up and the summary.
struct Run<'a> {
    cfg: &'a TrainConfig,
    opts: &'a RunOptions,
    plan: Plan,
    model: Model,
    opt: Optimizer,
    /// The feature transforms the data went through, saved with every checkpoint.
    transforms: Option<Pipeline>,
    rank: usize,
    start_step: u64,
    started: Instant,
}

impl<'a> Run<'a> {
    /// Builds the model, resumes it, lines it up with the other ranks and reports the start.
    fn start(
        cfg: &'a TrainConfig,
        data: &Splits,
        opts: &'a RunOptions,
        host: &mut dyn Host,
        coop: &mut dyn Cooperation,
    ) -> Result<Self> {
        let place = coop.placement();
        let train = &data.train;
        let plan = Plan::new(cfg, train.rows, place.data_world);
        let (mut model, described) = coop.build(cfg, &train.shape(), &plan, opts)?;
        let mut opt = Optimizer::new(cfg.optimizer, plan.total_steps, model.params())?;
        let mut start_step = 0;
        if let Some(dir) = &opts.resume_from {
            let loaded = checkpoint::load(dir)?;
            // The weights were trained on the saved transforms' outputs: data prepared otherwise
            // (loaded with `data::load` where `data::load_continuing` was due, or refitted on
            // other rows) would go on training them on different features.
            if loaded.transforms != data.transforms {
                return Err(TrainError::checkpoint(
                    dir,
                    "its saved transforms are not the ones the data went through: a resumed run must \
                     apply the checkpoint's transforms, not fit others",
                ));
            }
            model.load_named(&loaded.model, dir)?;
            opt.load_state(&loaded.optimizer, loaded.state.step, dir)?;
            start_step = loaded.state.step.min(plan.total_steps);
        }
        coop.join(cfg, &plan, &mut model, start_step, opts)?;
        host.report(Report::Started {
            total_steps: plan.total_steps,
            steps_per_epoch: plan.micro_per_epoch.div_ceil(plan.accumulate),
            params: model.param_count(),
            model: described,
            resumed_at: opts.resume_from.as_ref().map(|_| start_step),
        });
        Ok(Self {
            cfg,
            opts,
            plan,
            model,
            opt,
            transforms: data.transforms.clone(),
            rank: place.rank,
            start_step,
            started: Instant::now(),
        })
    }

    /// Takes the steps, then evaluates, checkpoints and sums up.
    fn steps(
        mut self,
        data: Splits,
        host: &mut dyn Host,
        coop: &mut dyn Cooperation,
        objective: &mut dyn Objective,
    ) -> Result<Outcome> {
        let (cfg, opts, plan) = (self.cfg, self.opts, self.plan);
        let t = &cfg.training;
        let threads = opts.threads.max(1);
        let total_steps = plan.total_steps;
        let classification = data.train.is_classification();
        let validation = data.validation;
        let place = coop.placement();
        let loader = if coop.loads_data() {
            Some(Loader::spawn_on(
                Arc::new(data.train),
                BatchPlan {
                    batch: plan.batch,
                    shuffle: t.shuffle,
                    seed: t.seed,
                    start_step: self.start_step * plan.accumulate,
                    total_steps: plan.total_micro,
                    depth: cfg.dataset.prefetch,
                    threads: cfg.dataset.loader_threads,
                    rank: place.data_rank,
                    world: place.data_world,
                },
                self.model.backend().clone(),
            )?)
        } else {
            None
        };
        self.started = Instant::now();
        let mut totals = Totals::new();
        let mut window = Window::default();
        let mut last_eval: Option<EvalPoint> = None;
        let mut last_checkpoint: Option<PathBuf> = None;

        for step in self.start_step..total_steps {
            // Strategies that stop together carry the request with this step's exchange, so that
            // every rank stops after the same step; the others stop here, between steps.
            let requested = host.stop();
            let mut flag = 0.0;
            match requested {
                Some(Stop::Cancel) if coop.stops_together() => flag = distributed::FLAG_CANCEL,
                Some(Stop::Drain) if coop.stops_together() => flag = distributed::FLAG_DRAIN,
                Some(Stop::Cancel) => return Ok(Outcome::Cancelled { step }),
                Some(Stop::Drain) => {
                    let checkpoint = if step > self.start_step || opts.resume_from.is_none() {
                        self.save(step, host, coop)?
                    } else {
                        opts.resume_from.clone()
                    };
                    return Ok(Outcome::Interrupted { step, checkpoint });
                }
                None => {}
            }
            if step == self.start_step + opts.warmup_steps {
                totals.warmed_up();
                coop.warmed_up();
            }
            objective.constrain(&mut self.model, step)?;
            let out = coop.step(Step {
                step,
                flag,
                cfg,
                plan: &plan,
                threads,
                model: &mut self.model,
                opt: &mut self.opt,
                objective: &mut *objective,
                window: &mut window,
                loader: loader.as_ref(),
            })?;
            let (step_loss, step_rows) = window.take_step();
            totals.add_step(step_loss, step_rows);

            let done = step + 1;
            let epoch = plan.epoch_after(done);
            if done % t.log_every == 0 || done == total_steps {
                let span = window.span_s();
                let extra = coop.metrics(span);
                host.report(Report::Train(TrainPoint {
                    step: done,
                    total_steps,
                    epoch,
                    total_epochs: plan.total_epochs,
                    loss: window.loss / window.rows.max(1) as f64,
                    accuracy: classification.then(|| window.correct / window.rows.max(1) as f64),
                    samples_per_s: window.rows as f64 / span,
                    lr: out.lr,
                    elapsed_s: self.started.elapsed().as_secs_f64(),
                    data_wait_share: (window.wait_s / span).min(1.0),
                    comm_share: (window.comm_s / span).min(1.0),
                    rank: self.rank,
                    extra,
                }));
                window = Window::default();
            }
            if out.flag >= distributed::FLAG_CANCEL {
                return Ok(Outcome::Cancelled { step: done });
            }
            if out.flag >= distributed::FLAG_DRAIN {
                let checkpoint = self.save(done, host, coop)?;
                return Ok(Outcome::Interrupted { step: done, checkpoint });
            }
            let eval_due = if t.eval_every > 0 { done % t.eval_every == 0 } else { plan.ends_epoch(done) };
            if let Some(val) = validation.as_ref().filter(|_| eval_due && done < total_steps) {
                last_eval = self.evaluate(val, done, epoch, host, coop)?.or(last_eval);
            }
            if t.checkpoint_every > 0 && done % t.checkpoint_every == 0 && done < total_steps {
                last_checkpoint = self.save(done, host, coop)?.or(last_checkpoint);
            }
        }

        objective.constrain(&mut self.model, total_steps)?;
        let wall_s = totals.steady_elapsed_s().unwrap_or_else(|| self.started.elapsed().as_secs_f64());
        coop.finish(&mut self.model, wall_s)?;
        if let Some(val) = validation.as_ref() {
            last_eval = self.evaluate(val, total_steps, plan.total_epochs, host, coop)?.or(last_eval);
        }
        if total_steps > self.start_step || last_checkpoint.is_none() {
            last_checkpoint = self.save(total_steps, host, coop)?.or(last_checkpoint);
        }
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let (steady_samples_per_s, steady_elapsed_s) = totals.steady(elapsed_s);
        Ok(Outcome::Completed(Summary {
            steps: total_steps,
            epochs: plan.total_epochs,
            first_loss: totals.first_loss.unwrap_or(f64::NAN),
            last_loss: totals.last_loss(),
            last10_loss: totals.recent_loss(),
            validation: last_eval,
            samples_per_s: totals.samples as f64 / elapsed_s.max(1e-9),
            steady_samples_per_s,
            steady_elapsed_s,
            elapsed_s,
            checkpoint: last_checkpoint,
            pipeline: coop.stage_stats(),
            extra: Vec::new(),
        }))
    }

    /// Validation after step `step`, reported by rank 0; `None` where this rank does not evaluate.
    fn evaluate(
        &self,
        val: &Dataset,
        step: u64,
        epoch: u64,
        host: &mut dyn Host,
        coop: &mut dyn Cooperation,
    ) -> Result<Option<EvalPoint>> {
        let Some(sums) = coop.evaluate(&self.model, val, self.opts.threads.max(1))? else { return Ok(None) };
        let point = eval_point(&sums, val, step, epoch, self.started);
        if self.rank == 0 {
            host.report(Report::Validation(point.clone()));
        }
        Ok(Some(point))
    }

    /// Writes a checkpoint (rank 0 only: the others have no checkpoint directory), with whatever
    /// the strategy keeps besides the model and optimizer.
    fn save(&self, step: u64, host: &mut dyn Host, coop: &mut dyn Cooperation) -> Result<Option<PathBuf>> {
        let Some(root) = &self.opts.checkpoint_dir else { return Ok(None) };
        let state = CheckpointState::new(step, self.plan.epoch_after(step.max(1)), &self.cfg.name);
        let path = checkpoint::save(
            root,
            &state,
            &self.model.named_tensors()?,
            &self.opt.named_state()?,
            &self.opts.spec_toml,
            self.transforms.as_ref(),
            self.opts.keep_checkpoints.max(1),
        )?;
        coop.save_extra(&path)?;
        host.report(Report::Checkpoint { step, path: path.clone() });
        Ok(Some(path))
    }
}
