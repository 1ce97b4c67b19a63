//! The control plane of a worker: connect to the coordinator (retrying with backoff), register,
//! keep one session stream open (heartbeats and job reports up; assignments and cancellations
//! down), reconnect when it breaks while jobs keep running, and drain on request.

mod backoff;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use shoal_common::proto::worker_service_client::WorkerServiceClient;
use shoal_common::proto::{
    Heartbeat, Hello, RegisterRequest, RunningJob, WorkerInfo, WorkerMessage, coordinator_message, worker_message,
};
use shoal_common::{JobId, WorkerId, version};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::config::WorkerConfig;
use crate::devices::Devices;
use crate::run::{self, JobContext, JobHandle};
use crate::sync::DataPlane;
use backoff::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen for peers on {addr}: {source}")]
    DataPlane { addr: String, source: std::io::Error },
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
}

/// How a session ended.
enum SessionEnd {
    /// Drained and reported everything; exit.
    Drained,
    /// The connection broke; reconnect.
    Lost(String),
}

pub struct Worker {
    config: WorkerConfig,
    devices: Devices,
    data_addr: SocketAddr,
    plane: DataPlane,
    worker_id: Option<WorkerId>,
    jobs: HashMap<JobId, JobHandle>,
    updates_tx: mpsc::UnboundedSender<WorkerMessage>,
    updates_rx: mpsc::UnboundedReceiver<WorkerMessage>,
    /// A message taken from `updates_rx` that could not be sent yet.
    unsent: Option<WorkerMessage>,
    drain: CancellationToken,
    drain_deadline: Option<Instant>,
}

impl Worker {
    /// Binds the data plane and prepares to connect. `drain` asks the worker to finish up and exit.
    pub fn new(config: WorkerConfig, mut devices: Devices, drain: CancellationToken) -> Result<Self, WorkerError> {
        config.validate().map_err(WorkerError::Config)?;
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
        let data_addr = if config.data_advertise.is_empty() {
            plane.addr()
        } else {
            config.data_advertise.parse().map_err(|e| WorkerError::Config(format!("data_advertise: {e}")))?
        };
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        Ok(Self {
            config,
            devices,
            data_addr,
            plane,
            worker_id: None,
            jobs: HashMap::new(),
            updates_tx,
            updates_rx,
            unsent: None,
            drain,
            drain_deadline: None,
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

    fn running(&self) -> Vec<RunningJob> {
        self.jobs.iter().map(|(id, h)| RunningJob { job_id: id.to_string(), attempt: h.attempt }).collect()
    }

    fn draining(&self) -> bool {
        self.drain_deadline.is_some()
    }

    /// Runs until drained. Returns an error only when the coordinator refuses this worker.
    pub async fn run(mut self) -> Result<(), WorkerError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(self.config.max_backoff_ms));
        loop {
            if let Some(deadline) = self.drain_deadline {
                if self.jobs.is_empty() && self.unsent.is_none() && self.updates_rx.is_empty() {
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
                Err(ConnectError::Refused(reason)) => return Err(WorkerError::Refused(reason)),
                Err(ConnectError::Unavailable(reason)) => {
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
        let endpoint = Endpoint::from_shared(self.config.coordinator_url())
            .map_err(|e| ConnectError::Refused(format!("bad coordinator URL: {e}")))?
            .connect_timeout(t)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let channel = timeout(t, endpoint.connect())
            .await
            .map_err(|_| ConnectError::Unavailable(format!("no connection within {t:?}")))?
            .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        let mut client = WorkerServiceClient::new(channel);
        let request = RegisterRequest {
            info: Some(self.info()),
            worker_id: self.worker_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        };
        let mut request = tonic::Request::new(request);
        shoal_common::auth::attach(&mut request, &self.config.join_token);
        let response = timeout(t, client.register(request))
            .await
            .map_err(|_| ConnectError::Unavailable(format!("no answer to register within {t:?}")))?;
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument | tonic::Code::Unauthenticated
                ) =>
            {
                return Err(ConnectError::Refused(status.message().to_owned()));
            }
            Err(status) => {
                return Err(ConnectError::Unavailable(shoal_common::status::describe(&status)));
            }
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
            return SessionEnd::Lost("not registered".into());
        };
        let t = self.config.connect_timeout();
        let (out, out_rx) = mpsc::channel::<WorkerMessage>(1024);
        let hello = Hello { worker_id: worker_id.to_string(), running: self.running(), draining: self.draining() };
        if out.send(WorkerMessage { kind: Some(worker_message::Kind::Hello(hello)) }).await.is_err() {
            return SessionEnd::Lost("session closed before hello".into());
        }
        let mut request = tonic::Request::new(ReceiverStream::new(out_rx));
        shoal_common::auth::attach(&mut request, &self.config.join_token);
        let mut inbound = match timeout(t, client.session(request)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return SessionEnd::Lost(shoal_common::status::describe(&status)),
            Err(_) => return SessionEnd::Lost(format!("no session within {t:?}")),
        };
        tracing::info!(worker_id = %worker_id, running = self.jobs.len(), "session open");
        let ctx = JobContext {
            worker_id: worker_id.clone(),
            checkpoint_root: self.config.checkpoint_dir.clone(),
            data_roots: self.config.data_roots(),
            keep_checkpoints: self.config.keep_checkpoints,
            max_threads: self.devices.cpu_cores as usize,
            plane: self.plane.clone(),
        };
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(msg) = self.unsent.take() {
                if out.send(msg.clone()).await.is_err() {
                    self.unsent = Some(msg);
                    return SessionEnd::Lost("session stream closed".into());
                }
            }
            if self.draining() && self.jobs.is_empty() && self.updates_rx.is_empty() {
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
                    let hb = Heartbeat { running: self.running(), draining: self.draining() };
                    if out.send(WorkerMessage { kind: Some(worker_message::Kind::Heartbeat(hb)) }).await.is_err() {
                        return SessionEnd::Lost("session stream closed".into());
                    }
                }
                Some(msg) = self.updates_rx.recv() => {
                    if let Some(worker_message::Kind::Finished(f)) = &msg.kind {
                        if let Some(handle) = self.jobs.remove(&JobId::new(f.job_id.clone())).filter(|h| h.attempt != f.attempt) {
                            self.jobs.insert(handle.job_id.clone(), handle);
                        }
                    }
                    self.unsent = Some(msg);
                }
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => self.handle(m.kind, &ctx),
                    Ok(None) => return SessionEnd::Lost("the coordinator closed the session".into()),
                    Err(status) => return SessionEnd::Lost(shoal_common::status::describe(&status)),
                },
                _ = self.drain.cancelled(), if !self.draining() => {
                    self.start_drain();
                    let hb = Heartbeat { running: self.running(), draining: true };
                    let _ = out.send(WorkerMessage { kind: Some(worker_message::Kind::Heartbeat(hb)) }).await;
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
                    Some(h) if c.attempt == 0 || h.attempt == c.attempt => {
                        tracing::info!(job_id = %id, reason = %c.reason, "cancelling");
                        h.cancel();
                    }
                    _ => tracing::debug!(job_id = %id, "cancel for a job not running here"),
                }
            }
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

enum ConnectError {
    /// The coordinator answered and said no (wrong version, bad request): retrying will not help.
    Refused(String),
    Unavailable(String),
}
