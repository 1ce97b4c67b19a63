//! Worker reports about the ranks they run: started, metrics, notices, checkpoints, rendezvous
//! values and the final outcome.

use shoal_common::proto::{
    JobCheckpointed, JobFinished, JobMetric, JobNotice, JobState, NoticeLevel, Outcome, RendezvousPublish,
    RendezvousValue, Split, coordinator_message, job_event,
};
use shoal_common::{JobId, WorkerId};

use super::{notice, running_ranks, state_of};
use crate::state::State;
use crate::store::JobRow;

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed | Outcome::Unspecified => "failed",
        Outcome::Cancelled => "cancelled",
        Outcome::Interrupted => "interrupted",
    }
}

impl State {
    /// The job a worker reports about and the rank it runs, if the report is current.
    fn reported_job(&self, worker: &WorkerId, job_id: &str, attempt: u32) -> Option<(JobRow, usize)> {
        let entry = self.jobs.get(&JobId::new(job_id))?;
        let rank = entry.row.job.ranks.iter().position(|r| r.worker_id == worker.as_str());
        match rank.filter(|_| entry.row.job.attempt == attempt) {
            Some(r) => Some((entry.row.clone(), r)),
            None => {
                tracing::debug!(job_id, worker_id = %worker, attempt, "ignoring a report about a stale attempt");
                None
            }
        }
    }

    pub(in crate::state) fn on_started(&mut self, worker: &WorkerId, job_id: &str, attempt: u32) {
        if let Some((mut row, rank)) =
            self.reported_job(worker, job_id, attempt).filter(|(r, _)| state_of(r) == JobState::Running)
        {
            let who = if row.job.ranks.len() > 1 {
                format!("rank {rank} started on {worker}")
            } else {
                format!("training started on {worker}")
            };
            let ev = self.event(&mut row, notice(NoticeLevel::Info, format!("{who} (attempt {attempt})")));
            self.store_and_keep(row, vec![ev]);
        }
    }

    pub(in crate::state) fn on_metric(&mut self, worker: &WorkerId, m: JobMetric) {
        let Some(point) = m.point else { return };
        let Some((mut row, rank)) =
            self.reported_job(worker, &m.job_id, m.attempt).filter(|(r, _)| state_of(r) == JobState::Running)
        else {
            return;
        };
        if point.split == Split::Validation as i32 {
            row.job.last_validation = Some(point.clone());
        } else {
            row.job.ranks[rank].last_train = Some(point.clone());
            if rank == 0 {
                row.job.last_train = Some(point.clone());
            }
        }
        let validation = point.split == Split::Validation as i32;
        let ev = self.event(&mut row, job_event::Kind::Metric(point.clone()));
        self.store_and_keep(row, vec![ev]);
        if validation {
            self.trial_reported(&JobId::new(m.job_id), &point);
        }
    }

    pub(in crate::state) fn on_notice(&mut self, worker: &WorkerId, n: JobNotice) {
        let Some(notice) = n.notice else { return };
        let Some((mut row, _)) =
            self.reported_job(worker, &n.job_id, n.attempt).filter(|(r, _)| state_of(r) == JobState::Running)
        else {
            return;
        };
        let ev = self.event(&mut row, job_event::Kind::Notice(notice));
        self.store_and_keep(row, vec![ev]);
    }

    pub(in crate::state) fn on_checkpointed(&mut self, worker: &WorkerId, c: JobCheckpointed) {
        // Rank 0 names the checkpoint to resume from; pipeline stages derive theirs from it.
        if let Some((mut row, 0)) = self.reported_job(worker, &c.job_id, c.attempt) {
            row.last_checkpoint = c.path;
            self.store_and_keep(row, Vec::new());
        }
    }

    /// Relays a value one rank published to the job's other ranks.
    pub(in crate::state) fn on_publish(&mut self, worker: &WorkerId, p: RendezvousPublish) {
        let Some((row, from)) = self.reported_job(worker, &p.job_id, p.attempt) else { return };
        tracing::debug!(job_id = %p.job_id, key = %p.key, from, "relaying a rendezvous value");
        for (rank, target) in running_ranks(&row) {
            if rank != from {
                let value = RendezvousValue {
                    job_id: p.job_id.clone(),
                    attempt: p.attempt,
                    key: p.key.clone(),
                    value: p.value.clone(),
                    from_rank: from as u32,
                };
                self.send(&target, coordinator_message::Kind::Rendezvous(value));
            }
        }
    }

    pub(in crate::state) fn on_finished(&mut self, worker: &WorkerId, f: JobFinished) {
        let Some((mut row, rank)) = self.reported_job(worker, &f.job_id, f.attempt) else { return };
        let id = JobId::new(f.job_id.clone());
        let world = row.job.ranks.len();
        self.scheduler.release_rank(&id, worker);
        let outcome = Outcome::try_from(f.outcome).unwrap_or(Outcome::Unspecified);
        row.job.ranks[rank].state = outcome_label(outcome).into();
        let still_running = !running_ranks(&row).is_empty();
        if state_of(&row).is_terminal() || state_of(&row) == JobState::Queued {
            // The job already ended (or was requeued); this rank confirmed it stopped.
            row.holds_worker = still_running;
            self.store_and_keep(row, Vec::new());
            self.schedule();
            return;
        }
        match outcome {
            Outcome::Succeeded => {
                if rank == 0 {
                    row.job.result = f.result;
                }
                if row.job.ranks.iter().all(|r| r.state == "succeeded") {
                    tracing::info!(job_id = %id, "job succeeded");
                    let result = row.job.result.clone();
                    self.set_state(&mut row, JobState::Succeeded, "finished".into(), result);
                } else {
                    self.store_and_keep(row, Vec::new());
                }
            }
            Outcome::Cancelled if !row.job.ranks.iter().any(|r| r.state == "interrupted") => {
                self.stop_ranks(&mut row, Some(rank), "another rank was cancelled");
                self.set_state(&mut row, JobState::Cancelled, "cancelled on the worker".into(), None);
            }
            Outcome::Interrupted | Outcome::Cancelled => {
                // A draining rank stops; its siblings are stopped too (ranks of all-reduce jobs
                // stop together by themselves), and once none runs the job is requeued.
                if rank == 0 && !f.checkpoint.is_empty() {
                    row.last_checkpoint = f.checkpoint.clone();
                }
                if still_running {
                    self.stop_ranks_with(&mut row, Some(rank), "another rank is draining", true);
                    self.store_and_keep(row, Vec::new());
                } else {
                    row.resume_from = row.last_checkpoint.clone();
                    let reason = if self.growing.remove(&id) {
                        format!("resizing: checkpointed at step {} to restart on more workers", f.step)
                    } else if row.resume_from.is_empty() {
                        format!("interrupted at step {} on {worker} (worker draining); restarting", f.step)
                    } else {
                        format!(
                            "interrupted at step {} on {worker} (worker draining); will resume from its checkpoint",
                            f.step
                        )
                    };
                    tracing::info!(job_id = %id, worker_id = %worker, step = f.step, "job interrupted, requeued");
                    self.set_state(&mut row, JobState::Queued, reason, None);
                    let (priority, demand) =
                        (row.job.spec.as_ref().map_or(0, |s| s.priority), self.jobs.get(&id).map(|e| e.demand));
                    if let Some(demand) = demand {
                        self.scheduler.enqueue(id, priority, row.seq, demand);
                    }
                }
            }
            Outcome::Failed | Outcome::Unspecified => {
                let error = if f.error.is_empty() {
                    "the worker reported a failure without a reason".to_owned()
                } else {
                    f.error
                };
                let error = if world > 1 { format!("rank {rank} on {}: {error}", self.host_of(worker)) } else { error };
                tracing::warn!(job_id = %id, worker_id = %worker, error = %error, "job failed");
                self.stop_ranks(&mut row, Some(rank), "another rank failed");
                self.fail_or_retry(&mut row, error, f.retryable);
            }
        }
        self.schedule();
    }
}
