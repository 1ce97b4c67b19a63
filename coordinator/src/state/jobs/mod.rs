//! Job operations, one file per responsibility: submitting and cancelling, queries, watching,
//! assignment onto workers, worker reports, recovery and elastic growth. This module holds what
//! they share: a job's demand, state changes and how they are stored and sent.

mod assign;
mod elastic;
mod queries;
mod recovery;
mod reports;
mod submit;
mod teacher;
mod watch;

pub use watch::{Subscription, is_terminal_event};

use shoal_common::proto::{
    CancelJob, CoordinatorMessage, JobEnded, JobEvent, JobResult, JobState, Notice, NoticeLevel, StateChanged,
    coordinator_message, job_event,
};
use shoal_common::spec::{Backend, FieldError, SyncKind, TrainConfig};
use shoal_common::time::{ms_to_timestamp, now_ms};
use shoal_common::{JobId, WorkerId};

use super::State;
use crate::scheduler::{Demand, Resources};
use crate::store::JobRow;

/// Rank states (`RankStatus.state`).
const RANK_RUNNING: &str = "running";
/// What a job needs of the cluster, from its validated spec.
fn demand_of(cfg: &TrainConfig) -> Demand {
    let ps_shards = match cfg.parallel.sync {
        SyncKind::ParamServer { shards, .. } => shards as u32,
        SyncKind::AllReduce => 0,
    };
    Demand {
        per_rank: Resources { cpus: cfg.resources.cpus, memory_mb: cfg.resources.memory_mb, gpus: cfg.resources.gpus },
        ranks: (cfg.parallel.data * cfg.parallel.pipeline.stages) as u32,
        min_ranks: (cfg.parallel.min_data * cfg.parallel.pipeline.stages) as u32,
        needs_nccl: ps_shards == 0 && cfg.parallel.backend == Backend::Nccl,
        ps_shards,
    }
}

/// A stored job's state (`Unspecified` for a value this build does not know).
pub(super) fn state_of(row: &JobRow) -> JobState {
    JobState::try_from(row.job.state).unwrap_or(JobState::Unspecified)
}

/// A notice event.
pub(super) fn notice(level: NoticeLevel, message: impl Into<String>) -> job_event::Kind {
    job_event::Kind::Notice(Notice { level: level as i32, message: message.into() })
}

/// Field errors as one line, `; ` between them.
pub(super) fn joined(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Ranks (and their workers) still running.
fn running_ranks(row: &JobRow) -> Vec<(usize, WorkerId)> {
    row.job
        .ranks
        .iter()
        .filter(|r| r.state == RANK_RUNNING)
        .map(|r| (r.rank as usize, WorkerId::new(r.worker_id.clone())))
        .collect()
}

impl State {
    /// Sends a cancellation to every running rank except `except`; the job keeps their
    /// reservations until they confirm.
    pub(super) fn stop_ranks(&mut self, row: &mut JobRow, except: Option<usize>, reason: &str) {
        self.stop_ranks_with(row, except, reason, false);
    }

    /// [`Self::stop_ranks`]; with `requeue` the ranks checkpoint before they stop.
    pub(super) fn stop_ranks_with(&mut self, row: &mut JobRow, except: Option<usize>, reason: &str, requeue: bool) {
        for (rank, worker) in running_ranks(row) {
            if Some(rank) == except {
                continue;
            }
            let cancel = CancelJob {
                job_id: row.job.job_id.clone(),
                attempt: row.job.attempt,
                reason: reason.to_owned(),
                checkpoint_and_requeue: requeue,
            };
            self.send(&worker, coordinator_message::Kind::Cancel(cancel));
            row.holds_worker = true;
        }
    }

    /// Changes a job's state, records the event and stores it.
    pub(super) fn set_state(&mut self, row: &mut JobRow, state: JobState, reason: String, result: Option<JobResult>) {
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
        if (state.is_terminal() || state == JobState::Queued) && !row.job.ps_shards.is_empty() {
            self.end_shards(row, state);
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
        if state.is_terminal() {
            self.trial_ended(row);
        }
    }

    /// Tells a job attempt's parameter servers that it is over, and frees their shard slots.
    fn end_shards(&mut self, row: &JobRow, state: JobState) {
        let id = JobId::new(row.job.job_id.clone());
        self.scheduler.release_shards(&id);
        let mut told = std::collections::BTreeSet::new();
        for s in &row.job.ps_shards {
            if told.insert(s.node_id.clone()) {
                let ended =
                    JobEnded { job_id: row.job.job_id.clone(), attempt: row.job.attempt, reason: state.label().into() };
                self.send(&WorkerId::new(s.node_id.clone()), coordinator_message::Kind::Ended(ended));
            }
        }
    }

    /// Stores the row (logging failures: callers are reacting to workers, not serving a request)
    /// and keeps it in memory.
    pub(super) fn store_and_keep(&mut self, row: JobRow, events: Vec<JobEvent>) {
        if let Err(e) = self.commit(&row, events) {
            tracing::error!(job_id = %row.job.job_id, error = %e, "could not store a job update");
        }
        let id = JobId::new(row.job.job_id.clone());
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.row = row;
        }
    }

    /// A worker as people read it: its id, with its host name when known.
    fn host_of(&self, worker: &WorkerId) -> String {
        self.workers.get(worker).map_or_else(|| worker.to_string(), |w| w.describe(worker))
    }

    /// Sends to a worker's session; a missing session is handled by liveness.
    pub(super) fn send(&mut self, worker: &WorkerId, kind: coordinator_message::Kind) {
        let sent = self
            .workers
            .get(worker)
            .and_then(|w| w.session.as_ref())
            .is_some_and(|s| s.tx.send(Ok(CoordinatorMessage { kind: Some(kind) })).is_ok());
        if !sent {
            tracing::warn!(worker_id = %worker, "worker has no open session; liveness checks will resolve its jobs");
        }
    }
}
