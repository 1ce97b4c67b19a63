//! One parameter shard as a pure state machine: values, optimizer state and per-worker clocks.
//! No sockets or clocks: the service decides when to call what, and the tests drive it directly.
//!
//! Modes: *async* applies every push at once; *ssp* does too, but a worker may only take step t
//! when the slowest worker has pushed at least t - s steps; *sync* sums the pushes of a step and
//! applies their average once every worker has pushed it. Pushes are idempotent per (worker, step).

use std::collections::BTreeMap;

use shoal_common::spec::{OptimizerConfig, OptimizerKind, PsMode};
use shoal_train::optim::rules;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("shard has {expected} values but the push has {got}")]
    WrongSize { expected: usize, got: usize },
    #[error("worker {worker} is not one of this shard's {workers} workers")]
    UnknownWorker { worker: usize, workers: usize },
    #[error("the shard is not initialised yet")]
    NotInitialised,
    #[error("the job has finished ({reason})")]
    Finished { reason: String },
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pushed {
    pub duplicate: bool,
    pub version: u64,
    pub staleness: u64,
}

/// Fixed settings of a shard.
#[derive(Clone, Copy, Debug)]
pub struct ShardConfig {
    pub workers: usize,
    pub mode: PsMode,
    pub optimizer: OptimizerConfig,
    /// Optimizer steps of the whole run (for the learning-rate schedule).
    pub total_steps: u64,
}

/// Counters for metrics and tests.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    pub pushes: u64,
    pub duplicates: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// For each granted pull: the worker's step minus the slowest worker's clock.
    pub lead_at_grant: Vec<i64>,
}

pub struct Shard {
    cfg: ShardConfig,
    values: Vec<f32>,
    first: Vec<f32>,
    second: Vec<f32>,
    initialised: bool,
    /// Sync: steps applied. Async and ssp: pushes applied.
    version: u64,
    /// Optimizer updates applied (sync: steps; async/ssp: pushes).
    updates: u64,
    /// Per worker: every step below this has been pushed (the worker's clock).
    clocks: Vec<u64>,
    /// Per worker: steps at or above its clock already pushed (pushes may arrive out of order).
    ahead: Vec<std::collections::BTreeSet<u64>>,
    /// Sync: gradient sums of steps not every worker has pushed yet, and who pushed them.
    pending: BTreeMap<u64, (Vec<f32>, Vec<bool>)>,
    finished: Option<String>,
    pub stats: ShardStats,
}

impl Shard {
    pub fn new(cfg: ShardConfig, len: usize) -> Self {
        let (first, second) = match cfg.optimizer.kind {
            OptimizerKind::Sgd { momentum, .. } if momentum > 0.0 => (vec![0.0; len], Vec::new()),
            OptimizerKind::Sgd { .. } => (Vec::new(), Vec::new()),
            OptimizerKind::AdamW { .. } => (vec![0.0; len], vec![0.0; len]),
        };
        Self {
            cfg,
            values: vec![0.0; len],
            first,
            second,
            initialised: false,
            version: 0,
            updates: 0,
            clocks: vec![0; cfg.workers],
            ahead: vec![std::collections::BTreeSet::new(); cfg.workers],
            pending: BTreeMap::new(),
            finished: None,
            stats: ShardStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    pub fn clocks(&self) -> &[u64] {
        &self.clocks
    }

    pub fn config(&self) -> &ShardConfig {
        &self.cfg
    }

    /// Sets the initial values; false (and nothing changes) if already initialised.
    pub fn init(&mut self, values: Vec<f32>) -> Result<bool, ShardError> {
        if self.initialised {
            return Ok(false);
        }
        if values.len() != self.values.len() {
            return Err(ShardError::WrongSize { expected: self.values.len(), got: values.len() });
        }
        self.values = values;
        self.initialised = true;
        Ok(true)
    }

    /// Restores the whole state (from a checkpoint).
    pub fn restore(&mut self, state: ShardState) -> Result<(), ShardError> {
        let n = self.values.len();
        for (what, len) in
            [("values", state.values.len()), ("first", state.first.len()), ("second", state.second.len())]
        {
            let want = match what {
                "values" => n,
                "first" => self.first.len(),
                _ => self.second.len(),
            };
            if len != want {
                return Err(ShardError::WrongSize { expected: want, got: len });
            }
        }
        if state.clocks.len() != self.clocks.len() {
            return Err(ShardError::UnknownWorker { worker: state.clocks.len(), workers: self.clocks.len() });
        }
        self.values = state.values;
        self.first = state.first;
        self.second = state.second;
        self.version = state.version;
        self.updates = state.updates;
        self.clocks = state.clocks;
        self.ahead = vec![std::collections::BTreeSet::new(); self.clocks.len()];
        self.pending.clear();
        self.initialised = true;
        Ok(())
    }

    /// Everything needed to restore the shard.
    pub fn state(&self) -> ShardState {
        ShardState {
            values: self.values.clone(),
            first: self.first.clone(),
            second: self.second.clone(),
            version: self.version,
            updates: self.updates,
            clocks: self.clocks.clone(),
        }
    }

    pub fn finish(&mut self, reason: &str) {
        self.finished = Some(reason.to_owned());
        self.pending.clear();
    }

    fn check_open(&self) -> Result<(), ShardError> {
        if let Some(reason) = &self.finished {
            return Err(ShardError::Finished { reason: reason.clone() });
        }
        if !self.initialised {
            return Err(ShardError::NotInitialised);
        }
        Ok(())
    }

    fn apply(&mut self, grads: &[f32]) {
        let o = self.cfg.optimizer;
        let lr = o.schedule.lr_at(o.lr, self.updates, self.cfg.total_steps.max(1)) as f32;
        let wd = o.weight_decay as f32;
        match o.kind {
            OptimizerKind::Sgd { momentum, nesterov } => rules::sgd(
                &mut self.values,
                grads,
                &mut self.first,
                lr,
                momentum as f32,
                nesterov,
                wd,
                self.updates == 0,
            ),
            OptimizerKind::AdamW { beta1, beta2, eps } => {
                let s = rules::AdamStep {
                    lr,
                    beta1: beta1 as f32,
                    beta2: beta2 as f32,
                    eps: eps as f32,
                    weight_decay: wd,
                    t: self.updates + 1,
                };
                rules::adamw(&mut self.values, grads, &mut self.first, &mut self.second, &s);
            }
        }
        self.updates += 1;
    }

    /// Applies (or, in sync mode, collects) a worker's gradient for `step`.
    pub fn push(&mut self, worker: usize, step: u64, based_on: u64, grads: &[f32]) -> Result<Pushed, ShardError> {
        self.check_open()?;
        if worker >= self.cfg.workers {
            return Err(ShardError::UnknownWorker { worker, workers: self.cfg.workers });
        }
        if grads.len() != self.values.len() {
            return Err(ShardError::WrongSize { expected: self.values.len(), got: grads.len() });
        }
        let already = match self.cfg.mode {
            PsMode::Sync => step < self.version || self.pending.get(&step).is_some_and(|(_, from)| from[worker]),
            _ => step < self.clocks[worker] || self.ahead[worker].contains(&step),
        };
        if already {
            self.stats.duplicates += 1;
            return Ok(Pushed { duplicate: true, version: self.version, staleness: 0 });
        }
        self.stats.pushes += 1;
        self.stats.bytes_in += (grads.len() * 4) as u64;
        let staleness = self.version.saturating_sub(based_on);
        self.ahead[worker].insert(step);
        while self.ahead[worker].remove(&self.clocks[worker]) {
            self.clocks[worker] += 1;
        }
        match self.cfg.mode {
            PsMode::Sync => {
                let workers = self.cfg.workers;
                let n = self.values.len();
                let (sum, from) = self.pending.entry(step).or_insert_with(|| (vec![0.0; n], vec![false; workers]));
                sum.iter_mut().zip(grads).for_each(|(s, g)| *s += g);
                from[worker] = true;
                // Steps complete in order: the next one can only finish once this one has.
                while let Some(entry) = self.pending.first_entry() {
                    if *entry.key() != self.version || !entry.get().1.iter().all(|&f| f) {
                        break;
                    }
                    let (mut sum, _) = entry.remove();
                    let inv = 1.0 / workers as f32;
                    sum.iter_mut().for_each(|g| *g *= inv);
                    self.apply(&sum);
                    self.version += 1;
                }
            }
            PsMode::Async | PsMode::Ssp { .. } => {
                self.apply(grads);
                self.version += 1;
            }
        }
        Ok(Pushed { duplicate: false, version: self.version, staleness })
    }

    /// The slowest worker's clock.
    pub fn slowest(&self) -> (usize, u64) {
        self.clocks.iter().enumerate().map(|(w, c)| (w, *c)).min_by_key(|(_, c)| *c).unwrap_or((0, 0))
    }

    /// Whether `worker` may take `step` now (never before the shard is initialised).
    pub fn may_pull(&self, worker: usize, step: u64) -> Result<bool, ShardError> {
        if let Some(reason) = &self.finished {
            return Err(ShardError::Finished { reason: reason.clone() });
        }
        if !self.initialised {
            return Ok(false);
        }
        if worker >= self.cfg.workers {
            return Err(ShardError::UnknownWorker { worker, workers: self.cfg.workers });
        }
        Ok(match self.cfg.mode {
            PsMode::Async => true,
            PsMode::Sync => self.version >= step,
            PsMode::Ssp { staleness } => step <= self.slowest().1 + staleness,
        })
    }

    /// Records a granted pull (for the SSP bound check) and returns the values and version.
    pub fn grant(&mut self, step: u64) -> (u64, Vec<f32>) {
        let lead = step as i64 - self.slowest().1 as i64;
        self.stats.lead_at_grant.push(lead);
        self.stats.bytes_out += (self.values.len() * 4) as u64;
        (self.version, self.values.clone())
    }
}

/// A shard's state for checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardState {
    pub values: Vec<f32>,
    pub first: Vec<f32>,
    pub second: Vec<f32>,
    pub version: u64,
    pub updates: u64,
    pub clocks: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use shoal_common::spec::{Schedule, ScheduleKind};

    use super::*;

    fn cfg(workers: usize, mode: PsMode) -> ShardConfig {
        ShardConfig {
            workers,
            mode,
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Sgd { momentum: 0.0, nesterov: false },
                lr: 0.5,
                weight_decay: 0.0,
                schedule: Schedule { kind: ScheduleKind::Constant, warmup_steps: 0 },
            },
            total_steps: 100,
        }
    }

    fn shard(workers: usize, mode: PsMode) -> Shard {
        let mut s = Shard::new(cfg(workers, mode), 2);
        assert!(s.init(vec![1.0, 1.0]).expect("init"));
        assert!(!s.init(vec![9.0, 9.0]).expect("second init"), "a second init changes nothing");
        s
    }

    #[test]
    fn async_applies_each_push_and_ignores_retries() {
        let mut s = shard(2, PsMode::Async);
        let p = s.push(0, 0, 0, &[1.0, 2.0]).expect("push");
        assert_eq!((p.duplicate, p.version), (false, 1));
        assert_eq!(s.values(), &[0.5, 0.0]);
        // Out of order: step 2 before step 1; both count once, the clock waits for the gap.
        s.push(0, 2, 1, &[0.0, 0.0]).expect("push step 2");
        assert_eq!(s.clocks()[0], 1);
        s.push(0, 1, 1, &[0.0, 0.0]).expect("push step 1");
        assert_eq!(s.clocks()[0], 3);
        assert!(s.push(0, 2, 1, &[0.0, 0.0]).expect("retry").duplicate);
        let again = s.push(0, 0, 0, &[1.0, 2.0]).expect("retry");
        assert!(again.duplicate);
        assert_eq!(s.values(), &[0.5, 0.0], "a retried push is applied once");
        let p = s.push(1, 0, 0, &[1.0, 0.0]).expect("push");
        assert_eq!((p.version, p.staleness), (4, 3), "worker 1 computed on version 0, three updates ago");
        assert_eq!(s.stats.duplicates, 2);
    }

    #[test]
    fn sync_averages_a_step_and_applies_it_once() {
        // Reference: w - lr * mean(g) = 1 - 0.5 * (1 + 3) / 2 = 0.
        let mut s = shard(2, PsMode::Sync);
        assert!(!s.may_pull(0, 1).expect("pull"), "step 1 waits for step 0");
        s.push(0, 0, 0, &[1.0, 0.0]).expect("push");
        assert_eq!(s.version(), 0, "waits for the other worker");
        assert!(s.push(0, 0, 0, &[5.0, 5.0]).expect("retry").duplicate);
        s.push(1, 0, 0, &[3.0, 2.0]).expect("push");
        assert_eq!(s.version(), 1);
        assert_eq!(s.values(), &[0.0, 0.5]);
        assert!(s.may_pull(1, 1).expect("pull"));
        assert!(s.push(1, 0, 0, &[1.0, 1.0]).expect("late retry").duplicate);
    }

    #[test]
    fn ssp_holds_back_a_worker_that_runs_ahead() {
        let mut s = shard(2, PsMode::Ssp { staleness: 1 });
        assert!(s.may_pull(0, 1).expect("pull"), "step 1 is 1 ahead of clock 0");
        s.push(0, 0, 0, &[0.0, 0.0]).expect("push");
        s.push(0, 1, 1, &[0.0, 0.0]).expect("push");
        assert!(!s.may_pull(0, 2).expect("pull"), "worker 0 would be 2 ahead of worker 1");
        s.push(1, 0, 0, &[0.0, 0.0]).expect("push");
        assert!(s.may_pull(0, 2).expect("pull"));
        let (_, _) = s.grant(2);
        assert_eq!(s.stats.lead_at_grant, vec![1]);
    }

    #[test]
    fn bad_pushes_are_refused_with_reasons() {
        let mut s = Shard::new(cfg(2, PsMode::Async), 2);
        assert_eq!(s.push(0, 0, 0, &[1.0, 1.0]), Err(ShardError::NotInitialised));
        s.init(vec![0.0, 0.0]).expect("init");
        assert_eq!(s.push(0, 0, 0, &[1.0]), Err(ShardError::WrongSize { expected: 2, got: 1 }));
        assert_eq!(s.push(5, 0, 0, &[1.0, 1.0]), Err(ShardError::UnknownWorker { worker: 5, workers: 2 }));
        s.finish("succeeded");
        assert_eq!(s.push(0, 0, 0, &[1.0, 1.0]), Err(ShardError::Finished { reason: "succeeded".into() }));
    }

    #[test]
    fn state_round_trips() {
        let mut s = shard(2, PsMode::Async);
        s.push(0, 0, 0, &[1.0, 2.0]).expect("push");
        let state = s.state();
        let mut t = Shard::new(cfg(2, PsMode::Async), 2);
        t.restore(state.clone()).expect("restore");
        assert_eq!(t.state(), state);
        assert!(t.is_initialised());
    }
}
