//! Elastic growth: a job running below its most ranks checkpoints and is placed again when
//! workers are idle and nothing waits in the queue.

use shoal_common::JobId;
use shoal_common::proto::{JobState, NoticeLevel};

use super::{RANK_RUNNING, notice, state_of};
use crate::scheduler::Demand;
use crate::state::State;

/// An elastic job runs at least this long on a placement before it grows again.
const GROW_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl State {
    /// Elastic jobs running below their most ranks grow when workers could take more ranks and
    /// nothing waits in the queue: their ranks checkpoint and stop, and the job is placed again
    /// with as many ranks as fit (at most once per `GROW_AFTER` of running).
    pub(in crate::state) fn grow_elastic(&mut self, now: tokio::time::Instant) {
        let jobs = &self.jobs;
        let running = |id: &JobId| jobs.get(id).is_some_and(|e| state_of(&e.row) == JobState::Running);
        self.growing.retain(|id| running(id));
        self.placed_at.retain(|id, _| running(id));
        if self.scheduler.has_queued() {
            return;
        }
        let candidates: Vec<(JobId, Demand, usize)> = self
            .jobs
            .iter()
            .filter(|(id, e)| {
                state_of(&e.row) == JobState::Running
                    && e.demand.min_ranks < e.demand.ranks
                    && (e.row.job.ranks.len() as u32) < e.demand.ranks
                    && e.row.job.ranks.iter().all(|r| r.state == RANK_RUNNING)
                    && !self.growing.contains(*id)
                    && self.placed_at.get(*id).is_some_and(|t| now.duration_since(*t) >= GROW_AFTER)
            })
            .map(|(id, e)| (id.clone(), e.demand, e.row.job.ranks.len()))
            .collect();
        for (id, demand, ranks) in candidates {
            let idle = self.scheduler.idle_for(&id, &demand);
            if idle == 0 {
                continue;
            }
            let Some(mut row) = self.jobs.get(&id).map(|e| e.row.clone()) else { continue };
            let target = (ranks + idle).min(demand.ranks as usize);
            tracing::info!(job_id = %id, ranks, target, "elastic job growing");
            self.growing.insert(id.clone());
            let ev = self.event(
                &mut row,
                notice(
                    NoticeLevel::Info,
                    format!(
                        "elastic: {idle} more worker(s) free; checkpointing to grow from {ranks} to {target} ranks"
                    ),
                ),
            );
            self.stop_ranks_with(&mut row, None, "growing onto more workers", true);
            self.store_and_keep(row, vec![ev]);
        }
    }
}
