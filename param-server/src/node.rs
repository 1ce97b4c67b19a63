//! A parameter server as a cluster node: it registers with the coordinator (role
//! `param-server`, its push/pull address, its memory), keeps a session open with heartbeats, and
//! drops the shards of job attempts the coordinator says have ended. The session reconnects with
//! backoff; shards keep serving while it is down.

use std::sync::Arc;
use std::time::Duration;

use shoal_common::proto::worker_service_client::WorkerServiceClient;
use shoal_common::proto::{
    Heartbeat, Hello, RegisterRequest, WorkerInfo, WorkerMessage, coordinator_message, worker_message,
};
use shoal_common::version;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::config::ParamServerConfig;
use crate::error::ParamServerError;
use crate::registry::Registry;

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn hostname(cfg: &ParamServerConfig) -> String {
    if !cfg.hostname.is_empty() {
        return cfg.hostname.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Stays registered with the coordinator until `stop` fires. Errors only when the coordinator
/// refuses this node (or TLS towards it cannot be set up).
pub async fn run(
    cfg: ParamServerConfig,
    addr: String,
    registry: Arc<Registry>,
    stop: CancellationToken,
) -> Result<(), ParamServerError> {
    let tls = cfg.client_tls().map_err(|reason| ParamServerError::CoordinatorTls { reason })?;
    let url = tls.url(&cfg.coordinator);
    let info = WorkerInfo {
        hostname: hostname(&cfg),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: memory_bytes(),
        data_addr: addr,
        version: version::VERSION.into(),
        protocol: version::PROTOCOL,
        role: "param-server".into(),
        gpu_note: "parameter server".into(),
        ..Default::default()
    };
    let timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
    let mut worker_id = String::new();
    let mut pause = Duration::from_millis(200);
    let link = Link { tls: &tls, url: &url, info: &info, join_token: &cfg.join_token, timeout };
    while !stop.is_cancelled() {
        match session(&link, &mut worker_id, &registry, &stop).await {
            Ok(()) => return Ok(()),
            Err(Failure::Refused(reason)) => return Err(ParamServerError::Refused { coordinator: url, reason }),
            Err(Failure::Lost(why)) => {
                tracing::warn!(coordinator = %url, reason = %why, retry_in_ms = pause.as_millis() as u64, "coordinator session lost");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_millis(cfg.max_backoff_ms.max(200)));
            }
        }
    }
    Ok(())
}

/// How one session ended badly: for good (the coordinator refused this node), or for now (the
/// connection broke; the node reconnects). Each carries a sentence for the log.
enum Failure {
    Refused(String),
    Lost(String),
}

/// What every session with the coordinator uses: where it is and who this node says it is.
struct Link<'a> {
    tls: &'a shoal_common::tls::ClientTls,
    url: &'a str,
    info: &'a WorkerInfo,
    join_token: &'a str,
    timeout: Duration,
}

/// One session: register (keeping `worker_id` across sessions), hello, then heartbeats until
/// `stop` fires or the session breaks.
async fn session(
    link: &Link<'_>,
    worker_id: &mut String,
    registry: &Registry,
    stop: &CancellationToken,
) -> Result<(), Failure> {
    let Link { tls, url, info, join_token, timeout } = *link;
    let lost = |e: &dyn std::fmt::Display| Failure::Lost(e.to_string());
    let endpoint =
        tls.endpoint(url).map_err(|e| Failure::Refused(format!("coordinator: {e}")))?.connect_timeout(timeout);
    let channel =
        tokio::time::timeout(timeout, endpoint.connect()).await.map_err(|e| lost(&e))?.map_err(|e| lost(&e))?;
    let mut client = WorkerServiceClient::new(channel);
    let mut request = tonic::Request::new(RegisterRequest { info: Some(info.clone()), worker_id: worker_id.clone() });
    shoal_common::auth::attach(&mut request, join_token);
    let registered = tokio::time::timeout(timeout, client.register(request)).await.map_err(|e| lost(&e))?;
    let resp = match registered {
        Ok(r) => r.into_inner(),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument | tonic::Code::Unauthenticated
            ) =>
        {
            return Err(Failure::Refused(s.message().to_owned()));
        }
        Err(s) => return Err(lost(&shoal_common::status::describe(&s))),
    };
    if *worker_id != resp.worker_id {
        tracing::info!(node_id = %resp.worker_id, addr = %info.data_addr, "registered as a parameter server");
    }
    *worker_id = resp.worker_id.clone();
    let (out, rx) = mpsc::channel(16);
    let hello = Hello { worker_id: worker_id.clone(), running: Vec::new(), draining: false, boot_id: 0 };
    out.send(WorkerMessage { kind: Some(worker_message::Kind::Hello(hello)), seq: 0 }).await.map_err(|e| lost(&e))?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    shoal_common::auth::attach(&mut request, join_token);
    let mut inbound = tokio::time::timeout(timeout, client.session(request))
        .await
        .map_err(|e| lost(&e))?
        .map_err(|s| lost(&shoal_common::status::describe(&s)))?
        .into_inner();
    let every = Duration::from_millis(u64::from(resp.heartbeat_interval_ms).max(100));
    let mut heartbeat = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = heartbeat.tick() => {
                let hb = Heartbeat { running: Vec::new(), draining: false, gpus: Vec::new() };
                out.send(WorkerMessage { kind: Some(worker_message::Kind::Heartbeat(hb)), seq: 0 }).await.map_err(|e| lost(&e))?;
            }
            msg = inbound.message() => match msg {
                Ok(Some(m)) => match m.kind {
                    Some(coordinator_message::Kind::Shard(a)) => {
                        tracing::info!(job_id = %a.job_id, attempt = a.attempt, shard = a.shard, shards = a.shards, "shard assigned");
                    }
                    Some(coordinator_message::Kind::Ended(e)) => {
                        tracing::info!(job_id = %e.job_id, attempt = e.attempt, reason = %e.reason, "job ended; dropping its shards");
                        registry.end_job(&e.job_id, e.attempt, &e.reason);
                    }
                    _ => {}
                },
                Ok(None) => return Err(Failure::Lost("the coordinator closed the session".into())),
                Err(s) => return Err(lost(&shoal_common::status::describe(&s))),
            },
        }
    }
}
