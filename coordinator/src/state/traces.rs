//! One span per job while it is alive, when the coordinator exports spans: opened when the job is
//! stored, closed (and so exported) when it reaches a terminal state, with its final state and
//! reason. Each rank's span on a worker is its child, through the `traceparent` its assignment
//! carries, and a search's trials are children of the search's span: one trace holds the job
//! from its queue wait to its last step, across every worker and attempt. When spans are not
//! exported nothing is kept.
//!
//! A coordinator restart loses the spans of the jobs still alive; it opens new ones for them
//! (`resumed = true`), so later attempts still land in one trace per job.

use std::collections::HashMap;

use shoal_common::JobId;
use shoal_common::proto::JobState;
use tracing::field::Empty;

#[derive(Default)]
pub(super) struct JobTraces {
    spans: HashMap<JobId, tracing::Span>,
}

/// What a job is, as its span is named.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Job,
    Search,
    Trial,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Job => "job",
            Self::Search => "search",
            Self::Trial => "trial",
        }
    }
}

impl JobTraces {
    /// Opens `id`'s span, under `parent`'s when that job has one. `resumed` marks a job the
    /// coordinator took up again after a restart.
    pub(super) fn open(&mut self, id: &JobId, name: &str, kind: Kind, parent: Option<&JobId>, resumed: bool) {
        if !shoal_common::telemetry::exporting() || self.spans.contains_key(id) {
            return;
        }
        let parent = parent.and_then(|p| self.spans.get(p)).and_then(tracing::Span::id);
        let span = tracing::info_span!(
            parent: parent,
            "job",
            otel.name = kind.name(),
            job_id = %id,
            job.name = name,
            job.resumed = resumed,
            job.state = Empty,
            job.reason = Empty,
            job.attempts = Empty,
            otel.status_code = Empty,
        );
        // The request that submitted it, when there is one, is linked rather than made the parent:
        // the job outlives it by hours.
        span.follows_from(tracing::Span::current());
        self.spans.insert(id.clone(), span);
    }

    /// The W3C trace context a rank of `id` starts under (empty when there is none).
    pub(super) fn parent_of(&self, id: &JobId) -> String {
        self.spans.get(id).map(shoal_common::telemetry::trace_parent).unwrap_or_default()
    }

    /// Closes `id`'s span once the job has ended.
    pub(super) fn close(&mut self, id: &JobId, state: JobState, reason: &str, attempts: u32) {
        if let Some(span) = self.spans.remove(id) {
            span.record("job.state", state.as_str_name());
            span.record("job.reason", reason);
            span.record("job.attempts", attempts);
            if state == JobState::Failed {
                span.record("otel.status_code", "ERROR");
            }
        }
    }

    /// How many jobs have an open span.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }
}
