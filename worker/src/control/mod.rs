//! The control plane of a worker: connect to the coordinator (retrying with backoff), register,
//! keep one session stream open (heartbeats and job reports up; assignments and cancellations
//! down), reconnect when it breaks while jobs keep running, and drain on request.

mod backoff;
mod error;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_common::proto::worker_service_client::WorkerServiceClient;
use shoal_common::proto::{
    Heartbeat, Hello, RegisterRequest, ReportAck, RunningJob, WorkerInfo, WorkerMessage, coordinator_message,
    worker_message,
};
use shoal_common::{JobId, WorkerId, version};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::WorkerConfig;
use crate::devices::{Devices, GpuMonitor};
use crate::metrics::WorkerMetrics;
use crate::run::{self, JobContext, JobHandle};
use crate::sync::DataPlane;
use backoff::Backoff;
pub use error::{ConnectError, SessionLost, WorkerError};

/// How a session ended.
enum SessionEnd {
    /// Drained and reported everything; exit.
    Drained,
    /// The connection broke; reconnect.
    Lost(SessionLost),
}

pub struct Worker {
    config: WorkerConfig,
    devices: Devices,
    /// Samples the GPUs for heartbeats and progress reports; `None` without GPUs or NVML.
    gpu_monitor: Option<GpuMonitor>,
    data_addr: SocketAddr,
    plane: DataPlane,
    worker_id: Option<WorkerId>,
    jobs: HashMap<JobId, JobHandle>,
    updates_tx: mpsc::UnboundedSender<WorkerMessage>,
    updates_rx: mpsc::UnboundedReceiver<WorkerMessage>,
    /// Identifies this process to the coordinator, which counts its reports per process.
    boot_id: u64,
    /// Sequence number of the last report taken from `updates_rx`.
    last_seq: u64,
    /// Reports taken from `updates_rx` that the coordinator has not acknowledged yet, oldest
    /// first: a new session resends them all (the coordinator skips those it has).
    pending: VecDeque<WorkerMessage>,
    drain: CancellationToken,
    drain_deadline: Option<Instant>,
    tls: shoal_common::tls::ClientTls,
    metrics: Arc<WorkerMetrics>,
}

impl Worker {
    /// Binds the data plane and prepares to connect. `drain` asks the worker to finish up and exit.
    pub fn new(config: WorkerConfig, mut devices: Devices, drain: CancellationToken) -> Result<Self, WorkerError> {
        config.validate()?;
        if config.cpus > 0 {
            devices.cpu_cores = config.cpus;
        }
        if config.memory_mb > 0 {
            devices.memory_bytes = config.memory_mb * 1024 * 1024;
        }
        if !config.hostname.is_empty() {
            devices.hostname = config.hostname.clone();
        }
        let plane = DataPlane::bind(&config.data_listen)
            .map_err(|source| WorkerError::DataPlane { addr: config.data_listen.clone(), source })?;
        let data_addr = config.data_advertise()?.unwrap_or_else(|| plane.addr());
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let tls = config.tls()?;
        let gpu_monitor = GpuMonitor::start(&devices.gpus);
        Ok(Self {
            tls,
            config,
            devices,
            gpu_monitor,
            data_addr,
            plane,
            worker_id: None,
            jobs: HashMap::new(),
            updates_tx,
            updates_rx,
            boot_id: rand::random::<u64>() | 1,
            last_seq: 0,
            pending: VecDeque::new(),
            drain,
            drain_deadline: None,
            metrics: Arc::new(WorkerMetrics::new()),
        })
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            hostname: self.devices.hostname.clone(),
            cpu_cores: self.devices.cpu_cores,
            memory_bytes: self.devices.memory_bytes,
            gpus: self.devices.gpus.clone(),
            data_addr: self.data_addr.to_string(),
            version: version::VERSION.into(),
            protocol: version::PROTOCOL,
            gpu_note: self.devices.gpu_note.clone(),
            nccl: self.devices.nccl,
            role: "worker".into(),
        }
    }

    /// Jobs running here, and jobs that ended but whose end the coordinator has not acknowledged
    /// (so that it waits for the report instead of counting the run as lost).
    fn running(&self) -> Vec<RunningJob> {
        let mut out: Vec<RunningJob> =
            self.jobs.iter().map(|(id, h)| RunningJob { job_id: id.to_string(), attempt: h.attempt }).collect();
        for msg in &self.pending {
            if let Some(worker_message::Kind::Finished(f)) = &msg.kind
                && !out.iter().any(|r| r.job_id == f.job_id && r.attempt == f.attempt)
            {
                out.push(RunningJob { job_id: f.job_id.clone(), attempt: f.attempt });
            }
        }
        out
    }

    /// Takes a report off the job threads' queue: numbers it and keeps it until acknowledged.
    fn take_report(&mut self, mut msg: WorkerMessage) -> &WorkerMessage {
        self.metrics.observe(&msg);
        if let Some(worker_message::Kind::Finished(f)) = &msg.kind
            && let Some(handle) = self.jobs.remove(&JobId::new(f.job_id.clone())).filter(|h| h.attempt != f.attempt)
        {
            self.jobs.insert(handle.job_id.clone(), handle);
        }
        self.last_seq += 1;
        msg.seq = self.last_seq;
        if self.pending.len() >= MAX_PENDING_REPORTS {
            // Out of touch for very long: forget the oldest progress report, never a job's end.
            let oldest = self.pending.iter().position(|m| !matches!(m.kind, Some(worker_message::Kind::Finished(_))));
            if let Some(i) = oldest {
                self.pending.remove(i);
                tracing::warn!(kept = MAX_PENDING_REPORTS, "too many unacknowledged reports; dropping the oldest");
            }
        }
        self.pending.push_back(msg);
        self.pending.back().expect("just pushed")
    }

    fn acknowledged(&mut self, ack: ReportAck) {
        if ack.boot_id != self.boot_id {
            return;
        }
        while self.pending.front().is_some_and(|m| m.seq <= ack.seq) {
            self.pending.pop_front();
        }
    }

    fn draining(&self) -> bool {
        self.drain_deadline.is_some()
    }

    /// What runs here, whether the worker drains, and how its GPUs are used right now.
    fn heartbeat(&self) -> WorkerMessage {
        let gpus = self.gpu_monitor.as_ref().map(GpuMonitor::sample).unwrap_or_default();
        self.metrics.heartbeat(self.jobs.len(), &gpus);
        let hb = Heartbeat { running: self.running(), draining: self.draining(), gpus };
        WorkerMessage { kind: Some(worker_message::Kind::Heartbeat(hb)), seq: 0 }
    }

    /// Runs until drained. Returns an error only when the coordinator refuses this worker.
    pub async fn run(mut self) -> Result<(), WorkerError> {
        // `/metrics` serves until this returns.
        let metrics_stop = CancellationToken::new();
        let _stop_metrics = metrics_stop.clone().drop_guard();
        if let Some(addr) = self.config.metrics_addr()? {
            let metrics = self.metrics.clone();
            let routes = shoal_common::metrics::router(Arc::new(move || metrics.render()));
            let (bound, _task) = shoal_common::http_server::serve("metrics_listen", addr, routes, metrics_stop).await?;
            tracing::info!(addr = %bound, "metrics listening (/metrics)");
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(self.config.max_backoff_ms));
        loop {
            if let Some(deadline) = self.drain_deadline {
                if self.jobs.is_empty() && self.pending.is_empty() && self.updates_rx.is_empty() {
                    tracing::info!("drained; exiting");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!("drain deadline passed before every report reached the coordinator; exiting");
                    return Ok(());
                }
            }
            match self.connect().await {
                Ok(client) => {
                    backoff.reset();
                    match self.session(client).await {
                        SessionEnd::Drained => return Ok(()),
                        SessionEnd::Lost(why) => {
                            tracing::warn!(reason = %why, "lost the coordinator session; reconnecting")
                        }
                    }
                }
                Err(e) if !e.retryable() => return Err(WorkerError::Refused(e)),
                Err(reason) => {
                    let wait = backoff.next();
                    tracing::warn!(coordinator = %self.config.coordinator, reason = %reason, retry_in_ms = wait.as_millis() as u64, "cannot reach the coordinator");
                    self.wait_offline(wait).await;
                }
            }
        }
    }

    /// Waits out a backoff while disconnected, still reacting to drains and finished jobs.
    async fn wait_offline(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return,
                _ = self.drain.cancelled(), if !self.draining() => self.start_drain(),
                _ = sleep_until(self.drain_deadline.unwrap_or(until)), if self.draining() => {
                    self.abandon_jobs();
                    return;
                }
            }
            if self.draining() {
                self.reap_finished();
            }
        }
    }

    async fn connect(&mut self) -> Result<WorkerServiceClient<Channel>, ConnectError> {
        let t = self.config.connect_timeout();
        let endpoint = self
            .tls
            .endpoint(&self.config.coordinator)
            .map_err(|detail| ConnectError::Endpoint { detail })?
            .connect_timeout(t)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let channel = timeout(t, endpoint.connect())
            .await
            .map_err(|_| ConnectError::ConnectTimeout { timeout: t })?
            .map_err(|source| ConnectError::Transport { source })?;
        let mut client = WorkerServiceClient::new(channel);
        let request = RegisterRequest {
            info: Some(self.info()),
            worker_id: self.worker_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        };
        let mut request = tonic::Request::new(request);
        shoal_common::auth::attach(&mut request, &self.config.join_token);
        let response =
            timeout(t, client.register(request)).await.map_err(|_| ConnectError::RegisterTimeout { timeout: t })?;
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument | tonic::Code::Unauthenticated
                ) =>
            {
                return Err(ConnectError::Refused { status });
            }
            Err(status) => return Err(ConnectError::Unavailable { status }),
        };
        let id = WorkerId::new(response.worker_id);
        if self.worker_id.as_ref() != Some(&id) {
            tracing::info!(worker_id = %id, cpus = self.devices.cpu_cores, gpus = self.devices.gpus.len(), gpu_note = %self.devices.gpu_note, data_addr = %self.data_addr, "registered with the coordinator");
        }
        self.worker_id = Some(id);
        Ok(client)
    }

    async fn session(&mut self, mut client: WorkerServiceClient<Channel>) -> SessionEnd {
        let Some(worker_id) = self.worker_id.clone() else {
            return SessionEnd::Lost(SessionLost::NotRegistered);
        };
        let t = self.config.connect_timeout();
        let (out, out_rx) = mpsc::channel::<WorkerMessage>(1024);
        // Everything the job threads reported so far is numbered first, so that `hello` can name
        // the jobs whose end is still to be reported.
        while let Ok(msg) = self.updates_rx.try_recv() {
            self.take_report(msg);
        }
        let hello = Hello {
            worker_id: worker_id.to_string(),
            running: self.running(),
            draining: self.draining(),
            boot_id: self.boot_id,
        };
        if out.send(WorkerMessage { kind: Some(worker_message::Kind::Hello(hello)), seq: 0 }).await.is_err() {
            return SessionEnd::Lost(SessionLost::ClosedBeforeHello);
        }
        // Reports not acknowledged before: the coordinator skips those it has applied.
        let mut resend: VecDeque<WorkerMessage> = self.pending.clone();
        if !resend.is_empty() {
            tracing::info!(reports = resend.len(), "resending unacknowledged reports");
        }
        let mut request = tonic::Request::new(ReceiverStream::new(out_rx));
        shoal_common::auth::attach(&mut request, &self.config.join_token);
        let mut inbound = match timeout(t, client.session(request)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return SessionEnd::Lost(SessionLost::Status { status }),
            Err(_) => return SessionEnd::Lost(SessionLost::NoSession { timeout: t }),
        };
        tracing::info!(worker_id = %worker_id, running = self.jobs.len(), "session open");
        let ctx = JobContext {
            worker_id: worker_id.clone(),
            checkpoint_root: self.config.checkpoint_dir.clone(),
            data_roots: self.config.data_roots(),
            keep_checkpoints: self.config.keep_checkpoints,
            max_threads: self.devices.cpu_cores as usize,
            plane: self.plane.clone(),
            ps_access: crate::sync::PsAccess { tls: self.tls.clone(), token: self.config.join_token.clone() },
            gpu_monitor: self.gpu_monitor.clone(),
        };
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(msg) = resend.pop_front() {
                if out.send(msg).await.is_err() {
                    return SessionEnd::Lost(SessionLost::StreamClosed);
                }
            }
            if self.draining() && self.jobs.is_empty() && self.updates_rx.is_empty() && self.pending.is_empty() {
                tracing::info!("all jobs drained and reported");
                // Close our half of the stream and give the coordinator a moment to see it.
                drop(out);
                let _ = timeout(Duration::from_secs(1), inbound.message()).await;
                return SessionEnd::Drained;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = heartbeat.tick() => {
                    self.reap_finished();
                    if out.send(self.heartbeat()).await.is_err() {
                        return SessionEnd::Lost(SessionLost::StreamClosed);
                    }
                }
                Some(msg) = self.updates_rx.recv() => {
                    // Kept in `pending` until acknowledged, so a failed send is resent later.
                    resend.push_back(self.take_report(msg).clone());
                }
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => self.handle(m.kind, &ctx),
                    Ok(None) => return SessionEnd::Lost(SessionLost::ClosedByCoordinator),
                    Err(status) => return SessionEnd::Lost(SessionLost::Status { status }),
                },
                _ = self.drain.cancelled(), if !self.draining() => {
                    self.start_drain();
                    let _ = out.send(self.heartbeat()).await;
                }
                _ = sleep_until(self.drain_deadline.unwrap_or(far)), if self.draining() => {
                    self.abandon_jobs();
                    return SessionEnd::Drained;
                }
            }
        }
    }

    fn handle(&mut self, kind: Option<coordinator_message::Kind>, ctx: &JobContext) {
        match kind {
            Some(coordinator_message::Kind::Assign(a)) => {
                let id = JobId::new(a.job_id.clone());
                if self.draining() {
                    tracing::warn!(job_id = %id, "assignment while draining; refusing it");
                    let _ = self.updates_tx.send(WorkerMessage {
                        kind: Some(worker_message::Kind::Finished(shoal_common::proto::JobFinished {
                            job_id: a.job_id.clone(),
                            attempt: a.attempt,
                            outcome: shoal_common::proto::Outcome::Interrupted as i32,
                            checkpoint: a.resume_from.clone(),
                            ..Default::default()
                        })),
                        seq: 0,
                    });
                    return;
                }
                if let Some(old) = self.jobs.get(&id) {
                    if old.attempt >= a.attempt {
                        tracing::debug!(job_id = %id, "duplicate assignment ignored");
                        return;
                    }
                    old.cancel();
                }
                tracing::info!(job_id = %id, attempt = a.attempt, resume_from = %a.resume_from, "assignment received");
                match run::start(a, ctx.clone(), self.updates_tx.clone()) {
                    Ok(handle) => {
                        // Replacing an older attempt joins its thread (it was told to stop).
                        self.jobs.insert(id, handle);
                    }
                    Err(e) => {
                        tracing::error!(job_id = %id, error = %e, "cannot start a job thread")
                    }
                }
            }
            Some(coordinator_message::Kind::Rendezvous(v)) => {
                let id = JobId::new(v.job_id.clone());
                match self.jobs.get(&id).filter(|h| h.attempt == v.attempt) {
                    Some(h) => h.rendezvous(v.key, v.value),
                    None => tracing::debug!(job_id = %id, "rendezvous value for a job not running here"),
                }
            }
            Some(coordinator_message::Kind::Cancel(c)) => {
                let id = JobId::new(c.job_id.clone());
                match self.jobs.get(&id) {
                    Some(h) if (c.attempt == 0 || h.attempt == c.attempt) && c.checkpoint_and_requeue => {
                        tracing::info!(job_id = %id, reason = %c.reason, "checkpointing and stopping; the job resumes elsewhere");
                        h.drain();
                    }
                    Some(h) if c.attempt == 0 || h.attempt == c.attempt => {
                        tracing::info!(job_id = %id, reason = %c.reason, "cancelling");
                        h.cancel();
                    }
                    _ => tracing::debug!(job_id = %id, "cancel for a job not running here"),
                }
            }
            Some(coordinator_message::Kind::Ack(ack)) => self.acknowledged(ack),
            Some(coordinator_message::Kind::Shard(_) | coordinator_message::Kind::Ended(_)) | None => {}
        }
    }

    fn start_drain(&mut self) {
        let limit = Duration::from_millis(self.config.drain_timeout_ms);
        tracing::info!(
            jobs = self.jobs.len(),
            timeout_s = limit.as_secs(),
            "draining: finishing the current steps, checkpointing, then exiting"
        );
        self.drain_deadline = Some(Instant::now() + limit);
        for h in self.jobs.values() {
            h.drain();
        }
    }

    /// Drops handles of jobs whose thread ended (their last report is queued already).
    fn reap_finished(&mut self) {
        self.jobs.retain(|_, h| !h.is_finished());
    }

    fn abandon_jobs(&mut self) {
        tracing::warn!(jobs = self.jobs.len(), "drain timed out; stopping the remaining jobs");
        for h in self.jobs.values() {
            h.cancel();
        }
        self.jobs.clear();
    }
}

/// Reports kept for resending while the coordinator is out of reach (a few minutes of metrics).
const MAX_PENDING_REPORTS: usize = 100_000;
