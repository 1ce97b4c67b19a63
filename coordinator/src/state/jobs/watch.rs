//! Watching jobs: stored history plus a live broadcast feed per watched job.

use shoal_common::JobId;
use shoal_common::proto::{JobEvent, JobState, job_event};
use tokio::sync::broadcast;

use super::state_of;
use crate::error::CoordinatorError;
use crate::state::State;

/// Live events buffered per watched job before a slow watcher falls back to the database.
const WATCH_BUFFER: usize = 256;

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
    /// History after `after` plus a live feed. Subscribing and reading the history happen under
    /// the same lock, so no event falls between them.
    pub fn subscribe(&mut self, job_id: &str, after: u64) -> Result<Subscription, CoordinatorError> {
        let id = JobId::new(job_id);
        let entry = self.jobs.get(&id).ok_or_else(|| CoordinatorError::JobNotFound { job_id: job_id.into() })?;
        let finished = state_of(&entry.row).is_terminal();
        let live = self.watchers.entry(id).or_insert_with(|| broadcast::channel(WATCH_BUFFER).0).subscribe();
        let history = self.store.events(job_id, after)?;
        Ok(Subscription { history, live, finished })
    }

    /// Stored events after `after` (for a watcher that fell behind the live feed).
    pub fn events_after(&self, job_id: &str, after: u64) -> Result<Vec<JobEvent>, CoordinatorError> {
        Ok(self.store.events(job_id, after)?)
    }

    /// Drops live feeds nobody listens to any more.
    pub fn prune_watchers(&mut self) {
        self.watchers.retain(|_, tx| tx.receiver_count() > 0);
    }
}
