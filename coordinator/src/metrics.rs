//! The coordinator's Prometheus series, served at `/metrics` on its HTTP port: jobs by state and
//! their lifecycle totals by kind, the queue, scheduling latency, workers by state, lost workers,
//! missed heartbeats (`Metrics`, fed from job events and the liveness ticks), and the duration of
//! every RPC (`shoal_common::metrics::RpcMetricsLayer` on the gRPC server). Labels are states,
//! kinds, services and methods, never job or worker ids.

use std::collections::HashMap;
use std::sync::Mutex;

use shoal_common::metrics::{
    Counter, EncodeLabelSet, Family, Gauge, Histogram, Registry, RpcDurations, render, rpc_durations, seconds_histogram,
};
use shoal_common::proto::{JobEvent, JobSpec, JobState, job_event};
use tokio::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// `worker` or `param-server`.
    pub role: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Every series the coordinator exports.
pub struct Metrics {
    registry: Registry,
    jobs: Family<StateLabel, Gauge>,
    queue_depth: Gauge,
    submitted: Family<KindLabel, Counter>,
    succeeded: Family<KindLabel, Counter>,
    failed: Family<KindLabel, Counter>,
    cancelled: Family<KindLabel, Counter>,
    restarted: Family<KindLabel, Counter>,
    scheduling_latency: Histogram,
    workers: Family<NodeLabel, Gauge>,
    workers_lost: Counter,
    heartbeats_missed: Counter,
    rpc_duration: RpcDurations,
    /// When each job entered the queue (this run of the coordinator), for the scheduling latency.
    queued_at: Mutex<HashMap<String, Instant>>,
}

/// What a scrape reads from the state at that moment.
#[derive(Default)]
pub struct Snapshot {
    pub jobs: Vec<(String, i64)>,
    pub queue_depth: i64,
    /// ((role, state), count)
    pub workers: Vec<((String, String), i64)>,
}

/// The job's kind as the lifecycle totals label it.
pub fn kind_of(spec: Option<&JobSpec>) -> &'static str {
    match spec {
        Some(s) if s.search.is_some() => "search",
        Some(s) if s.evaluate.is_some() => "evaluate",
        Some(s) if s.command.is_some() => "command",
        _ => "train",
    }
}

/// The label of a state: `JOB_STATE_RUNNING` as `running`, `WORKER_STATE_READY` as `ready`.
pub fn state_label(proto_name: &str) -> String {
    proto_name.trim_start_matches("JOB_STATE_").trim_start_matches("WORKER_STATE_").to_ascii_lowercase()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shoal");
        let m = Metrics {
            jobs: Family::default(),
            queue_depth: Gauge::default(),
            submitted: Family::default(),
            succeeded: Family::default(),
            failed: Family::default(),
            cancelled: Family::default(),
            restarted: Family::default(),
            scheduling_latency: seconds_histogram(),
            workers: Family::default(),
            workers_lost: Counter::default(),
            heartbeats_missed: Counter::default(),
            rpc_duration: rpc_durations(),
            queued_at: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register("jobs", "Jobs by state", m.jobs.clone());
        registry.register("queue_depth", "Jobs waiting for workers", m.queue_depth.clone());
        registry.register("jobs_submitted", "Jobs submitted, by kind", m.submitted.clone());
        registry.register("jobs_succeeded", "Jobs that succeeded, by kind", m.succeeded.clone());
        registry.register("jobs_failed", "Jobs that failed for good, by kind", m.failed.clone());
        registry.register("jobs_cancelled", "Jobs cancelled, by kind", m.cancelled.clone());
        registry.register(
            "jobs_restarted",
            "Automatic restarts of jobs after a failure (back in the queue), by kind",
            m.restarted.clone(),
        );
        registry.register(
            "scheduling_latency_seconds",
            "Time from entering the queue to being placed on workers",
            m.scheduling_latency.clone(),
        );
        registry.register("workers", "Workers and parameter servers by role and state", m.workers.clone());
        registry.register("workers_lost", "Workers declared lost", m.workers_lost.clone());
        registry.register(
            "heartbeats_missed",
            "Heartbeat intervals that passed without a heartbeat from a connected worker",
            m.heartbeats_missed.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "gRPC handling time to the response (streams: to their first message), by service and method",
            m.rpc_duration.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts what a job's new events say: submissions, restarts, outcomes, and the queue wait of
    /// a job being placed.
    pub fn observe_events(&self, spec: Option<&JobSpec>, events: &[JobEvent]) {
        let kind = KindLabel { kind: kind_of(spec) };
        for e in events {
            let Some(job_event::Kind::State(change)) = &e.kind else { continue };
            let mut queued = self.queued_at.lock().unwrap_or_else(|p| p.into_inner());
            match JobState::try_from(change.state).unwrap_or(JobState::Unspecified) {
                JobState::Queued => {
                    if change.attempt == 0 && !queued.contains_key(&e.job_id) {
                        self.submitted.get_or_create(&kind).inc();
                    } else {
                        self.restarted.get_or_create(&kind).inc();
                    }
                    queued.insert(e.job_id.clone(), Instant::now());
                }
                JobState::Running => {
                    if let Some(since) = queued.remove(&e.job_id) {
                        self.scheduling_latency.observe(since.elapsed().as_secs_f64());
                    }
                }
                terminal => {
                    queued.remove(&e.job_id);
                    match terminal {
                        JobState::Succeeded => self.succeeded.get_or_create(&kind).inc(),
                        JobState::Failed => self.failed.get_or_create(&kind).inc(),
                        JobState::Cancelled => self.cancelled.get_or_create(&kind).inc(),
                        _ => 0,
                    };
                }
            }
        }
    }

    /// The RPC durations, for the layer on the gRPC server.
    pub fn rpc_durations(&self) -> RpcDurations {
        self.rpc_duration.clone()
    }

    pub fn worker_lost(&self) {
        self.workers_lost.inc();
    }

    pub fn heartbeats_missed(&self, n: u64) {
        self.heartbeats_missed.inc_by(n);
    }

    /// The exposition, with the gauges set from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.jobs.clear();
        for (state, n) in &snapshot.jobs {
            self.jobs.get_or_create(&StateLabel { state: state.clone() }).set(*n);
        }
        self.queue_depth.set(snapshot.queue_depth);
        self.workers.clear();
        for ((role, state), n) in &snapshot.workers {
            self.workers.get_or_create(&NodeLabel { role: role.clone(), state: state.clone() }).set(*n);
        }
        render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_common::proto::StateChanged;

    fn change(job: &str, state: JobState, attempt: u32) -> JobEvent {
        JobEvent {
            job_id: job.into(),
            kind: Some(job_event::Kind::State(StateChanged { state: state as i32, attempt, ..Default::default() })),
            ..Default::default()
        }
    }

    #[test]
    fn events_count_submissions_restarts_outcomes_and_the_queue_wait() {
        let m = Metrics::new();
        m.observe_events(None, &[change("a", JobState::Queued, 0)]);
        m.observe_events(None, &[change("a", JobState::Running, 0)]);
        m.observe_events(None, &[change("a", JobState::Queued, 1), change("a", JobState::Running, 1)]);
        m.observe_events(None, &[change("a", JobState::Succeeded, 1)]);
        let text = m.render(&Snapshot {
            jobs: vec![(state_label("JOB_STATE_SUCCEEDED"), 1)],
            queue_depth: 0,
            workers: vec![(("worker".into(), state_label("WORKER_STATE_READY")), 2)],
        });
        assert!(text.contains("shoal_jobs_submitted_total{kind=\"train\"} 1"), "{text}");
        assert!(text.contains("shoal_jobs_restarted_total{kind=\"train\"} 1"), "{text}");
        assert!(text.contains("shoal_jobs_succeeded_total{kind=\"train\"} 1"), "{text}");
        assert!(text.contains("shoal_scheduling_latency_seconds_count 2"), "{text}");
        assert!(text.contains("shoal_jobs{state=\"succeeded\"} 1"), "{text}");
        assert!(text.contains("shoal_workers{role=\"worker\",state=\"ready\"} 2"), "{text}");
    }
}
