//! The coordinator's state machine around the scheduler: jobs, workers and their sessions, event
//! history and live watchers. One mutex guards it; every operation is short (an in-memory change
//! plus one SQLite transaction) and never awaits while holding it.

mod jobs;
mod search;
mod traces;
mod workers;

pub use jobs::{Subscription, is_terminal_event};
pub use search::SearchCurves;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shoal_common::proto::{CoordinatorMessage, GpuUsage, JobEvent, WorkerInfo, WorkerState, job_event};
use shoal_common::{JobId, WorkerId};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tonic::Status;

use crate::error::CoordinatorError;
use crate::metrics::{Metrics, Snapshot, state_label};
use shoal_common::spec::Backend;

use crate::scheduler::{Demand, Resources, Scheduler};
use crate::store::{JobRow, Store};

/// Timing of worker liveness.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// A worker silent for longer is lost.
    pub heartbeat_timeout: Duration,
    /// A worker whose session closed is lost unless it reconnects within this time.
    pub reconnect_grace: Duration,
    /// The same for workers restored from the database after a coordinator restart.
    pub restart_grace: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(10),
            reconnect_grace: Duration::from_secs(10),
            restart_grace: Duration::from_secs(30),
        }
    }
}

/// Messages to a worker's session stream.
pub type SessionSender = mpsc::UnboundedSender<Result<CoordinatorMessage, Status>>;

struct Session {
    epoch: u64,
    tx: SessionSender,
}

struct WorkerEntry {
    info: WorkerInfo,
    state: WorkerState,
    reason: String,
    registered_ms: i64,
    last_seen_ms: i64,
    last_seen: Instant,
    session: Option<Session>,
    disconnected_since: Option<Instant>,
    /// The worker process whose reports `acked` counts (a new process starts over).
    boot_id: u64,
    /// The newest report applied (WorkerMessage.seq); older ones are duplicates.
    acked: u64,
    /// Restored from the database after a coordinator restart and not back yet: it gets
    /// `restart_grace` rather than `reconnect_grace`.
    restored: bool,
    /// Its GPUs' use as the newest heartbeat sampled it; cleared when the session ends. Kept in
    /// memory only: after a coordinator restart the next heartbeat brings it back.
    gpu_usage: Vec<GpuUsage>,
    /// Heartbeat intervals of the current silence already counted as missed.
    missed: u64,
}

impl WorkerEntry {
    fn capacity(&self) -> Resources {
        Resources {
            cpus: self.info.cpu_cores,
            memory_mb: self.info.memory_bytes / (1024 * 1024),
            gpus: self.info.gpus.len() as u32,
        }
    }

    fn describe(&self, id: &WorkerId) -> String {
        if self.info.hostname.is_empty() { id.to_string() } else { format!("{id} ({})", self.info.hostname) }
    }
}

/// A job as the coordinator tracks it.
struct JobEntry {
    row: JobRow,
    /// What it needs (from its validated spec).
    demand: Demand,
    /// All-reduce backend it asked for.
    backend: Backend,
}

pub(crate) struct State {
    store: Store,
    scheduler: Scheduler,
    jobs: HashMap<JobId, JobEntry>,
    next_seq: u64,
    workers: HashMap<WorkerId, WorkerEntry>,
    watchers: HashMap<JobId, broadcast::Sender<JobEvent>>,
    liveness: Liveness,
    session_epoch: u64,
    /// Search jobs in progress.
    searches: HashMap<JobId, search::SearchRun>,
    /// Trial jobs: their search and trial index.
    trial_of: HashMap<JobId, (JobId, usize)>,
    /// Jobs waiting out the backoff of an automatic restart.
    retry_at: Vec<(Instant, JobId)>,
    limits: Limits,
    /// When each running job's current placement started (elastic jobs grow only after a while).
    placed_at: HashMap<JobId, Instant>,
    /// Elastic jobs checkpointing to restart on more workers.
    growing: std::collections::HashSet<JobId>,
    metrics: Arc<Metrics>,
    /// Each live job's span, when spans are exported.
    traces: traces::JobTraces,
}

/// Operator quotas on what one job may ask for (0 = no limit beyond the spec's own).
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Workers (data ranks x pipeline stages) one job may occupy.
    pub max_workers_per_job: u32,
    /// Trials one search may run.
    pub max_trials_per_search: u32,
}

/// Cloneable handle on the coordinator's state.
#[derive(Clone)]
pub struct Coordinator {
    state: Arc<Mutex<State>>,
    liveness: Liveness,
}

impl Coordinator {
    /// Loads the state kept in `store`. Workers found there count as disconnected until they
    /// reconnect (or are declared lost after the reconnect grace).
    pub fn new(store: Store, liveness: Liveness) -> Result<Self, CoordinatorError> {
        let state = State::load(store, liveness)?;
        Ok(Self { state: Arc::new(Mutex::new(state)), liveness })
    }

    /// Sets the quotas new submissions are checked against.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves state that is still consistent on disk; keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the liveness checks every `period` until `shutdown` fires.
    pub async fn run_liveness(&self, period: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => self.lock().tick(Instant::now()),
            }
        }
    }

    /// The series `/metrics` serves.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.lock().metrics.clone()
    }

    /// `/metrics` now: the gauges read from the state, then every series.
    pub fn scrape(&self) -> String {
        let (metrics, snapshot) = {
            let state = self.lock();
            (state.metrics.clone(), state.snapshot())
        };
        metrics.render(&snapshot)
    }

    /// SQLite integrity check of the coordinator database ("ok" when healthy).
    pub fn integrity_check(&self) -> Result<String, CoordinatorError> {
        Ok(self.lock().store.integrity_check()?)
    }
}

impl State {
    fn load(store: Store, liveness: Liveness) -> Result<Self, CoordinatorError> {
        let now = Instant::now();
        let mut state = State {
            next_seq: store.max_job_seq()? + 1,
            store,
            scheduler: Scheduler::new(),
            jobs: HashMap::new(),
            workers: HashMap::new(),
            watchers: HashMap::new(),
            liveness,
            session_epoch: 0,
            searches: HashMap::new(),
            trial_of: HashMap::new(),
            retry_at: Vec::new(),
            limits: Limits::default(),
            placed_at: HashMap::new(),
            growing: Default::default(),
            traces: Default::default(),
            metrics: Arc::new(Metrics::new()),
        };
        let acks = state.store.load_acks()?;
        for w in state.store.load_workers()? {
            let (boot_id, acked) = acks.get(&w.id).copied().unwrap_or_default();
            state.workers.insert(
                WorkerId::new(w.id),
                WorkerEntry {
                    info: w.info,
                    state: WorkerState::Disconnected,
                    reason: "coordinator restarted; waiting for the worker to reconnect".into(),
                    registered_ms: w.registered_ms,
                    last_seen_ms: w.last_seen_ms,
                    last_seen: now,
                    session: None,
                    disconnected_since: Some(now),
                    boot_id,
                    acked,
                    restored: true,
                    gpu_usage: Vec::new(),
                    missed: 0,
                },
            );
        }
        for row in state.store.load_jobs()? {
            state.restore_job(row);
        }
        state.restore_searches()?;
        Ok(state)
    }

    /// Builds the next event of a job (not yet stored).
    fn event(&self, row: &mut JobRow, kind: job_event::Kind) -> JobEvent {
        let seq = row.next_event;
        row.next_event += 1;
        JobEvent {
            job_id: row.job.job_id.clone(),
            seq,
            time: shoal_common::time::ms_to_timestamp(shoal_common::time::now_ms()),
            kind: Some(kind),
        }
    }

    /// Jobs and workers by state, and the queue, for a scrape.
    fn snapshot(&self) -> Snapshot {
        let mut jobs: std::collections::BTreeMap<String, i64> = Default::default();
        for j in self.jobs.values() {
            *jobs.entry(state_label(j.row.job.state().as_str_name())).or_default() += 1;
        }
        let mut workers: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for w in self.workers.values() {
            let role = if w.info.role.is_empty() { "worker".to_owned() } else { w.info.role.clone() };
            *workers.entry((role, state_label(w.state.as_str_name()))).or_default() += 1;
        }
        let queue_depth = jobs.get("queued").copied().unwrap_or(0);
        Snapshot { jobs: jobs.into_iter().collect(), queue_depth, workers: workers.into_iter().collect() }
    }

    /// Stores a job with its new events, then tells watchers.
    fn commit(&mut self, row: &JobRow, events: Vec<JobEvent>) -> Result<(), CoordinatorError> {
        self.store.save_job(row, &events)?;
        self.metrics.observe_events(row.job.spec.as_ref(), &events);
        let state = jobs::state_of(row);
        if state.is_terminal() {
            self.traces.close(&JobId::new(row.job.job_id.clone()), state, &row.job.reason, row.job.attempt);
        }
        if let Some(tx) = self.watchers.get(&JobId::new(row.job.job_id.clone())) {
            for e in events {
                let _ = tx.send(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
