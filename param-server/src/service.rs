//! `ParamServerService`: push, pull, init and save over gRPC, tensors in chunks. Shards live in
//! a registry keyed by (job, attempt, shard); a pull that the mode does not allow yet waits for the
//! shard to change, up to the job's collective deadline.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_common::chunks;
use shoal_common::proto::param_server_service_server::ParamServerService;
use shoal_common::proto::{
    InitChunk, InitReply, PullChunk, PullRequest, PushChunk, PushReply, SaveShardReply, SaveShardRequest, ShardKey,
    ShardStatsReply,
};
use shoal_common::spec::{self, PsMode, SyncKind};
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::shard::{Shard, ShardConfig, ShardError, ShardState};

type Key = (String, u32, u32);

/// How long a pull waits for its shard to be created (by rank 0's init).
const CREATION_WAIT: Duration = Duration::from_secs(60);

fn key_of(k: &ShardKey) -> Key {
    (k.job_id.clone(), k.attempt, k.shard)
}

fn describe(k: &Key) -> String {
    format!("shard {} of job {} (attempt {})", k.2, k.0, k.1)
}

struct Entry {
    shard: Mutex<Shard>,
    changed: Notify,
    /// How long a pull may wait for the mode to allow it.
    timeout: Duration,
}

/// Every shard this server holds.
#[derive(Default)]
pub struct Registry {
    shards: Mutex<HashMap<Key, Arc<Entry>>>,
    /// Signalled whenever a shard is created (pulls may arrive before rank 0 seeds a shard).
    created: Notify,
    /// Job attempts that ended: their pushes are refused with the reason.
    ended: Mutex<HashMap<(String, u32), String>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn get(&self, k: &Key) -> Result<Arc<Entry>, Status> {
        if let Some(reason) = self.ended.lock().unwrap_or_else(|e| e.into_inner()).get(&(k.0.clone(), k.1)) {
            return Err(Status::failed_precondition(format!(
                "job {} has finished ({reason}); {} is gone",
                k.0,
                describe(k)
            )));
        }
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("this parameter server holds no {}", describe(k))))
    }

    /// Like `get`, but waits up to `limit` for the shard to be created: non-zero ranks may pull
    /// before rank 0 has seeded it.
    async fn wait_for(&self, k: &Key, limit: Duration) -> Result<Arc<Entry>, Status> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let created = self.created.notified();
            tokio::pin!(created);
            created.as_mut().enable();
            match self.get(k) {
                Err(s) if s.code() == tonic::Code::NotFound => {
                    if tokio::time::timeout_at(deadline, created).await.is_err() {
                        return Err(Status::not_found(format!("no {} was created within {limit:?}", describe(k))));
                    }
                }
                other => return other,
            }
        }
    }

    /// Drops the shards of a finished job attempt; later pushes get `reason`.
    pub fn end_job(&self, job: &str, attempt: u32, reason: &str) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.len() > 10_000 {
            ended.clear();
        }
        ended.insert((job.to_owned(), attempt), reason.to_owned());
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<Key> = shards.keys().filter(|k| k.0 == job && k.1 == attempt).cloned().collect();
        for k in gone {
            if let Some(e) = shards.remove(&k) {
                e.shard.lock().unwrap_or_else(|e| e.into_inner()).finish(reason);
                e.changed.notify_waiters();
            }
        }
    }

    /// Jobs with shards here.
    pub fn jobs(&self) -> HashSet<(String, u32)> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).keys().map(|k| (k.0.clone(), k.1)).collect()
    }
}

fn shard_status(k: &Key, e: ShardError) -> Status {
    match e {
        ShardError::WrongSize { .. } | ShardError::UnknownWorker { .. } => {
            Status::invalid_argument(format!("{}: {e}", describe(k)))
        }
        ShardError::NotInitialised | ShardError::Finished { .. } => {
            Status::failed_precondition(format!("{}: {e}", describe(k)))
        }
    }
}

fn state_paths(dir: &Path, shard: u32) -> (PathBuf, PathBuf) {
    (dir.join(format!("ps-shard-{shard}.safetensors")), dir.join(format!("ps-shard-{shard}.json")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Clocks {
    version: u64,
    updates: u64,
    clocks: Vec<u64>,
}

fn save_state(dir: &Path, shard: u32, state: &ShardState) -> Result<PathBuf, String> {
    use candle_core::{Device, Tensor};
    let (tensors, meta) = state_paths(dir, shard);
    let t = |v: &[f32]| Tensor::from_slice(v, v.len(), &Device::Cpu).map_err(|e| e.to_string());
    let mut map = HashMap::from([("values".to_owned(), t(&state.values)?)]);
    if !state.first.is_empty() {
        map.insert("first_moment".into(), t(&state.first)?);
    }
    if !state.second.is_empty() {
        map.insert("second_moment".into(), t(&state.second)?);
    }
    candle_core::safetensors::save(&map, &tensors).map_err(|e| e.to_string())?;
    let clocks = Clocks { version: state.version, updates: state.updates, clocks: state.clocks.clone() };
    std::fs::write(&meta, serde_json::to_vec(&clocks).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(tensors)
}

fn load_state(dir: &Path, shard: u32) -> Result<ShardState, String> {
    let (tensors, meta) = state_paths(dir, shard);
    let map = candle_core::safetensors::load(&tensors, &candle_core::Device::Cpu)
        .map_err(|e| format!("{}: {e}", tensors.display()))?;
    let vec = |name: &str| -> Result<Vec<f32>, String> {
        map.get(name).map_or(Ok(Vec::new()), |t| t.to_vec1::<f32>().map_err(|e| e.to_string()))
    };
    let clocks: Clocks = serde_json::from_slice(&std::fs::read(&meta).map_err(|e| format!("{}: {e}", meta.display()))?)
        .map_err(|e| format!("{}: {e}", meta.display()))?;
    Ok(ShardState {
        values: vec("values")?,
        first: vec("first_moment")?,
        second: vec("second_moment")?,
        version: clocks.version,
        updates: clocks.updates,
        clocks: clocks.clocks,
    })
}

pub struct ParamServerApi {
    registry: Arc<Registry>,
}

impl ParamServerApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

type PullStream = Pin<Box<dyn Stream<Item = Result<PullChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ParamServerService for ParamServerApi {
    async fn init_shard(&self, req: Request<Streaming<InitChunk>>) -> Result<Response<InitReply>, Status> {
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("init: empty stream"))?;
        let key = first.key.as_ref().map(key_of).ok_or_else(|| Status::invalid_argument("key: required"))?;
        let spec = first.spec.as_ref().ok_or_else(|| Status::invalid_argument("spec: required"))?;
        let cfg = spec::validate(spec).map_err(|e| shoal_common::status::invalid_fields(&e))?;
        let SyncKind::ParamServer { mode, .. } = cfg.parallel.sync else {
            return Err(Status::invalid_argument("spec.sync: the job does not use parameter servers"));
        };
        let workers = first.workers as usize;
        if workers == 0 {
            return Err(Status::invalid_argument("workers: must be > 0"));
        }
        let len = usize::try_from(first.total_len).map_err(|_| Status::invalid_argument("total_len: too large"))?;
        let entry = {
            let mut shards = self.registry.shards.lock().unwrap_or_else(|e| e.into_inner());
            shards
                .entry(key.clone())
                .or_insert_with(|| {
                    let shard_cfg =
                        ShardConfig { workers, mode, optimizer: cfg.optimizer, total_steps: first.total_steps };
                    Arc::new(Entry {
                        shard: Mutex::new(Shard::new(shard_cfg, len)),
                        changed: Notify::new(),
                        timeout: cfg.training.collective_timeout,
                    })
                })
                .clone()
        };
        self.registry.created.notify_waiters();
        if entry.shard.lock().unwrap_or_else(|e| e.into_inner()).is_initialised() {
            let version = entry.shard.lock().unwrap_or_else(|e| e.into_inner()).version();
            return Ok(Response::new(InitReply { initialised: false, version }));
        }
        if !first.resume_dir.is_empty() {
            let state = load_state(Path::new(&first.resume_dir), key.2).map_err(|e| {
                Status::failed_precondition(format!("cannot resume {} from its checkpoint: {e}", describe(&key)))
            })?;
            let mut shard = entry.shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.restore(state).map_err(|e| shard_status(&key, e))?;
            let version = shard.version();
            drop(shard);
            entry.changed.notify_waiters();
            tracing::info!(job_id = %key.0, shard = key.2, version, "shard resumed from checkpoint");
            return Ok(Response::new(InitReply { initialised: true, version }));
        }
        let mut values = vec![0f32; len];
        chunks::place(&mut values, first.offset as usize, &first.values).map_err(Status::invalid_argument)?;
        while let Some(chunk) = stream.message().await? {
            chunks::place(&mut values, chunk.offset as usize, &chunk.values).map_err(Status::invalid_argument)?;
        }
        let initialised =
            entry.shard.lock().unwrap_or_else(|e| e.into_inner()).init(values).map_err(|e| shard_status(&key, e))?;
        entry.changed.notify_waiters();
        tracing::info!(job_id = %key.0, shard = key.2, values = len, workers, mode = mode.name(), "shard initialised");
        Ok(Response::new(InitReply { initialised, version: 0 }))
    }

    async fn push(&self, req: Request<Streaming<PushChunk>>) -> Result<Response<PushReply>, Status> {
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("push: empty stream"))?;
        let key = first.key.as_ref().map(key_of).ok_or_else(|| Status::invalid_argument("key: required"))?;
        let entry = self.registry.get(&key)?;
        let len = usize::try_from(first.total_len).map_err(|_| Status::invalid_argument("total_len: too large"))?;
        let expected = entry.shard.lock().unwrap_or_else(|e| e.into_inner()).len();
        if len != expected {
            return Err(Status::invalid_argument(format!(
                "{}: the shard has {expected} values but the push has {len}",
                describe(&key)
            )));
        }
        let mut grads = vec![0f32; len];
        chunks::place(&mut grads, first.offset as usize, &first.grads).map_err(Status::invalid_argument)?;
        while let Some(chunk) = stream.message().await? {
            chunks::place(&mut grads, chunk.offset as usize, &chunk.grads).map_err(Status::invalid_argument)?;
        }
        let pushed = {
            let mut shard = entry.shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.push(first.worker as usize, first.step, first.based_on, &grads).map_err(|e| shard_status(&key, e))?
        };
        entry.changed.notify_waiters();
        Ok(Response::new(PushReply {
            duplicate: pushed.duplicate,
            version: pushed.version,
            staleness: pushed.staleness,
        }))
    }

    type PullStream = PullStream;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let req = req.into_inner();
        let key = req.key.as_ref().map(key_of).ok_or_else(|| Status::invalid_argument("key: required"))?;
        let entry = self.registry.wait_for(&key, CREATION_WAIT).await?;
        let deadline = tokio::time::Instant::now() + entry.timeout;
        let (version, values) = loop {
            let notified = entry.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut shard = entry.shard.lock().unwrap_or_else(|e| e.into_inner());
                if shard.may_pull(req.worker as usize, req.step).map_err(|e| shard_status(&key, e))? {
                    break shard.grant(req.step);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let shard = entry.shard.lock().unwrap_or_else(|e| e.into_inner());
                let (slow, clock) = shard.slowest();
                let why = match shard.config().mode {
                    PsMode::Ssp { staleness } => format!(
                        "worker rank {slow} has pushed only {clock} steps, and rank {} may not take step {} more than {staleness} ahead of it",
                        req.worker, req.step
                    ),
                    _ => format!(
                        "worker rank {slow} has pushed only {clock} steps, so step {} cannot be taken",
                        req.step
                    ),
                };
                return Err(Status::deadline_exceeded(format!(
                    "{}: {why}; waited {:?}",
                    describe(&key),
                    entry.timeout
                )));
            }
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let total = values.len() as u64;
            if values.is_empty() {
                let _ = tx.send(Ok(PullChunk { version, total_len: 0, offset: 0, values: Vec::new() })).await;
                return;
            }
            for (offset, bytes) in chunks::split(&values) {
                if tx
                    .send(Ok(PullChunk { version, total_len: total, offset: offset as u64, values: bytes }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn save_shard(&self, req: Request<SaveShardRequest>) -> Result<Response<SaveShardReply>, Status> {
        let req = req.into_inner();
        let key = req.key.as_ref().map(key_of).ok_or_else(|| Status::invalid_argument("key: required"))?;
        let entry = self.registry.get(&key)?;
        let state = entry.shard.lock().unwrap_or_else(|e| e.into_inner()).state();
        let dir = PathBuf::from(&req.dir);
        let path = tokio::task::spawn_blocking(move || save_state(&dir, key.2, &state))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("cannot save the shard: {e}")))?;
        Ok(Response::new(SaveShardReply { path: path.display().to_string() }))
    }

    async fn shard_stats(&self, req: Request<ShardKey>) -> Result<Response<ShardStatsReply>, Status> {
        let key = key_of(req.get_ref());
        let entry = self.registry.get(&key)?;
        let shard = entry.shard.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Response::new(ShardStatsReply {
            version: shard.version(),
            pushes: shard.stats.pushes,
            duplicates: shard.stats.duplicates,
            bytes_in: shard.stats.bytes_in,
            bytes_out: shard.stats.bytes_out,
            clocks: shard.clocks().to_vec(),
            lead_at_grant: shard.stats.lead_at_grant.clone(),
        }))
    }
}
