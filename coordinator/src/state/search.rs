//! Search jobs: a [`shoal_search::Engine`] per search suggests trials, each trial runs as an
//! ordinary job on the cluster, its validation metrics feed back (and may stop it early), and
//! every trial record is stored next to the jobs, so a restarted coordinator resumes the search
//! where it was.

use shoal_common::proto::{
    Job, JobResult, JobSpec, JobState, ListTrialsResponse, MetricPoint, NoticeLevel, Split, TrialStatus, job_event,
};
use shoal_common::time::{now_ms, timestamp_to_ms};
use shoal_common::{JobId, spec};
use shoal_search::spec::{SearchJob, budget_of, describe, metric_value, trial_name, trial_spec};
use shoal_search::{Engine, Trial, TrialState};

use super::jobs::{joined, notice};
use super::traces::Kind;
use super::{JobEntry, State};
use crate::error::CoordinatorError;
use crate::scheduler::{Demand, Resources};
use crate::store::JobRow;

pub(super) struct SearchRun {
    job: SearchJob,
    engine: Engine,
    started_ms: i64,
}

impl SearchRun {
    fn now_s(&self) -> f64 {
        (now_ms() - self.started_ms).max(0) as f64 / 1000.0
    }
}

/// The objective's value in a finished trial's result.
fn result_value(metric: &str, r: &JobResult) -> Option<f64> {
    let v = match metric {
        "validation_accuracy" | "accuracy" => r.validation_accuracy,
        "validation_loss" | "loss" => Some(r.validation_loss),
        other => r.extra.get(other).or_else(|| r.extra.get(&format!("validation_{other}"))).copied(),
    };
    v.filter(|x| x.is_finite())
}

impl State {
    pub(super) fn submit_search(&mut self, spec: JobSpec) -> Result<Job, CoordinatorError> {
        let job = shoal_search::spec::validate(&spec).map_err(CoordinatorError::InvalidSpec)?;
        let limit = self.limits.max_trials_per_search as usize;
        if limit > 0 && job.config.max_trials > limit {
            return Err(CoordinatorError::invalid(
                "search.max_trials",
                format!(
                    "{} trials; this coordinator allows at most {limit} per search (max_trials_per_search)",
                    job.config.max_trials
                ),
            ));
        }
        let id = JobId::generate();
        let now = now_ms();
        let c = &job.config;
        let reason = format!(
            "searching with {}: up to {} trials, {} at once, {} {}",
            c.strategy.name(),
            c.max_trials,
            c.max_concurrent,
            if c.maximize { "maximizing" } else { "minimizing" },
            job.metric
        );
        let name = spec.name.clone();
        let row = self.store_new(&id, spec, JobState::Running, &reason)?;
        tracing::info!(job_id = %id, strategy = job.config.strategy.name(), trials = job.config.max_trials, "search submitted");
        self.jobs.insert(
            id.clone(),
            JobEntry { row, demand: Demand::single(Resources::default()), backend: spec::Backend::Auto },
        );
        self.traces.open(&id, &name, Kind::Search, None, false);
        let engine = Engine::new(job.config.clone());
        self.searches.insert(id.clone(), SearchRun { job, engine, started_ms: now });
        self.schedule();
        self.view(&id)
    }

    /// Rebuilds the searches still in progress from their stored trials.
    pub(super) fn restore_searches(&mut self) -> Result<(), CoordinatorError> {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.row.job.spec.as_ref().is_some_and(|s| s.search.is_some()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let row = self.jobs[&id].row.clone();
            let trials = self.store.load_trials(id.as_str())?;
            for t in &trials {
                if !t.job_id.is_empty() {
                    self.trial_of.insert(JobId::new(t.job_id.clone()), (id.clone(), t.index));
                }
            }
            if JobState::try_from(row.job.state).is_ok_and(JobState::is_terminal) {
                continue;
            }
            let spec = row.job.spec.clone().unwrap_or_default();
            let job = match shoal_search::spec::validate(&spec) {
                Ok(j) => j,
                Err(errors) => {
                    let mut row = row;
                    let reason = format!("stored search is no longer valid: {}", joined(&errors));
                    self.set_state(&mut row, JobState::Failed, reason, None);
                    continue;
                }
            };
            let started_ms = row.job.started_at.as_ref().map_or_else(now_ms, timestamp_to_ms);
            let n = trials.len();
            let engine = Engine::restore(job.config.clone(), trials);
            tracing::info!(job_id = %id, trials = n, "search resumed");
            self.searches.insert(id.clone(), SearchRun { job, engine, started_ms });
            let mut row = row;
            let ev = self.event(
                &mut row,
                notice(NoticeLevel::Info, format!("coordinator restarted; search resumed with {n} trials")),
            );
            self.store_and_keep(row, vec![ev]);
            // Trials whose jobs ended while the coordinator was down.
            let running: Vec<(usize, String)> = self.searches[&id]
                .engine
                .trials()
                .iter()
                .filter(|t| t.state == TrialState::Running)
                .map(|t| (t.index, t.job_id.clone()))
                .collect();
            for (_, job_id) in running {
                if let Some(e) = self.jobs.get(&JobId::new(job_id))
                    && JobState::try_from(e.row.job.state).is_ok_and(JobState::is_terminal)
                {
                    let r = e.row.clone();
                    self.trial_ended(&r);
                }
            }
        }
        Ok(())
    }

    /// Time limits of searches pass without any event: check them on the liveness tick.
    pub(super) fn drive_searches_on_tick(&mut self) {
        let over = self.searches.values().any(|r| r.engine.over_time(r.now_s()));
        if over {
            self.schedule();
        }
    }

    /// Starts trials of every search that has room; returns how many were created.
    pub(super) fn drive_searches(&mut self) -> usize {
        let ids: Vec<JobId> = self.searches.keys().cloned().collect();
        ids.iter().map(|id| self.drive_search(id)).sum()
    }

    fn drive_search(&mut self, id: &JobId) -> usize {
        let Some(run) = self.searches.get_mut(id) else { return 0 };
        let now_s = run.now_s();
        if run.engine.over_time(now_s) && run.engine.running() > 0 {
            let why = format!("the search reached its time limit ({:.0}s)", run.job.config.max_wall_s.unwrap_or(0.0));
            let running: Vec<usize> =
                run.engine.trials().iter().filter(|t| t.state == TrialState::Running).map(|t| t.index).collect();
            for i in running {
                self.stop_trial(id, i, &why);
            }
        }
        let mut created = 0;
        loop {
            let Some(run) = self.searches.get(id) else { return created };
            let waiting = run.engine.trials().iter().any(|t| {
                t.state == TrialState::Running
                    && self
                        .jobs
                        .get(&JobId::new(t.job_id.clone()))
                        .is_none_or(|e| e.row.job.state == JobState::Queued as i32)
            });
            if waiting {
                break;
            }
            let Some(run) = self.searches.get_mut(id) else { return created };
            let now_s = run.now_s();
            let Some(trial) = run.engine.suggest(now_s).cloned() else { break };
            self.start_trial(id, trial);
            created += 1;
        }
        if let Some(run) = self.searches.get(id)
            && run.engine.finished(run.now_s())
        {
            self.finish_search(id);
        }
        created
    }

    /// Creates the job of a new trial.
    fn start_trial(&mut self, id: &JobId, mut trial: Trial) {
        let Some(run) = self.searches.get(id) else { return };
        let parent =
            trial.parent.and_then(|p| run.engine.trial(p)).filter(|p| run.job.inherit && !p.checkpoint.is_empty());
        let parent_model = parent.map(|p| {
            let s = trial_spec(&run.job, &p.config, None, false);
            (p.checkpoint.clone(), s.model.unwrap_or_default())
        });
        let mut spec = trial_spec(&run.job, &trial.config, parent_model.as_ref().map(|(c, m)| (c.as_str(), m)), false);
        let search_name =
            self.jobs.get(id).and_then(|e| e.row.job.spec.as_ref()).map_or_else(String::new, |s| s.name.clone());
        spec.name = trial_name(&search_name, trial.index);
        let desc = describe(&trial, run.job.config.arch.as_ref(), run.job.micro.as_ref());
        let inherited = parent_model
            .as_ref()
            .map(|(c, _)| format!(", inheriting trial {}'s weights from {c}", trial.parent.unwrap_or(0)));
        let created = match spec::validate(&spec) {
            Ok(cfg) => self
                .enqueue_new(spec, &cfg, &format!("trial {} of search {id}", trial.index), Some(id))
                .map_err(|e| e.to_string()),
            Err(errors) => Err(joined(&errors)),
        };
        match created {
            Ok(job_id) => {
                trial.job_id = job_id.to_string();
                self.trial_of.insert(job_id.clone(), (id.clone(), trial.index));
                if let Some(run) = self.searches.get_mut(id)
                    && let Some(t) = run.engine.trial_mut(trial.index)
                {
                    t.job_id = trial.job_id.clone();
                }
                self.save_trial(id, trial.index);
                self.search_notice(
                    id,
                    NoticeLevel::Info,
                    format!("trial {} started as job {job_id}: {desc}{}", trial.index, inherited.unwrap_or_default()),
                );
            }
            Err(why) => {
                if let Some(run) = self.searches.get_mut(id) {
                    let now_s = run.now_s();
                    run.engine.finish(trial.index, false, None, &format!("could not create its job: {why}"), now_s);
                }
                self.save_trial(id, trial.index);
                self.search_notice(id, NoticeLevel::Warn, format!("trial {} could not start: {why}", trial.index));
            }
        }
    }

    fn save_trial(&mut self, id: &JobId, index: usize) {
        let Some(t) = self.searches.get(id).and_then(|r| r.engine.trial(index)).cloned() else { return };
        if let Err(e) = self.store.save_trial(id.as_str(), &t) {
            tracing::error!(job_id = %id, trial = index, error = %e, "could not store a trial");
        }
    }

    fn search_notice(&mut self, id: &JobId, level: NoticeLevel, message: String) {
        tracing::info!(job_id = %id, "{message}");
        let Some(mut row) = self.jobs.get(id).map(|e| e.row.clone()) else { return };
        let ev = self.event(&mut row, notice(level, message));
        self.store_and_keep(row, vec![ev]);
    }

    /// A validation point of a trial job: feeds the search, which may stop the trial.
    pub(super) fn trial_reported(&mut self, job_id: &JobId, point: &MetricPoint) {
        let Some((id, index)) = self.trial_of.get(job_id).cloned() else { return };
        let Some(run) = self.searches.get_mut(&id) else { return };
        let Some(value) = metric_value(&run.job.metric, point) else { return };
        let budget = budget_of(&run.job, point);
        let now_s = run.now_s();
        let verdict = run.engine.report(index, budget, value, now_s);
        self.save_trial(&id, index);
        if let Some(why) = verdict {
            self.cancel_trial_job(job_id, &format!("stopped early: {why}"));
            self.search_notice(&id, NoticeLevel::Info, format!("trial {index} stopped early at {budget}: {why}"));
            self.schedule();
        }
    }

    /// Stops a running trial from the search's side (time limit, cancellation).
    fn stop_trial(&mut self, id: &JobId, index: usize, why: &str) {
        let Some(run) = self.searches.get_mut(id) else { return };
        let now_s = run.now_s();
        run.engine.stop(index, why, now_s);
        let job_id = run.engine.trial(index).map(|t| JobId::new(t.job_id.clone()));
        self.save_trial(id, index);
        if let Some(job_id) = job_id {
            self.cancel_trial_job(&job_id, why);
        }
    }

    fn cancel_trial_job(&mut self, job_id: &JobId, reason: &str) {
        let Some(mut row) = self.jobs.get(job_id).map(|e| e.row.clone()) else { return };
        match JobState::try_from(row.job.state) {
            Ok(JobState::Running) => self.stop_ranks(&mut row, None, reason),
            Ok(JobState::Queued) => {
                self.scheduler.dequeue(job_id);
            }
            _ => return,
        }
        self.set_state(&mut row, JobState::Cancelled, reason.to_owned(), None);
    }

    /// A job ended: if it is a trial, the search learns how.
    pub(super) fn trial_ended(&mut self, row: &JobRow) {
        let job_id = JobId::new(row.job.job_id.clone());
        let Some((id, index)) = self.trial_of.get(&job_id).cloned() else { return };
        let Some(run) = self.searches.get_mut(&id) else { return };
        let Some(t) = run.engine.trial(index) else { return };
        if t.state != TrialState::Running {
            return;
        }
        let now_s = run.now_s();
        let state = JobState::try_from(row.job.state).unwrap_or(JobState::Failed);
        let value = row.job.result.as_ref().and_then(|r| result_value(&run.job.metric, r));
        let ok = state == JobState::Succeeded;
        run.engine.finish(index, ok, value, &row.job.reason, now_s);
        if let Some(t) = run.engine.trial_mut(index) {
            t.checkpoint = row.job.result.as_ref().map(|r| r.checkpoint.clone()).unwrap_or_default();
        }
        let t = run.engine.trial(index).cloned();
        let best = run.engine.best().map(|b| (b.index, b.value));
        let metric = run.job.metric.clone();
        self.save_trial(&id, index);
        if let Some(t) = t {
            let msg = match t.state {
                TrialState::Completed => format!(
                    "trial {index} completed: {metric} {:.4}{}",
                    t.value.unwrap_or(f64::NAN),
                    best.map(|(b, v)| format!(" (best so far: trial {b}, {:.4})", v.unwrap_or(f64::NAN)))
                        .unwrap_or_default()
                ),
                _ => format!("trial {index} {}: {}", t.state.name(), t.reason),
            };
            let level = if t.state == TrialState::Failed { NoticeLevel::Warn } else { NoticeLevel::Info };
            self.search_notice(&id, level, msg);
            self.best_point(&id);
        }
    }

    /// A metric point on the search job: the best value so far after each ended trial.
    fn best_point(&mut self, id: &JobId) {
        let Some(run) = self.searches.get(id) else { return };
        let Some(best) = run.engine.best().and_then(|b| b.value) else { return };
        let ended = run.engine.trials().iter().filter(|t| t.state != TrialState::Running).count() as u64;
        let mut point = MetricPoint {
            step: ended,
            total_steps: run.job.config.max_trials as u64,
            split: Split::Validation as i32,
            elapsed_s: run.now_s(),
            loss: f64::NAN,
            ..Default::default()
        };
        point.extra.insert("trials_ended".into(), ended as f64);
        match run.job.metric.as_str() {
            "validation_accuracy" | "accuracy" => point.accuracy = Some(best),
            "validation_loss" | "loss" => point.loss = best,
            other => {
                point.extra.insert(other.to_owned(), best);
            }
        }
        let Some(mut row) = self.jobs.get(id).map(|e| e.row.clone()) else { return };
        row.job.last_validation = Some(point.clone());
        let ev = self.event(&mut row, job_event::Kind::Metric(point));
        self.store_and_keep(row, vec![ev]);
    }

    /// The search is over: the job succeeds with the best trial as its result.
    fn finish_search(&mut self, id: &JobId) {
        let Some(run) = self.searches.get(id) else { return };
        let trials = run.engine.trials();
        let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count() as f64;
        let summary = format!(
            "{} trials: {} completed, {} stopped early, {} failed",
            trials.len(),
            count(TrialState::Completed),
            count(TrialState::Stopped),
            count(TrialState::Failed)
        );
        match run.engine.best().filter(|b| b.state == TrialState::Completed).cloned() {
            Some(best) => {
                let value = best.value.unwrap_or(f64::NAN);
                let mut result = JobResult {
                    checkpoint: best.checkpoint.clone(),
                    elapsed_s: run.now_s(),
                    validation_loss: f64::NAN,
                    ..Default::default()
                };
                match run.job.metric.as_str() {
                    "validation_accuracy" | "accuracy" => result.validation_accuracy = Some(value),
                    "validation_loss" | "loss" => result.validation_loss = value,
                    _ => {}
                }
                result.extra.insert("best_trial".into(), best.index as f64);
                result.extra.insert("best_value".into(), value);
                result.extra.insert("trials".into(), trials.len() as f64);
                result.extra.insert("completed".into(), count(TrialState::Completed));
                result.extra.insert("stopped".into(), count(TrialState::Stopped));
                result.extra.insert("failed".into(), count(TrialState::Failed));
                let reason = format!(
                    "best trial {} (job {}): {} {value:.4}; {summary}",
                    best.index, best.job_id, run.job.metric
                );
                tracing::info!(job_id = %id, "search finished: {reason}");
                self.searches.remove(id);
                if let Some(mut row) = self.jobs.get(id).map(|e| e.row.clone()) {
                    self.set_state(&mut row, JobState::Succeeded, reason, Some(result));
                }
            }
            None => {
                let reason = format!("no trial completed; {summary}");
                self.searches.remove(id);
                if let Some(mut row) = self.jobs.get(id).map(|e| e.row.clone()) {
                    self.set_state(&mut row, JobState::Failed, reason, None);
                }
            }
        }
    }

    /// Cancels a search: its running trials are stopped and no more start.
    pub(super) fn end_search(&mut self, id: &JobId, state: JobState, reason: String) {
        let Some(run) = self.searches.get_mut(id) else { return };
        run.engine.halt(reason.clone());
        let running: Vec<usize> =
            run.engine.trials().iter().filter(|t| t.state == TrialState::Running).map(|t| t.index).collect();
        for i in running {
            self.stop_trial(id, i, "the search was cancelled");
        }
        self.searches.remove(id);
        if let Some(mut row) = self.jobs.get(id).map(|e| e.row.clone()) {
            self.set_state(&mut row, state, reason, None);
        }
    }

    /// Search `job_id`'s spec, its validated form and its trials (live, or from the database once
    /// it has ended).
    fn search_trials(&self, job_id: &str) -> Result<(JobSpec, SearchJob, Vec<Trial>), CoordinatorError> {
        let id = JobId::new(job_id);
        let entry = self.jobs.get(&id).ok_or_else(|| CoordinatorError::JobNotFound { job_id: job_id.into() })?;
        let spec = entry.row.job.spec.clone().unwrap_or_default();
        if spec.search.is_none() {
            return Err(CoordinatorError::invalid("job_id", format!("job {job_id} is not a search job")));
        }
        let job = shoal_search::spec::validate(&spec).map_err(CoordinatorError::InvalidSpec)?;
        let trials = match self.searches.get(&id) {
            Some(run) => run.engine.trials().to_vec(),
            None => self.store.load_trials(job_id)?,
        };
        Ok((spec, job, trials))
    }

    /// The trials of a search job, best first.
    pub fn trials(&self, job_id: &str) -> Result<ListTrialsResponse, CoordinatorError> {
        let (spec, job, trials) = self.search_trials(job_id)?;
        let id = JobId::new(job_id);
        let engine = Engine::restore(job.config.clone(), trials);
        let best = engine.best().map(|b| b.index);
        let score = |t: &Trial| t.value.map(|v| engine.score(v)).unwrap_or(f64::NEG_INFINITY);
        let rank = |t: &Trial| match t.state {
            TrialState::Completed => 0,
            TrialState::Stopped => 1,
            TrialState::Running => 2,
            TrialState::Failed => 3,
        };
        let mut order: Vec<&Trial> = engine.trials().iter().collect();
        order.sort_by(|a, b| rank(a).cmp(&rank(b)).then(score(b).total_cmp(&score(a))).then(a.index.cmp(&b.index)));
        let now_s = self.searches.get(&id).map(|r| r.now_s());
        let trials = order
            .into_iter()
            .map(|t| TrialStatus {
                index: t.index as u32,
                job_id: t.job_id.clone(),
                params: serde_json::to_string(&t.config).unwrap_or_default(),
                description: describe(t, job.config.arch.as_ref(), job.micro.as_ref()),
                state: t.state.name().into(),
                value: t.value,
                budget_used: t.budget_used(),
                budget: job.config.max_budget,
                reason: t.reason.clone(),
                parent: t.parent.map(|p| p as u32),
                checkpoint: t.checkpoint.clone(),
                points: t.curve.len() as u32,
                elapsed_s: t.finished_s.or(now_s).map_or(0.0, |f| (f - t.started_s).max(0.0)),
            })
            .collect();
        let best_spec = best.and_then(|b| engine.trial(b)).map(|t| {
            let mut s = trial_spec(&job, &t.config, None, true);
            s.name = format!("{}-best", spec.name);
            s.trial_params = String::new();
            s
        });
        Ok(ListTrialsResponse {
            metric: job.metric.clone(),
            maximize: job.config.maximize,
            strategy: job.config.strategy.name().into(),
            max_trials: job.config.max_trials as u32,
            trials,
            best_spec,
            best: best.map(|b| b as u32),
            budget_unit: if job.epochs { "epochs" } else { "steps" }.into(),
        })
    }
}

/// What a search's charts draw beyond its leaderboard: the ASHA rungs and every trial's curve.
#[derive(Clone, Debug)]
pub struct SearchCurves {
    /// Budgets of the ASHA rungs (empty without ASHA).
    pub rungs: Vec<f64>,
    /// Every trial, in index order, with its validation curve and times.
    pub trials: Vec<Trial>,
}

impl State {
    /// The rungs and the trials' curves of search `job_id`.
    pub fn search_curves(&self, job_id: &str) -> Result<SearchCurves, CoordinatorError> {
        let (_, job, mut trials) = self.search_trials(job_id)?;
        trials.sort_by_key(|t| t.index);
        Ok(SearchCurves { rungs: shoal_search::engine::milestones(&job.config), trials })
    }
}
