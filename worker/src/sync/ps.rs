//! The worker's side of parameter servers: the flat parameter vector is cut into equal shards
//! (so a large tensor may span two), each shard lives on one server, and every step the worker
//! pushes its gradient slices and pulls the parameter slices, all shards in parallel, tensors in
//! chunks. In async and ssp modes one exchange runs in the background while the next step
//! computes. Every call has a deadline, and a failure names the server.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_common::chunks;
use shoal_common::proto::param_server_service_client::ParamServerServiceClient;
use shoal_common::proto::{InitChunk, JobSpec, PullRequest, PushChunk, SaveShardRequest, ShardKey};
use shoal_common::spec::PsMode;
use shoal_train::{CollectiveError, ParamStore, PsFault, ShardServer};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Where one shard lives.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    pub shard: u32,
    pub node_id: String,
    pub hostname: String,
    pub addr: String,
}

impl std::fmt::Display for ShardInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server().fmt(f)
    }
}

impl ShardInfo {
    /// How errors name this shard's server.
    pub fn server(&self) -> ShardServer {
        ShardServer {
            shard: self.shard,
            node: self.node_id.clone(),
            host: self.hostname.clone(),
            addr: self.addr.clone(),
        }
    }
}

#[derive(Clone)]
struct Conn {
    info: ShardInfo,
    range: Range<usize>,
    client: ParamServerServiceClient<Channel>,
    /// Bearer token the servers require (the join token).
    token: Arc<str>,
}

/// How a worker reaches parameter servers: TLS settings and the token they require.
#[derive(Clone, Debug, Default)]
pub struct PsAccess {
    pub tls: shoal_common::tls::ClientTls,
    pub token: String,
}

/// Equal contiguous ranges of `len` elements for `n` shards.
pub fn shard_ranges(len: usize, n: usize) -> Vec<Range<usize>> {
    let (base, extra) = (len / n.max(1), len % n.max(1));
    let mut start = 0;
    (0..n)
        .map(|i| {
            let size = base + usize::from(i < extra);
            let r = start..start + size;
            start += size;
            r
        })
        .collect()
}

#[derive(Default)]
struct Counters {
    pushes: u64,
    bytes: u64,
    staleness: Vec<u64>,
    since: Option<Instant>,
}

type Exchange = JoinHandle<Result<(Vec<f32>, Vec<u64>, u64, Vec<u64>), CollectiveError>>;

/// A worker's connection to the parameter servers of one job attempt.
pub struct PsClient {
    job: String,
    attempt: u32,
    rank: usize,
    world: usize,
    mode: PsMode,
    spec: JobSpec,
    conns: Vec<Conn>,
    len: usize,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
    /// Shard versions of the parameters in use (the gradients about to be pushed were computed on them).
    versions: Vec<u64>,
    inflight: VecDeque<Exchange>,
    counters: Counters,
}

fn failed(info: &ShardInfo, status: &tonic::Status) -> CollectiveError {
    let fault = match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => PsFault::Unreachable,
        tonic::Code::DeadlineExceeded => PsFault::NoAnswer,
        _ => PsFault::Refused,
    };
    CollectiveError::ParamServer { server: info.server(), fault, detail: status.message().to_owned() }
}

/// A background task of the client that died (panicked or was cancelled with the runtime).
fn task_failed(task: &'static str) -> impl FnOnce(tokio::task::JoinError) -> CollectiveError {
    move |e| CollectiveError::Task { task, source: Arc::new(e) }
}

impl PsClient {
    /// Connects to every shard. The flat parameter vector is cut into shards on first use.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        job: &str,
        attempt: u32,
        rank: usize,
        world: usize,
        mode: PsMode,
        spec: JobSpec,
        shards: Vec<ShardInfo>,
        timeout: Duration,
        access: &PsAccess,
    ) -> Result<Self, CollectiveError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shoal-ps-client")
            .enable_all()
            .build()
            .map_err(|e| CollectiveError::PsRuntime { source: Arc::new(e) })?;
        if shards.is_empty() {
            return Err(CollectiveError::NoShards);
        }
        let mut conns = Vec::with_capacity(shards.len());
        for info in shards {
            let endpoint = access
                .tls
                .endpoint(&info.addr)
                .map_err(|detail| CollectiveError::PsEndpoint { server: info.server(), detail })?
                .connect_timeout(timeout)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(20))
                .initial_stream_window_size(Some(chunks::STREAM_WINDOW))
                .initial_connection_window_size(Some(chunks::CONNECTION_WINDOW));
            let channel = runtime
                .block_on(async { tokio::time::timeout(timeout, endpoint.connect()).await })
                .map_err(|_| CollectiveError::PsConnectTimeout { server: info.server(), timeout })?
                .map_err(|e| CollectiveError::ParamServer {
                    server: info.server(),
                    fault: PsFault::Unreachable,
                    detail: e.to_string(),
                })?;
            conns.push(Conn {
                info,
                range: 0..0,
                client: ParamServerServiceClient::new(channel),
                token: Arc::from(access.token.as_str()),
            });
        }
        let n = conns.len();
        Ok(Self {
            job: job.into(),
            attempt,
            rank,
            world,
            mode,
            spec,
            conns,
            len: 0,
            runtime,
            timeout,
            versions: vec![0; n],
            inflight: VecDeque::new(),
            counters: Counters::default(),
        })
    }

    fn key(&self, shard: u32) -> ShardKey {
        ShardKey { job_id: self.job.clone(), attempt: self.attempt, shard }
    }

    /// Deadline of one call: the server may itself wait up to the collective timeout.
    fn call_deadline(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }
}

async fn push_one(
    mut conn: Conn,
    key: ShardKey,
    worker: u32,
    step: u64,
    based_on: u64,
    grads: Vec<f32>,
    deadline: Duration,
) -> Result<u64, CollectiveError> {
    let total = grads.len() as u64;
    let mut msgs: Vec<PushChunk> = chunks::split(&grads)
        .map(|(offset, bytes)| PushChunk {
            key: None,
            worker,
            step,
            based_on,
            total_len: total,
            offset: offset as u64,
            grads: bytes,
        })
        .collect();
    if msgs.is_empty() {
        msgs.push(PushChunk { key: None, worker, step, based_on, total_len: 0, offset: 0, grads: Vec::new() });
    }
    msgs[0].key = Some(key);
    let mut req = tonic::Request::new(tokio_stream::iter(msgs));
    req.set_timeout(deadline);
    shoal_common::auth::attach(&mut req, &conn.token);
    let reply = conn.client.push(req).await.map_err(|s| failed(&conn.info, &s))?.into_inner();
    Ok(reply.staleness)
}

async fn pull_one(
    mut conn: Conn,
    key: ShardKey,
    worker: u32,
    step: u64,
    deadline: Duration,
) -> Result<(Vec<f32>, u64), CollectiveError> {
    let mut req = tonic::Request::new(PullRequest { key: Some(key), worker, step });
    req.set_timeout(deadline);
    shoal_common::auth::attach(&mut req, &conn.token);
    let mut stream = conn.client.pull(req).await.map_err(|s| failed(&conn.info, &s))?.into_inner();
    let mut values = vec![0f32; conn.range.len()];
    let mut version = 0;
    while let Some(chunk) = stream.message().await.map_err(|s| failed(&conn.info, &s))? {
        if chunk.total_len as usize != values.len() {
            return Err(CollectiveError::PsShardSize {
                server: conn.info.server(),
                holds: chunk.total_len,
                expects: values.len(),
            });
        }
        chunks::place(&mut values, chunk.offset as usize, &chunk.values)
            .map_err(|detail| CollectiveError::PsChunk { server: conn.info.server(), detail })?;
        version = chunk.version;
    }
    Ok((values, version))
}

/// Pulls every shard for `step` in parallel: (flat values, versions).
async fn pull_all(
    conns: Vec<Conn>,
    keys: Vec<ShardKey>,
    worker: u32,
    step: u64,
    len: usize,
    deadline: Duration,
) -> Result<(Vec<f32>, Vec<u64>), CollectiveError> {
    let tasks: Vec<_> =
        conns.iter().cloned().zip(keys).map(|(c, k)| tokio::spawn(pull_one(c, k, worker, step, deadline))).collect();
    let mut flat = vec![0f32; len];
    let mut versions = Vec::with_capacity(conns.len());
    for (conn, task) in conns.iter().zip(tasks) {
        let (values, version) = task.await.map_err(task_failed("pull"))??;
        flat[conn.range.clone()].copy_from_slice(&values);
        versions.push(version);
    }
    Ok((flat, versions))
}

/// Pushes every shard's slice of `grads` in parallel; returns the staleness each shard saw.
async fn push_all(
    conns: Vec<Conn>,
    keys: Vec<ShardKey>,
    worker: u32,
    step: u64,
    based_on: Vec<u64>,
    grads: Vec<f32>,
    deadline: Duration,
) -> Result<Vec<u64>, CollectiveError> {
    let tasks: Vec<_> = conns
        .iter()
        .cloned()
        .zip(keys)
        .zip(based_on)
        .map(|((c, k), v)| {
            let slice = grads[c.range.clone()].to_vec();
            tokio::spawn(push_one(c, k, worker, step, v, slice, deadline))
        })
        .collect();
    let mut staleness = Vec::with_capacity(tasks.len());
    for task in tasks {
        staleness.push(task.await.map_err(task_failed("push"))??);
    }
    Ok(staleness)
}

impl PsClient {
    /// Cuts a vector of `len` parameters into the shards' ranges (once).
    fn layout(&mut self, len: usize) -> Result<(), CollectiveError> {
        if self.len == len {
            return Ok(());
        }
        if self.len != 0 {
            return Err(CollectiveError::PsLayout { len, before: self.len });
        }
        let ranges = shard_ranges(len, self.conns.len());
        for (c, r) in self.conns.iter_mut().zip(ranges) {
            c.range = r;
        }
        self.len = len;
        Ok(())
    }

    fn keys(&self) -> Vec<ShardKey> {
        self.conns.iter().map(|c| self.key(c.info.shard)).collect()
    }

    fn count(&mut self, staleness: &[u64], bytes: u64) {
        self.counters.since.get_or_insert_with(Instant::now);
        self.counters.pushes += 1;
        self.counters.bytes += bytes;
        self.counters.staleness.extend_from_slice(staleness);
    }
}

impl ParamStore for PsClient {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn overlaps(&self) -> bool {
        !matches!(self.mode, PsMode::Sync)
    }

    fn init(&mut self, params: &[f32], total_steps: u64, resume: Option<&Path>) -> Result<(), CollectiveError> {
        self.layout(params.len())?;
        let deadline = self.call_deadline();
        let tasks: Vec<_> = self
            .conns
            .iter()
            .map(|c| {
                let mut conn = c.clone();
                let first = InitChunk {
                    key: Some(self.key(c.info.shard)),
                    total_len: c.range.len() as u64,
                    spec: Some(self.spec.clone()),
                    total_steps,
                    workers: self.world as u32,
                    resume_dir: resume.map(|p| p.display().to_string()).unwrap_or_default(),
                    ..Default::default()
                };
                let mut msgs = vec![first];
                if resume.is_none() {
                    for (offset, bytes) in chunks::split(&params[c.range.clone()]) {
                        msgs.push(InitChunk { offset: offset as u64, values: bytes, ..Default::default() });
                    }
                }
                self.runtime.spawn(async move {
                    let mut req = tonic::Request::new(tokio_stream::iter(msgs));
                    req.set_timeout(deadline);
                    shoal_common::auth::attach(&mut req, &conn.token);
                    conn.client.init_shard(req).await.map(|_| ()).map_err(|s| failed(&conn.info, &s))
                })
            })
            .collect();
        for t in tasks {
            self.runtime.block_on(t).map_err(task_failed("init"))??;
        }
        Ok(())
    }

    fn pull(&mut self, step: u64, params: &mut [f32]) -> Result<(), CollectiveError> {
        self.layout(params.len())?;
        let fut = pull_all(self.conns.clone(), self.keys(), self.rank as u32, step, self.len, self.call_deadline());
        let (flat, versions) = self.runtime.block_on(fut)?;
        params.copy_from_slice(&flat);
        self.counters.bytes += (flat.len() * 4) as u64;
        self.versions = versions;
        Ok(())
    }

    fn push(&mut self, step: u64, grads: &[f32]) -> Result<(), CollectiveError> {
        let fut = push_all(
            self.conns.clone(),
            self.keys(),
            self.rank as u32,
            step,
            self.versions.clone(),
            grads.to_vec(),
            self.call_deadline(),
        );
        let staleness = self.runtime.block_on(fut)?;
        self.count(&staleness, (grads.len() * 4) as u64);
        Ok(())
    }

    fn start_exchange(&mut self, step: u64, grads: Vec<f32>) -> Result<(), CollectiveError> {
        let (conns, keys, rank, len, deadline, based_on) =
            (self.conns.clone(), self.keys(), self.rank as u32, self.len, self.call_deadline(), self.versions.clone());
        let bytes = (grads.len() * 4) as u64;
        let task = self.runtime.spawn(async move {
            let staleness = push_all(conns.clone(), keys.clone(), rank, step, based_on, grads, deadline).await?;
            let (flat, versions) = pull_all(conns, keys, rank, step + 1, len, deadline).await?;
            Ok((flat, versions, bytes, staleness))
        });
        self.inflight.push_back(task);
        Ok(())
    }

    fn finish_exchange(&mut self, params: &mut [f32], keep: usize) -> Result<bool, CollectiveError> {
        let mut landed = false;
        while self.inflight.len() > keep {
            let Some(task) = self.inflight.pop_front() else { break };
            let (flat, versions, bytes, staleness) = self.runtime.block_on(task).map_err(task_failed("exchange"))??;
            self.count(&staleness, bytes + (flat.len() * 4) as u64);
            params.copy_from_slice(&flat);
            self.versions = versions;
            landed = true;
        }
        Ok(landed)
    }

    fn save(&mut self, dir: &Path) -> Result<(), CollectiveError> {
        let deadline = self.call_deadline();
        for c in self.conns.clone() {
            let mut conn = c.clone();
            let mut req = tonic::Request::new(SaveShardRequest {
                key: Some(self.key(c.info.shard)),
                dir: dir.display().to_string(),
            });
            req.set_timeout(deadline);
            shoal_common::auth::attach(&mut req, &conn.token);
            self.runtime.block_on(conn.client.save_shard(req)).map_err(|s| failed(&c.info, &s))?;
        }
        Ok(())
    }

    fn take_metrics(&mut self) -> Vec<(String, f64)> {
        let c = std::mem::take(&mut self.counters);
        let elapsed = c.since.map_or(0.0, |t| t.elapsed().as_secs_f64()).max(1e-9);
        let mut out = vec![
            ("pushes_per_s".to_owned(), c.pushes as f64 / elapsed),
            ("ps_bytes_per_s".to_owned(), c.bytes as f64 / elapsed),
        ];
        if !c.staleness.is_empty() {
            let n = c.staleness.len() as f64;
            out.push(("staleness_mean".into(), c.staleness.iter().sum::<u64>() as f64 / n));
            out.push(("staleness_max".into(), c.staleness.iter().copied().max().unwrap_or(0) as f64));
            // Histogram: 0, 1, 2, 3, 4-7, 8+ versions behind.
            for (label, range) in
                [("0", 0..1), ("1", 1..2), ("2", 2..3), ("3", 3..4), ("4_7", 4..8), ("8_plus", 8..u64::MAX)]
            {
                let count = c.staleness.iter().filter(|s| range.contains(s)).count();
                out.push((format!("staleness_hist_{label}"), count as f64));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_evenly_and_cover_everything() {
        assert_eq!(shard_ranges(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(shard_ranges(2, 4), vec![0..1, 1..2, 2..2, 2..2]);
    }
}
