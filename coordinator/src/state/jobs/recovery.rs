//! Recovery: jobs restored after a coordinator restart, automatic restarts with backoff after
//! infrastructure failures, and ranks lost with their workers.

use shoal_common::proto::JobState;
use shoal_common::spec::Backend;
use shoal_common::{JobId, WorkerId, spec};

use super::{RANK_RUNNING, demand_of, joined, running_ranks, state_of};
use crate::scheduler::{Demand, Resources};
use crate::state::traces::Kind;
use crate::state::{JobEntry, State};
use crate::store::JobRow;

/// Longest wait before an automatic restart.
const RETRY_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl State {
    /// Re-creates a job loaded from the database.
    pub(in crate::state) fn restore_job(&mut self, mut row: JobRow) {
        let id = JobId::new(row.job.job_id.clone());
        let (demand, backend) = match row.job.spec.as_ref().map(spec::validate) {
            Some(Ok(cfg)) => (demand_of(&cfg), cfg.parallel.backend),
            Some(Err(errors)) => {
                if !state_of(&row).is_terminal() {
                    let reason = format!("stored spec is no longer valid: {}", joined(&errors));
                    self.set_state(&mut row, JobState::Failed, reason, None);
                }
                (Demand::single(Resources::default()), Backend::Auto)
            }
            None => (Demand::single(Resources::default()), Backend::Auto),
        };
        if state_of(&row) == JobState::Queued {
            self.scheduler.enqueue(id.clone(), row.job.spec.as_ref().map_or(0, |s| s.priority), row.seq, demand);
        }
        if !state_of(&row).is_terminal() {
            let spec = row.job.spec.as_ref();
            let kind = if spec.is_some_and(|s| s.search.is_some()) { Kind::Search } else { Kind::Job };
            self.traces.open(&id, spec.map_or("", |s| s.name.as_str()), kind, None, true);
        }
        self.jobs.insert(id, JobEntry { row, demand, backend });
    }

    /// Ends a running job after a failure. When the failure came from the infrastructure and the
    /// job has restarts left, it is requeued to resume from its last checkpoint once every rank
    /// has stopped and a backoff (1, 2, 4, ... up to 30 s) has passed; otherwise it fails.
    pub(in crate::state) fn fail_or_retry(&mut self, row: &mut JobRow, reason: String, retryable: bool) {
        let max = row.job.spec.as_ref().and_then(|s| spec::validate(s).ok()).map_or(0, |c| c.training.max_retries);
        if !retryable || row.job.retries >= max {
            let reason = if retryable && max > 0 { format!("{reason} (gave up after {max} restarts)") } else { reason };
            self.set_state(row, JobState::Failed, reason, None);
            return;
        }
        row.job.retries += 1;
        row.resume_from = row.last_checkpoint.clone();
        let delay = std::time::Duration::from_secs(1u64 << (row.job.retries - 1).min(5)).min(RETRY_BACKOFF_MAX);
        let from = if row.resume_from.is_empty() {
            "from the start".to_owned()
        } else {
            format!("from checkpoint {}", row.resume_from)
        };
        let why = format!("{reason}; restarting {from} in {}s (restart {} of {max})", delay.as_secs(), row.job.retries);
        tracing::warn!(job_id = %row.job.job_id, retries = row.job.retries, "job failed; restarting: {why}");
        self.set_state(row, JobState::Queued, why, None);
        self.retry_at.push((tokio::time::Instant::now() + delay, JobId::new(row.job.job_id.clone())));
    }

    /// Queues the restarts whose backoff has passed and whose ranks have all stopped.
    pub(in crate::state) fn requeue_due(&mut self, now: tokio::time::Instant) {
        let mut due = Vec::new();
        self.retry_at.retain(|(at, id)| {
            let ready = *at <= now;
            if ready {
                due.push(id.clone());
            }
            !ready
        });
        let mut queued = false;
        for id in due {
            let Some(entry) = self.jobs.get(&id) else { continue };
            if state_of(&entry.row) != JobState::Queued {
                continue;
            }
            if entry.row.holds_worker {
                // Some rank has not confirmed that it stopped: look again on the next tick.
                self.retry_at.push((now, id));
                continue;
            }
            let (priority, seq, demand) =
                (entry.row.job.spec.as_ref().map_or(0, |s| s.priority), entry.row.seq, entry.demand);
            self.scheduler.enqueue(id, priority, seq, demand);
            queued = true;
        }
        if queued {
            self.schedule();
        }
    }

    /// Fails every job that had a rank on a lost worker, and frees what they held.
    pub(in crate::state) fn fail_jobs_of(&mut self, worker: &WorkerId, why: &str) {
        self.scheduler.remove_worker(worker);
        let holds_shard = |row: &JobRow| {
            state_of(row) == JobState::Running && row.job.ps_shards.iter().any(|s| s.node_id == worker.as_str())
        };
        let shard_jobs: Vec<JobRow> =
            self.jobs.values().filter(|e| holds_shard(&e.row)).map(|e| e.row.clone()).collect();
        for mut row in shard_jobs {
            let shard = row.job.ps_shards.iter().find(|s| s.node_id == worker.as_str()).map_or(0, |s| s.shard);
            let reason = format!("parameter server shard {shard} on {why}");
            tracing::warn!(job_id = %row.job.job_id, node_id = %worker, reason, "job failed: parameter server lost");
            self.stop_ranks(&mut row, None, "a parameter server was lost");
            self.fail_or_retry(&mut row, reason, true);
        }
        let affected: Vec<JobRow> = self
            .jobs
            .values()
            .filter(|e| e.row.job.ranks.iter().any(|r| r.worker_id == worker.as_str() && r.state == RANK_RUNNING))
            .map(|e| e.row.clone())
            .collect();
        for mut row in affected {
            let Some(rank) = row.job.ranks.iter().position(|r| r.worker_id == worker.as_str()) else { continue };
            row.job.ranks[rank].state = "lost".into();
            let running = state_of(&row) == JobState::Running;
            if running {
                let reason = if row.job.ranks.len() > 1 { format!("rank {rank} on {why}") } else { why.to_owned() };
                tracing::warn!(job_id = %row.job.job_id, worker_id = %worker, reason, "job failed: worker lost");
                row.holds_worker = false;
                self.stop_ranks(&mut row, Some(rank), "another rank's worker was lost");
                self.fail_or_retry(&mut row, reason, true);
            } else {
                row.holds_worker = !running_ranks(&row).is_empty();
                self.store_and_keep(row, Vec::new());
            }
        }
    }

    /// Whether the job currently runs a rank on this worker in this attempt.
    pub(in crate::state) fn runs_on(&self, job_id: &str, attempt: u32, worker: &WorkerId) -> bool {
        self.jobs.get(&JobId::new(job_id)).is_some_and(|e| {
            state_of(&e.row) == JobState::Running
                && e.row.job.attempt == attempt
                && e.row.job.ranks.iter().any(|r| r.worker_id == worker.as_str() && r.state == RANK_RUNNING)
        })
    }

    /// Ranks the coordinator believes run on a worker: (job, attempt, rank, per-rank demand, GPUs).
    pub(in crate::state) fn ranks_on(&self, worker: &WorkerId) -> Vec<(JobId, u32, usize, Resources, Vec<u32>)> {
        let mut out = Vec::new();
        for (id, e) in &self.jobs {
            for r in e.row.job.ranks.iter().filter(|r| r.worker_id == worker.as_str() && r.state == RANK_RUNNING) {
                let gpus = e.row.gpus.get(r.rank as usize).cloned().unwrap_or_default();
                out.push((id.clone(), e.row.job.attempt, r.rank as usize, e.demand.per_rank, gpus));
            }
        }
        out
    }

    /// A reconnecting worker no longer runs this rank: the rank is lost.
    pub(in crate::state) fn forget_rank(&mut self, job: &JobId, worker: &WorkerId, why: String) {
        let Some(mut row) = self.jobs.get(job).map(|e| e.row.clone()) else { return };
        self.scheduler.release_rank(job, worker);
        let Some(rank) = row.job.ranks.iter().position(|r| r.worker_id == worker.as_str()) else { return };
        row.job.ranks[rank].state = "lost".into();
        if state_of(&row) == JobState::Running {
            row.holds_worker = false;
            self.stop_ranks(&mut row, Some(rank), "another rank was lost");
            let why = if row.job.ranks.len() > 1 { format!("rank {rank}: {why}") } else { why };
            self.fail_or_retry(&mut row, why, true);
        } else {
            row.holds_worker = !running_ranks(&row).is_empty();
            self.store_and_keep(row, Vec::new());
        }
    }
}
