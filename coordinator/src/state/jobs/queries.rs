//! Reading jobs: one job's public record with its live queue position and wait reason, and lists.

use shoal_common::JobId;
use shoal_common::proto::{Job, JobState};

use super::state_of;
use crate::error::CoordinatorError;
use crate::scheduler::Wait;
use crate::state::{JobEntry, State};

/// Most jobs one list returns.
const MAX_LIST: usize = 1000;

impl State {
    /// The public record of a job, with its live queue position and wait reason.
    pub fn view(&self, id: &JobId) -> Result<Job, CoordinatorError> {
        let entry = self.jobs.get(id).ok_or_else(|| CoordinatorError::JobNotFound { job_id: id.to_string() })?;
        let mut job = entry.row.job.clone();
        if state_of(&entry.row) == JobState::Queued {
            job.queue_position = self.scheduler.queue_position(id).unwrap_or(0) as u32;
            let d = entry.demand;
            let need = if d.ranks > 1 {
                format!("{} workers with {} each", d.ranks, d.per_rank)
            } else {
                d.per_rank.to_string()
            };
            let waiting = match self.scheduler.wait_reason(id) {
                _ if self.workers.values().all(|w| w.session.is_none()) => "waiting for a worker to connect".to_owned(),
                Some(Wait::TooLarge { fitting, largest: Some(l) }) if d.ranks > 1 => {
                    format!(
                        "not enough large workers: needs {need}{}; {fitting} can fit a rank (the largest offers {l})",
                        if d.needs_nccl { " and NCCL" } else { "" }
                    )
                }
                Some(Wait::TooLarge { largest: Some(l), .. }) => {
                    format!("no worker is large enough: needs {need}, the largest offers {l}")
                }
                Some(Wait::TooLarge { largest: None, .. }) if d.needs_nccl => {
                    "waiting for workers that can load NCCL".to_owned()
                }
                Some(Wait::TooLarge { largest: None, .. }) => "waiting for a worker to connect".to_owned(),
                Some(Wait::NoParamServers) => {
                    format!("waiting for a parameter server to register ({} shards)", d.ps_shards)
                }
                _ => format!("waiting for {need} to be free (position {} in the queue)", job.queue_position),
            };
            job.reason = if job.reason.is_empty() { waiting } else { format!("{}; {waiting}", job.reason) };
        }
        Ok(job)
    }

    pub fn get(&self, job_id: &str) -> Result<Job, CoordinatorError> {
        self.view(&JobId::new(job_id))
    }

    /// Jobs in the given states (all when empty), newest first.
    pub fn list(&self, states: &[JobState], limit: usize) -> Vec<Job> {
        let limit = if limit == 0 { 100 } else { limit.min(MAX_LIST) };
        let mut rows: Vec<&JobEntry> =
            self.jobs.values().filter(|e| states.is_empty() || states.contains(&state_of(&e.row))).collect();
        rows.sort_by_key(|e| std::cmp::Reverse(e.row.seq));
        rows.into_iter().take(limit).filter_map(|e| self.view(&JobId::new(e.row.job.job_id.clone())).ok()).collect()
    }
}
