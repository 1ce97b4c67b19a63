//! Submitting and cancelling jobs: size and quota checks, the first stored record, the queue.

use shoal_common::proto::{Job, JobSpec, JobState, StateChanged, job_event};
use shoal_common::spec::TrainConfig;
use shoal_common::time::{ms_to_timestamp, now_ms};
use shoal_common::{JobId, spec};

use super::{demand_of, state_of};
use crate::error::CoordinatorError;
use crate::state::traces::Kind;
use crate::state::{JobEntry, State};
use crate::store::JobRow;

/// Largest job spec accepted (encoded), against specs that bloat the database and every watcher.
const MAX_SPEC_BYTES: usize = 256 * 1024;

impl State {
    pub fn submit(&mut self, spec: Option<JobSpec>) -> Result<Job, CoordinatorError> {
        let mut spec = spec.ok_or_else(|| CoordinatorError::invalid("spec", "required"))?;
        let size = prost::Message::encoded_len(&spec);
        if size > MAX_SPEC_BYTES {
            return Err(CoordinatorError::invalid("spec", format!("{size} bytes, at most {MAX_SPEC_BYTES}")));
        }
        self.resolve_teacher(&mut spec)?;
        // A search validates its template without the `search` section; an evaluation job is
        // refused as a search by the job's own validation below.
        if spec.search.is_some() && spec.evaluate.is_none() {
            return self.submit_search(spec);
        }
        let cfg = spec::validate(&spec).map_err(CoordinatorError::InvalidSpec)?;
        self.check_workers(&cfg, "parallelism")?;
        let id = self.enqueue_new(spec, &cfg, "submitted", None)?;
        self.schedule();
        self.view(&id)
    }

    /// Refuses a job that would occupy more workers than the operator allows.
    pub(in crate::state) fn check_workers(&self, cfg: &TrainConfig, field: &str) -> Result<(), CoordinatorError> {
        let limit = self.limits.max_workers_per_job;
        let ranks = demand_of(cfg).ranks;
        if limit > 0 && ranks > limit {
            return Err(CoordinatorError::invalid(
                field,
                format!("needs {ranks} workers; this coordinator allows at most {limit} per job (max_workers_per_job)"),
            ));
        }
        Ok(())
    }

    /// Creates a job record in `state` (queued, or running for jobs the coordinator runs itself)
    /// with its first event, and stores it.
    pub(in crate::state) fn store_new(
        &mut self,
        id: &JobId,
        spec: JobSpec,
        state: JobState,
        reason: &str,
    ) -> Result<JobRow, CoordinatorError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = ms_to_timestamp(now_ms());
        let running = state == JobState::Running;
        let mut row = JobRow {
            job: Job {
                job_id: id.to_string(),
                spec: Some(spec),
                state: state as i32,
                // A queued job's reason is its live wait reason (see `view`).
                reason: if running { reason.to_owned() } else { String::new() },
                submitted_at: now,
                started_at: if running { now } else { None },
                attempt: u32::from(running),
                ..Default::default()
            },
            seq,
            resume_from: String::new(),
            last_checkpoint: String::new(),
            gpus: Vec::new(),
            next_event: 1,
            holds_worker: false,
        };
        let change =
            StateChanged { state: state as i32, reason: reason.into(), attempt: row.job.attempt, ..Default::default() };
        let ev = self.event(&mut row, job_event::Kind::State(change));
        self.commit(&row, vec![ev])?;
        Ok(row)
    }

    /// Stores a new job and queues it; `search` is the search it is a trial of.
    pub(in crate::state) fn enqueue_new(
        &mut self,
        spec: JobSpec,
        cfg: &TrainConfig,
        reason: &str,
        search: Option<&JobId>,
    ) -> Result<JobId, CoordinatorError> {
        let id = JobId::generate();
        let row = self.store_new(&id, spec, JobState::Queued, reason)?;
        let seq = row.seq;
        tracing::info!(job_id = %id, name = %cfg.name, priority = cfg.priority, ranks = cfg.parallel.data, "job submitted");
        let demand = demand_of(cfg);
        self.scheduler.enqueue(id.clone(), cfg.priority, seq, demand);
        self.jobs.insert(id.clone(), JobEntry { row, demand, backend: cfg.parallel.backend });
        let kind = if search.is_some() { Kind::Trial } else { Kind::Job };
        self.traces.open(&id, &cfg.name, kind, search, false);
        Ok(id)
    }

    pub fn cancel(&mut self, job_id: &str, reason: &str) -> Result<Job, CoordinatorError> {
        let id = JobId::new(job_id);
        let entry = self.jobs.get(&id).ok_or_else(|| CoordinatorError::JobNotFound { job_id: job_id.into() })?;
        let state = state_of(&entry.row);
        if state.is_terminal() {
            return Err(CoordinatorError::AlreadyFinished { job_id: job_id.into(), state: state.label() });
        }
        let reason = if reason.trim().is_empty() {
            "cancelled by user".to_owned()
        } else {
            format!("cancelled by user: {}", reason.trim())
        };
        let mut row = entry.row.clone();
        if self.searches.contains_key(&id) {
            self.end_search(&id, JobState::Cancelled, reason.clone());
            self.schedule();
            return self.view(&id);
        }
        if state == JobState::Running {
            // The workers keep their reservations until they confirm the ranks stopped.
            self.stop_ranks(&mut row, None, &reason);
        } else {
            self.scheduler.dequeue(&id);
        }
        self.set_state(&mut row, JobState::Cancelled, reason, None);
        tracing::info!(job_id = %id, "job cancelled");
        self.schedule();
        self.view(&id)
    }
}
