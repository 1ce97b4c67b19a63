//! Job operations: submit, inspect, cancel, watch; placement onto workers; progress and results
//! reported by workers.

use shoal_common::proto::{
    Assignment, CancelJob, CoordinatorMessage, Job, JobEvent, JobFinished, JobMetric, JobNotice,
    JobResult, JobSpec, JobState, Notice, NoticeLevel, Outcome, Split, StateChanged,
    coordinator_message, job_event,
};
use shoal_common::time::{ms_to_timestamp, now_ms};
use shoal_common::{JobId, WorkerId, spec};
use tokio::sync::broadcast;

use super::{JobEntry, State};
use crate::error::CoordinatorError;
use crate::scheduler::{Placement, Resources, Wait};
use crate::store::JobRow;

/// Live events buffered per watched job before a slow watcher falls back to the database.
const WATCH_BUFFER: usize = 256;
/// Most jobs one list returns.
const MAX_LIST: usize = 1000;

fn demand_of(cfg: &spec::TrainConfig) -> Resources {
    Resources {
        cpus: cfg.resources.cpus,
        memory_mb: cfg.resources.memory_mb,
        gpus: cfg.resources.gpus,
    }
}

fn state_of(row: &JobRow) -> JobState {
    JobState::try_from(row.job.state).unwrap_or(JobState::Unspecified)
}

fn notice(level: NoticeLevel, message: impl Into<String>) -> job_event::Kind {
    job_event::Kind::Notice(Notice {
        level: level as i32,
        message: message.into(),
    })
}

/// What a new watcher gets: history, then live events until the job ends.
pub struct Subscription {
    pub history: Vec<JobEvent>,
    pub live: broadcast::Receiver<JobEvent>,
    pub finished: bool,
}

/// Whether an event makes its job terminal.
pub fn is_terminal_event(e: &JobEvent) -> bool {
    matches!(&e.kind, Some(job_event::Kind::State(s)) if JobState::try_from(s.state).is_ok_and(JobState::is_terminal))
}

impl State {
    /// Re-creates a job loaded from the database.
    pub(super) fn restore_job(&mut self, mut row: JobRow) {
        let id = JobId::new(row.job.job_id.clone());
        let demand = match row.job.spec.as_ref().map(spec::validate) {
            Some(Ok(cfg)) => demand_of(&cfg),
            Some(Err(errors)) => {
                if !state_of(&row).is_terminal() {
                    let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    self.set_state(
                        &mut row,
                        JobState::Failed,
                        format!("stored spec is no longer valid: {}", reasons.join("; ")),
                        None,
                    );
                }
                Resources::default()
            }
            None => Resources::default(),
        };
        if state_of(&row) == JobState::Queued {
            self.scheduler.enqueue(
                id.clone(),
                row.job.spec.as_ref().map_or(0, |s| s.priority),
                row.seq,
                demand,
            );
        }
        self.jobs.insert(id, JobEntry { row, demand });
    }

    pub fn submit(&mut self, spec: Option<JobSpec>) -> Result<Job, CoordinatorError> {
        let spec = spec.ok_or_else(|| CoordinatorError::invalid("spec", "required"))?;
        let cfg = spec::validate(&spec).map_err(CoordinatorError::InvalidSpec)?;
        let id = JobId::generate();
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut row = JobRow {
            job: Job {
                job_id: id.to_string(),
                spec: Some(spec),
                state: JobState::Queued as i32,
                reason: String::new(),
                submitted_at: ms_to_timestamp(now_ms()),
                ..Default::default()
            },
            seq,
            resume_from: String::new(),
            gpus: Vec::new(),
            next_event: 1,
            holds_worker: false,
        };
        let ev = self.event(
            &mut row,
            job_event::Kind::State(StateChanged {
                state: JobState::Queued as i32,
                reason: "submitted".into(),
                ..Default::default()
            }),
        );
        self.commit(&row, vec![ev])?;
        tracing::info!(job_id = %id, name = %cfg.name, priority = cfg.priority, "job submitted");
        let demand = demand_of(&cfg);
        self.scheduler
            .enqueue(id.clone(), cfg.priority, seq, demand);
        self.jobs.insert(id.clone(), JobEntry { row, demand });
        self.schedule();
        self.view(&id)
    }

    /// The public record of a job, with its live queue position and wait reason.
    pub fn view(&self, id: &JobId) -> Result<Job, CoordinatorError> {
        let entry = self
            .jobs
            .get(id)
            .ok_or_else(|| CoordinatorError::JobNotFound {
                job_id: id.to_string(),
            })?;
        let mut job = entry.row.job.clone();
        if state_of(&entry.row) == JobState::Queued {
            job.queue_position = self.scheduler.queue_position(id).unwrap_or(0) as u32;
            let waiting = match self.scheduler.wait_reason(id) {
                _ if self.workers.values().all(|w| w.session.is_none()) => {
                    "waiting for a worker to connect".to_owned()
                }
                Some(Wait::TooLarge { largest: Some(l) }) => format!(
                    "no worker is large enough: needs {}, the largest offers {l}",
                    entry.demand
                ),
                Some(Wait::TooLarge { largest: None }) => {
                    "waiting for a worker to connect".to_owned()
                }
                _ => format!(
                    "waiting for {} to be free (position {} in the queue)",
                    entry.demand, job.queue_position
                ),
            };
            job.reason = if job.reason.is_empty() {
                waiting
            } else {
                format!("{}; {waiting}", job.reason)
            };
        }
        Ok(job)
    }

    pub fn get(&self, job_id: &str) -> Result<Job, CoordinatorError> {
        self.view(&JobId::new(job_id))
    }

    /// Jobs in the given states (all when empty), newest first.
    pub fn list(&self, states: &[JobState], limit: usize) -> Vec<Job> {
        let limit = if limit == 0 { 100 } else { limit.min(MAX_LIST) };
        let mut rows: Vec<&JobEntry> = self
            .jobs
            .values()
            .filter(|e| states.is_empty() || states.contains(&state_of(&e.row)))
            .collect();
        rows.sort_by_key(|e| std::cmp::Reverse(e.row.seq));
        rows.into_iter()
            .take(limit)
            .filter_map(|e| self.view(&JobId::new(e.row.job.job_id.clone())).ok())
            .collect()
    }

    pub fn cancel(&mut self, job_id: &str, reason: &str) -> Result<Job, CoordinatorError> {
        let id = JobId::new(job_id);
        let entry = self
            .jobs
            .get(&id)
            .ok_or_else(|| CoordinatorError::JobNotFound {
                job_id: job_id.into(),
            })?;
        let state = state_of(&entry.row);
        if state.is_terminal() {
            return Err(CoordinatorError::AlreadyFinished {
                job_id: job_id.into(),
                state: state.label(),
            });
        }
        let reason = if reason.trim().is_empty() {
            "cancelled by user".to_owned()
        } else {
            format!("cancelled by user: {}", reason.trim())
        };
        let mut row = entry.row.clone();
        if state == JobState::Running {
            // The worker keeps its reservation until it confirms the job stopped.
            row.holds_worker = true;
            let worker = WorkerId::new(row.job.worker_id.clone());
            self.send(
                &worker,
                coordinator_message::Kind::Cancel(CancelJob {
                    job_id: job_id.into(),
                    attempt: row.job.attempt,
                    reason: reason.clone(),
                }),
            );
        } else {
            self.scheduler.dequeue(&id);
        }
        self.set_state(&mut row, JobState::Cancelled, reason, None);
        tracing::info!(job_id = %id, "job cancelled");
        self.schedule();
        self.view(&id)
    }

    /// History after `after` plus a live feed. Subscribing and reading the history happen under
    /// the same lock, so no event falls between them.
    pub fn subscribe(
        &mut self,
        job_id: &str,
        after: u64,
    ) -> Result<Subscription, CoordinatorError> {
        let id = JobId::new(job_id);
        let entry = self
            .jobs
            .get(&id)
            .ok_or_else(|| CoordinatorError::JobNotFound {
                job_id: job_id.into(),
            })?;
        let finished = state_of(&entry.row).is_terminal();
        let live = self
            .watchers
            .entry(id)
            .or_insert_with(|| broadcast::channel(WATCH_BUFFER).0)
            .subscribe();
        let history = self.store.events(job_id, after)?;
        Ok(Subscription {
            history,
            live,
            finished,
        })
    }

    /// Stored events after `after` (for a watcher that fell behind the live feed).
    pub fn events_after(
        &self,
        job_id: &str,
        after: u64,
    ) -> Result<Vec<JobEvent>, CoordinatorError> {
        Ok(self.store.events(job_id, after)?)
    }

    /// Drops live feeds nobody listens to any more.
    pub fn prune_watchers(&mut self) {
        self.watchers.retain(|_, tx| tx.receiver_count() > 0);
    }

    /// Changes a job's state, records the event and stores it.
    pub(super) fn set_state(
        &mut self,
        row: &mut JobRow,
        state: JobState,
        reason: String,
        result: Option<JobResult>,
    ) {
        let now = ms_to_timestamp(now_ms());
        row.job.state = state as i32;
        row.job.reason = reason.clone();
        if state == JobState::Running && row.job.started_at.is_none() {
            row.job.started_at = now;
        }
        if state.is_terminal() {
            row.job.finished_at = now;
        }
        if result.is_some() {
            row.job.result = result.clone();
        }
        let ev = self.event(
            row,
            job_event::Kind::State(StateChanged {
                state: state as i32,
                reason,
                worker_id: row.job.worker_id.clone(),
                attempt: row.job.attempt,
                result,
            }),
        );
        self.store_and_keep(row.clone(), vec![ev]);
    }

    /// Stores the row (logging failures: callers are reacting to workers, not serving a request)
    /// and keeps it in memory.
    fn store_and_keep(&mut self, row: JobRow, events: Vec<JobEvent>) {
        if let Err(e) = self.commit(&row, events) {
            tracing::error!(job_id = %row.job.job_id, error = %e, "could not store a job update");
        }
        let id = JobId::new(row.job.job_id.clone());
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.row = row;
        }
    }

    /// Starts every job that can start now.
    pub(super) fn schedule(&mut self) {
        for p in self.scheduler.place() {
            self.assign(p);
        }
    }

    fn assign(&mut self, p: Placement) {
        let Some(entry) = self.jobs.get(&p.job) else {
            return;
        };
        let mut row = entry.row.clone();
        row.job.attempt += 1;
        row.job.worker_id = p.worker.to_string();
        row.gpus = p.gpus.clone();
        let host = self
            .workers
            .get(&p.worker)
            .map_or_else(|| p.worker.to_string(), |w| w.describe(&p.worker));
        let resume = (!row.resume_from.is_empty()).then(|| row.resume_from.clone());
        let message = match &resume {
            Some(ckpt) => format!("assigned to worker {host}, resuming from {ckpt}"),
            None => format!("assigned to worker {host}"),
        };
        let ev = self.event(&mut row, notice(NoticeLevel::Info, message));
        self.store_and_keep(row.clone(), vec![ev]);
        self.set_state(
            &mut row,
            JobState::Running,
            format!("running on {host}"),
            None,
        );
        tracing::info!(job_id = %p.job, worker_id = %p.worker, attempt = row.job.attempt, "job assigned");
        let assignment = Assignment {
            job_id: p.job.to_string(),
            attempt: row.job.attempt,
            spec: row.job.spec.clone(),
            resume_from: row.resume_from.clone(),
            gpus: p.gpus,
        };
        self.send(&p.worker, coordinator_message::Kind::Assign(assignment));
    }

    /// Sends to a worker's session; a missing session is handled by liveness.
    pub(super) fn send(&mut self, worker: &WorkerId, kind: coordinator_message::Kind) {
        let sent = self
            .workers
            .get(worker)
            .and_then(|w| w.session.as_ref())
            .is_some_and(|s| {
                s.tx.send(Ok(CoordinatorMessage { kind: Some(kind) }))
                    .is_ok()
            });
        if !sent {
            tracing::warn!(worker_id = %worker, "worker has no open session; liveness checks will resolve its jobs");
        }
    }

    /// The job a worker reports about, if the report is current.
    fn reported_job(&self, worker: &WorkerId, job_id: &str, attempt: u32) -> Option<JobRow> {
        let entry = self.jobs.get(&JobId::new(job_id))?;
        let current =
            entry.row.job.worker_id == worker.as_str() && entry.row.job.attempt == attempt;
        if !current {
            tracing::debug!(job_id, worker_id = %worker, attempt, "ignoring a report about a stale attempt");
            return None;
        }
        Some(entry.row.clone())
    }

    pub(super) fn on_started(&mut self, worker: &WorkerId, job_id: &str, attempt: u32) {
        if let Some(mut row) = self
            .reported_job(worker, job_id, attempt)
            .filter(|r| state_of(r) == JobState::Running)
        {
            let ev = self.event(
                &mut row,
                notice(
                    NoticeLevel::Info,
                    format!("training started on {worker} (attempt {attempt})"),
                ),
            );
            self.store_and_keep(row, vec![ev]);
        }
    }

    pub(super) fn on_metric(&mut self, worker: &WorkerId, m: JobMetric) {
        let Some(point) = m.point else { return };
        let Some(mut row) = self
            .reported_job(worker, &m.job_id, m.attempt)
            .filter(|r| state_of(r) == JobState::Running)
        else {
            return;
        };
        if point.split == Split::Validation as i32 {
            row.job.last_validation = Some(point.clone());
        } else {
            row.job.last_train = Some(point.clone());
        }
        let ev = self.event(&mut row, job_event::Kind::Metric(point));
        self.store_and_keep(row, vec![ev]);
    }

    pub(super) fn on_notice(&mut self, worker: &WorkerId, n: JobNotice) {
        let Some(notice) = n.notice else { return };
        let Some(mut row) = self
            .reported_job(worker, &n.job_id, n.attempt)
            .filter(|r| state_of(r) == JobState::Running)
        else {
            return;
        };
        let ev = self.event(&mut row, job_event::Kind::Notice(notice));
        self.store_and_keep(row, vec![ev]);
    }

    pub(super) fn on_finished(&mut self, worker: &WorkerId, f: JobFinished) {
        let Some(mut row) = self.reported_job(worker, &f.job_id, f.attempt) else {
            return;
        };
        let id = JobId::new(f.job_id.clone());
        self.scheduler.release(&id);
        if state_of(&row).is_terminal() {
            // Cancelled while running: the worker confirmed it stopped; free its reservation.
            row.holds_worker = false;
            self.store_and_keep(row, Vec::new());
            self.schedule();
            return;
        }
        let outcome = Outcome::try_from(f.outcome).unwrap_or(Outcome::Unspecified);
        match outcome {
            Outcome::Succeeded => {
                tracing::info!(job_id = %id, worker_id = %worker, "job succeeded");
                self.set_state(&mut row, JobState::Succeeded, "finished".into(), f.result);
            }
            Outcome::Cancelled => self.set_state(
                &mut row,
                JobState::Cancelled,
                "cancelled on the worker".into(),
                None,
            ),
            Outcome::Interrupted => {
                row.resume_from = f.checkpoint.clone();
                let reason = if f.checkpoint.is_empty() {
                    format!(
                        "interrupted at step {} on {worker} (worker draining); restarting",
                        f.step
                    )
                } else {
                    format!(
                        "interrupted at step {} on {worker} (worker draining); will resume from its checkpoint",
                        f.step
                    )
                };
                tracing::info!(job_id = %id, worker_id = %worker, step = f.step, "job interrupted, requeued");
                self.set_state(&mut row, JobState::Queued, reason, None);
                let entry = self.jobs.get(&id).map(|e| e.demand).unwrap_or_default();
                self.scheduler.enqueue(
                    id,
                    row.job.spec.as_ref().map_or(0, |s| s.priority),
                    row.seq,
                    entry,
                );
            }
            Outcome::Failed | Outcome::Unspecified => {
                let error = if f.error.is_empty() {
                    "the worker reported a failure without a reason".to_owned()
                } else {
                    f.error
                };
                tracing::warn!(job_id = %id, worker_id = %worker, error = %error, "job failed");
                self.set_state(&mut row, JobState::Failed, error, None);
            }
        }
        self.schedule();
    }

    /// Fails (or frees) every job a lost worker held.
    pub(super) fn fail_jobs_of(&mut self, worker: &WorkerId, why: &str) {
        self.scheduler.remove_worker(worker);
        let affected: Vec<JobRow> = self
            .jobs
            .values()
            .filter(|e| {
                e.row.job.worker_id == worker.as_str()
                    && (state_of(&e.row) == JobState::Running || e.row.holds_worker)
            })
            .map(|e| e.row.clone())
            .collect();
        for mut row in affected {
            row.holds_worker = false;
            if state_of(&row) == JobState::Running {
                tracing::warn!(job_id = %row.job.job_id, worker_id = %worker, reason = why, "job failed: worker lost");
                self.set_state(&mut row, JobState::Failed, why.to_owned(), None);
            } else {
                self.store_and_keep(row, Vec::new());
            }
        }
    }

    /// Whether the job currently runs on this worker in this attempt.
    pub(super) fn runs_on(&self, job_id: &str, attempt: u32, worker: &WorkerId) -> bool {
        self.jobs.get(&JobId::new(job_id)).is_some_and(|e| {
            state_of(&e.row) == JobState::Running
                && e.row.job.worker_id == worker.as_str()
                && e.row.job.attempt == attempt
        })
    }

    /// Jobs the coordinator believes run on a worker.
    pub(super) fn jobs_on(&self, worker: &WorkerId) -> Vec<(JobId, u32, Resources, Vec<u32>)> {
        self.jobs
            .iter()
            .filter(|(_, e)| {
                e.row.job.worker_id == worker.as_str()
                    && (state_of(&e.row) == JobState::Running || e.row.holds_worker)
            })
            .map(|(id, e)| (id.clone(), e.row.job.attempt, e.demand, e.row.gpus.clone()))
            .collect()
    }

    /// Marks a job that a reconnecting worker no longer runs as failed.
    pub(super) fn forget_on_worker(&mut self, job: &JobId, why: String) {
        let Some(mut row) = self.jobs.get(job).map(|e| e.row.clone()) else {
            return;
        };
        self.scheduler.release(job);
        row.holds_worker = false;
        if state_of(&row) == JobState::Running {
            self.set_state(&mut row, JobState::Failed, why, None);
        } else {
            self.store_and_keep(row, Vec::new());
        }
    }
}
