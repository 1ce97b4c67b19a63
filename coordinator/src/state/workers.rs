//! Worker operations: registration, sessions, heartbeats and liveness. A worker whose session
//! closes gets `reconnect_grace` to come back; one that goes silent for `heartbeat_timeout` (dead,
//! stalled, partitioned) is lost, and so are the jobs it ran.

use shoal_common::proto::{
    CancelJob, Hello, RegisterRequest, RegisterResponse, ReportAck, WorkerMessage, WorkerState, WorkerStatus,
    coordinator_message, worker_message,
};
use shoal_common::time::{ms_to_timestamp, now_ms};
use shoal_common::{WorkerId, version};
use tokio::time::Instant;

use super::{Session, SessionSender, State, WorkerEntry};
use crate::error::CoordinatorError;
use crate::store::WorkerRow;

impl State {
    pub fn register(&mut self, req: RegisterRequest) -> Result<RegisterResponse, CoordinatorError> {
        let info = req.info.ok_or_else(|| CoordinatorError::invalid("info", "required"))?;
        if let Some(reason) = version::incompatibility(&info.version, info.protocol) {
            tracing::warn!(hostname = %info.hostname, version = %info.version, "worker refused: {reason}");
            return Err(CoordinatorError::Incompatible { reason: format!("worker on {}: {reason}", info.hostname) });
        }
        if info.hostname.trim().is_empty() {
            return Err(CoordinatorError::invalid("info.hostname", "required"));
        }
        if info.cpu_cores == 0 {
            return Err(CoordinatorError::invalid("info.cpu_cores", "must be > 0"));
        }
        let id = if req.worker_id.is_empty() {
            WorkerId::generate()
        } else if req.worker_id.len() > 64 || !req.worker_id.starts_with("wrk-") {
            return Err(CoordinatorError::invalid("worker_id", "must be an id this coordinator issued (wrk-...)"));
        } else {
            WorkerId::new(req.worker_id)
        };
        let now = now_ms();
        let registered_ms = self.workers.get(&id).map_or(now, |w| w.registered_ms);
        self.store.save_worker(&WorkerRow {
            id: id.to_string(),
            info: info.clone(),
            registered_ms,
            last_seen_ms: now,
        })?;
        let entry = self.workers.entry(id.clone()).or_insert_with(|| WorkerEntry {
            info: info.clone(),
            state: WorkerState::Disconnected,
            reason: "registered; waiting for its session".into(),
            registered_ms,
            last_seen_ms: now,
            last_seen: Instant::now(),
            session: None,
            disconnected_since: Some(Instant::now()),
            boot_id: 0,
            acked: 0,
            restored: false,
            gpu_usage: Vec::new(),
            missed: 0,
        });
        entry.info = info;
        tracing::info!(worker_id = %id, hostname = %entry.info.hostname, cpus = entry.info.cpu_cores, gpus = entry.info.gpus.len(), "worker registered");
        Ok(RegisterResponse {
            worker_id: id.to_string(),
            heartbeat_interval_ms: self.liveness.heartbeat_interval.as_millis() as u32,
            heartbeat_timeout_ms: self.liveness.heartbeat_timeout.as_millis() as u32,
            coordinator_version: version::VERSION.into(),
        })
    }

    /// Opens (or replaces) a worker's session and reconciles what it says it runs with what the
    /// coordinator believes. Returns the session epoch that later calls must present.
    pub fn open_session(&mut self, hello: Hello, tx: SessionSender) -> Result<(WorkerId, u64), CoordinatorError> {
        let id = WorkerId::new(hello.worker_id.clone());
        let Some(entry) = self.workers.get_mut(&id) else {
            return Err(CoordinatorError::WorkerNotFound { worker_id: hello.worker_id });
        };
        self.session_epoch += 1;
        let epoch = self.session_epoch;
        entry.session = Some(Session { epoch, tx });
        entry.state = if hello.draining { WorkerState::Draining } else { WorkerState::Ready };
        entry.reason.clear();
        entry.last_seen = Instant::now();
        entry.last_seen_ms = now_ms();
        entry.disconnected_since = None;
        entry.restored = false;
        if entry.boot_id != hello.boot_id {
            entry.boot_id = hello.boot_id;
            entry.acked = 0;
        }
        let ack = ReportAck { boot_id: entry.boot_id, seq: entry.acked };
        let capacity = entry.capacity();
        let gpu_indices: Vec<u32> = entry.info.gpus.iter().map(|g| g.index).collect();
        let nccl = entry.info.nccl;
        tracing::info!(worker_id = %id, epoch, acked = ack.seq, "worker session opened");
        if entry.info.role == "param-server" {
            self.scheduler.add_param_server(id.clone(), capacity);
        } else {
            self.scheduler.add_worker(id.clone(), capacity, &gpu_indices, nccl);
        }
        self.scheduler.set_schedulable(&id, !hello.draining);
        // First down: which reports are stored, so the worker resends only the rest.
        self.send(&id, coordinator_message::Kind::Ack(ack));

        // What the worker runs and the coordinator agrees with keeps running; the rest stops.
        let believed = self.ranks_on(&id);
        for job in &hello.running {
            if self.runs_on(&job.job_id, job.attempt, &id) {
                if let Some((jid, _, _, demand, gpus)) = believed.iter().find(|(j, ..)| j.as_str() == job.job_id) {
                    self.scheduler.restore_rank(jid.clone(), &id, *demand, gpus.clone());
                }
            } else {
                tracing::info!(worker_id = %id, job_id = %job.job_id, attempt = job.attempt, "fencing a job the worker should no longer run");
                self.send(
                    &id,
                    coordinator_message::Kind::Cancel(CancelJob {
                        job_id: job.job_id.clone(),
                        attempt: job.attempt,
                        reason: "this worker no longer holds the assignment".into(),
                        checkpoint_and_requeue: false,
                    }),
                );
            }
        }
        for (job, attempt, ..) in believed {
            if !hello.running.iter().any(|r| r.job_id == job.as_str() && r.attempt == attempt) {
                self.forget_rank(
                    &job,
                    &id,
                    format!("worker {id} reconnected without the job (it restarted); the run was lost"),
                );
            }
        }
        self.schedule();
        Ok((id, epoch))
    }

    /// Handles one message from a worker's session.
    pub fn on_message(&mut self, worker: &WorkerId, epoch: u64, msg: WorkerMessage) {
        let Some(entry) = self.workers.get_mut(worker) else {
            return;
        };
        if entry.session.as_ref().is_none_or(|s| s.epoch != epoch) {
            return;
        }
        entry.last_seen = Instant::now();
        entry.last_seen_ms = now_ms();
        entry.missed = 0;
        if msg.seq != 0 {
            if msg.seq <= entry.acked {
                tracing::debug!(worker_id = %worker, seq = msg.seq, "skipping a report that was applied already");
                return;
            }
            entry.acked = msg.seq;
            // The report's effects and its acknowledgement are stored in one transaction: after a
            // crash the worker's resend is applied exactly when its effects were lost.
            let (boot_id, seq) = (entry.boot_id, entry.acked);
            let stored = self.store.begin_batch().and_then(|()| {
                self.apply(worker, msg.kind);
                self.store.save_ack(worker.as_str(), boot_id, seq)?;
                self.store.end_batch()
            });
            if let Err(e) = stored {
                let _ = self.store.end_batch();
                tracing::error!(worker_id = %worker, error = %e, "cannot store a report");
            }
            return;
        }
        self.apply(worker, msg.kind);
    }

    fn apply(&mut self, worker: &WorkerId, kind: Option<worker_message::Kind>) {
        let Some(entry) = self.workers.get_mut(worker) else {
            return;
        };
        match kind {
            Some(worker_message::Kind::Heartbeat(hb)) => {
                let ack = ReportAck { boot_id: entry.boot_id, seq: entry.acked };
                if hb.draining && entry.state != WorkerState::Draining {
                    tracing::info!(worker_id = %worker, "worker draining");
                    entry.state = WorkerState::Draining;
                    entry.reason = "draining: finishing its jobs, taking no new ones".into();
                    self.scheduler.set_schedulable(worker, false);
                }
                // Only GPUs the worker registered; each heartbeat replaces the previous sample.
                let known = &entry.info.gpus;
                entry.gpu_usage = hb.gpus.into_iter().filter(|u| known.iter().any(|g| g.index == u.index)).collect();
                self.send(worker, coordinator_message::Kind::Ack(ack));
            }
            Some(worker_message::Kind::Started(s)) => self.on_started(worker, &s.job_id, s.attempt),
            Some(worker_message::Kind::Metric(m)) => self.on_metric(worker, m),
            Some(worker_message::Kind::Notice(n)) => self.on_notice(worker, n),
            Some(worker_message::Kind::Finished(f)) => self.on_finished(worker, f),
            Some(worker_message::Kind::Checkpointed(c)) => self.on_checkpointed(worker, c),
            Some(worker_message::Kind::Publish(p)) => self.on_publish(worker, p),
            Some(worker_message::Kind::Hello(_)) | None => {
                tracing::debug!(worker_id = %worker, "ignoring an unexpected session message");
            }
        }
    }

    /// A worker's session stream ended.
    pub fn close_session(&mut self, worker: &WorkerId, epoch: u64, why: &str) {
        let idle = self.ranks_on(worker).is_empty();
        let Some(entry) = self.workers.get_mut(worker) else {
            return;
        };
        if entry.session.as_ref().is_none_or(|s| s.epoch != epoch) {
            return;
        }
        entry.session = None;
        entry.gpu_usage.clear();
        if entry.state == WorkerState::Draining && idle {
            tracing::info!(worker_id = %worker, "worker drained and left");
            entry.state = WorkerState::Left;
            entry.reason = "drained and left".into();
            entry.disconnected_since = None;
            self.scheduler.remove_worker(worker);
            return;
        }
        if entry.state != WorkerState::Lost {
            tracing::warn!(worker_id = %worker, reason = why, "worker session closed; waiting for it to reconnect");
            entry.state = WorkerState::Disconnected;
            entry.reason = format!("session closed ({why})");
            entry.disconnected_since = Some(Instant::now());
        }
        self.scheduler.set_schedulable(worker, false);
    }

    /// Declares silent or long-disconnected workers lost.
    pub fn tick(&mut self, now: Instant) {
        let live = self.liveness;
        let mut lost = Vec::new();
        let mut missed = 0;
        for w in self.workers.values_mut() {
            if matches!(w.state, WorkerState::Ready | WorkerState::Draining) && w.disconnected_since.is_none() {
                // Intervals of silence beyond the one a heartbeat is due in.
                let silent = now.duration_since(w.last_seen).as_secs_f64() / live.heartbeat_interval.as_secs_f64();
                let due = (silent.floor() as u64).saturating_sub(1);
                missed += due.saturating_sub(w.missed);
                w.missed = w.missed.max(due);
            }
        }
        self.metrics.heartbeats_missed(missed);
        for (id, w) in &self.workers {
            let why = match (w.state, w.disconnected_since) {
                (WorkerState::Lost | WorkerState::Left, _) => continue,
                (_, Some(since))
                    if now.duration_since(since)
                        > if w.restored { live.restart_grace } else { live.reconnect_grace } =>
                {
                    format!(
                        "{}; it did not reconnect within {:.0}s",
                        if w.reason.is_empty() { "session closed".to_owned() } else { w.reason.clone() },
                        if w.restored { live.restart_grace } else { live.reconnect_grace }.as_secs_f64()
                    )
                }
                (_, None) if now.duration_since(w.last_seen) > live.heartbeat_timeout => {
                    format!(
                        "no heartbeat for {:.0}s (dead, stalled or unreachable)",
                        now.duration_since(w.last_seen).as_secs_f64()
                    )
                }
                _ => continue,
            };
            lost.push((id.clone(), why));
        }
        for (id, why) in lost {
            self.worker_lost(&id, &why);
        }
        self.requeue_due(now);
        self.grow_elastic(now);
        self.drive_searches_on_tick();
        self.prune_watchers();
    }

    fn worker_lost(&mut self, id: &WorkerId, why: &str) {
        let Some(entry) = self.workers.get_mut(id) else {
            return;
        };
        let name = entry.describe(id);
        tracing::warn!(worker_id = %id, reason = why, "worker lost");
        self.metrics.worker_lost();
        entry.state = WorkerState::Lost;
        entry.reason = why.to_owned();
        entry.session = None;
        entry.disconnected_since = None;
        entry.gpu_usage.clear();
        self.fail_jobs_of(id, &format!("worker {name} lost: {why}"));
        self.schedule();
    }

    pub fn list_workers(&self) -> Vec<WorkerStatus> {
        let mut out: Vec<WorkerStatus> = self
            .workers
            .iter()
            .map(|(id, w)| {
                let free = self.scheduler.free(id).filter(|_| w.state != WorkerState::Lost);
                let mut job_ids: Vec<String> = self.ranks_on(id).into_iter().map(|(j, ..)| j.to_string()).collect();
                job_ids.sort();
                WorkerStatus {
                    worker_id: id.to_string(),
                    info: Some(w.info.clone()),
                    state: w.state as i32,
                    reason: w.reason.clone(),
                    job_ids,
                    free_cpus: free.map_or(0, |f| f.cpus),
                    free_memory_bytes: free.map_or(0, |f| f.memory_mb * 1024 * 1024),
                    free_gpus: free.map_or(0, |f| f.gpus),
                    registered_at: ms_to_timestamp(w.registered_ms),
                    last_seen: ms_to_timestamp(w.last_seen_ms),
                    gpu_usage: w.gpu_usage.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        out
    }
}
