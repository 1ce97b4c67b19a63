//! `ParamServerApi`: push, pull, init and save over gRPC, tensors in chunks. Shards live in the
//! [`Registry`]; a pull that the mode does not allow yet waits for the shard to change, up to the
//! job's collective deadline. Every refusal is a [`ParamServerError`].

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shoal_common::chunks;
use shoal_common::proto::param_server_service_server::ParamServerService;
use shoal_common::proto::{
    InitChunk, InitReply, PullChunk, PullRequest, PushChunk, PushReply, SaveShardReply, SaveShardRequest, ShardKey,
    ShardStatsReply,
};
use shoal_common::spec::{self, PsMode, SyncKind};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::checkpoint::{load_state, save_state};
use crate::error::{Blocked, ParamServerError};
use crate::key::ShardId;
use crate::registry::{Entry, Registry};
use crate::shard::{Shard, ShardConfig};

/// How long a pull waits for its shard to be created (by rank 0's init).
const CREATION_WAIT: Duration = Duration::from_secs(60);

/// The shard a request names; the key is a required field.
fn shard_of(key: Option<&ShardKey>) -> Result<ShardId, ParamServerError> {
    key.map(ShardId::from).ok_or(ParamServerError::MissingField { field: "key" })
}

/// A chunk placed into its tensor, or the reason it does not fit.
fn place(dst: &mut [f32], offset: u64, bytes: &[u8], shard: &ShardId) -> Result<(), ParamServerError> {
    chunks::place(dst, offset as usize, bytes)
        .map_err(|reason| ParamServerError::BadChunk { shard: shard.clone(), reason })
}

/// The push/pull service over one registry.
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
        let first = stream.message().await?.ok_or(ParamServerError::EmptyStream { call: "init" })?;
        let key = shard_of(first.key.as_ref())?;
        let spec = first.spec.as_ref().ok_or(ParamServerError::MissingField { field: "spec" })?;
        let cfg = spec::validate(spec).map_err(|fields| ParamServerError::InvalidSpec { fields })?;
        let SyncKind::ParamServer { mode, .. } = cfg.parallel.sync else {
            return Err(ParamServerError::InvalidField {
                field: "spec.sync",
                reason: "the job does not use parameter servers",
            }
            .into());
        };
        let workers = first.workers as usize;
        if workers == 0 {
            return Err(ParamServerError::InvalidField { field: "workers", reason: "must be > 0" }.into());
        }
        let len = usize::try_from(first.total_len)
            .map_err(|_| ParamServerError::InvalidField { field: "total_len", reason: "too large" })?;
        let entry = self.registry.get_or_create(&key, || {
            let shard_cfg = ShardConfig { workers, mode, optimizer: cfg.optimizer, total_steps: first.total_steps };
            Entry::new(Shard::new(shard_cfg, len), cfg.training.collective_timeout)
        });
        if entry.lock().is_initialised() {
            let version = entry.lock().version();
            return Ok(Response::new(InitReply { initialised: false, version }));
        }
        if !first.resume_dir.is_empty() {
            let state = load_state(Path::new(&first.resume_dir), key.shard)
                .map_err(|e| ParamServerError::Resume { shard: key.clone(), source: Box::new(e) })?;
            let mut shard = entry.lock();
            shard.restore(state).map_err(|source| ParamServerError::Shard { shard: key.clone(), source })?;
            let version = shard.version();
            drop(shard);
            entry.changed.notify_waiters();
            tracing::info!(job_id = %key.job_id, shard = key.shard, version, "shard resumed from checkpoint");
            return Ok(Response::new(InitReply { initialised: true, version }));
        }
        let mut values = vec![0f32; len];
        place(&mut values, first.offset, &first.values, &key)?;
        while let Some(chunk) = stream.message().await? {
            place(&mut values, chunk.offset, &chunk.values, &key)?;
        }
        let initialised =
            entry.lock().init(values).map_err(|source| ParamServerError::Shard { shard: key.clone(), source })?;
        entry.changed.notify_waiters();
        tracing::info!(job_id = %key.job_id, shard = key.shard, values = len, workers, mode = mode.name(), "shard initialised");
        Ok(Response::new(InitReply { initialised, version: 0 }))
    }

    async fn push(&self, req: Request<Streaming<PushChunk>>) -> Result<Response<PushReply>, Status> {
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or(ParamServerError::EmptyStream { call: "push" })?;
        let key = shard_of(first.key.as_ref())?;
        let entry = self.registry.get(&key)?;
        let len = usize::try_from(first.total_len)
            .map_err(|_| ParamServerError::InvalidField { field: "total_len", reason: "too large" })?;
        let expected = entry.lock().len();
        if len != expected {
            return Err(ParamServerError::PushSize { shard: key, expected, got: len }.into());
        }
        let mut grads = vec![0f32; len];
        place(&mut grads, first.offset, &first.grads, &key)?;
        while let Some(chunk) = stream.message().await? {
            place(&mut grads, chunk.offset, &chunk.grads, &key)?;
        }
        let pushed = entry
            .lock()
            .push(first.worker as usize, first.step, first.based_on, &grads)
            .map_err(|source| ParamServerError::Shard { shard: key.clone(), source })?;
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
        let key = shard_of(req.key.as_ref())?;
        let entry = self.registry.wait_for(&key, CREATION_WAIT).await?;
        let deadline = tokio::time::Instant::now() + entry.timeout;
        let (version, values) = loop {
            let notified = entry.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut shard = entry.lock();
                if shard
                    .may_pull(req.worker as usize, req.step)
                    .map_err(|source| ParamServerError::Shard { shard: key.clone(), source })?
                {
                    break shard.grant(req.step);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let shard = entry.lock();
                let (slowest, clock) = shard.slowest();
                let staleness = match shard.config().mode {
                    PsMode::Ssp { staleness } => Some(staleness),
                    _ => None,
                };
                let blocked = Blocked { worker: req.worker, step: req.step, slowest, clock, staleness };
                return Err(ParamServerError::PullTimedOut { shard: key, blocked, waited: entry.timeout }.into());
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
        let key = shard_of(req.key.as_ref())?;
        let entry = self.registry.get(&key)?;
        let state = entry.lock().state();
        let dir = PathBuf::from(&req.dir);
        let index = key.shard;
        let path = tokio::task::spawn_blocking(move || save_state(&dir, index, &state))
            .await
            .map_err(|source| ParamServerError::SaveTask { shard: key.clone(), source })?
            .map_err(|e| ParamServerError::Save { shard: key, source: Box::new(e) })?;
        Ok(Response::new(SaveShardReply { path: path.display().to_string() }))
    }

    async fn shard_stats(&self, req: Request<ShardKey>) -> Result<Response<ShardStatsReply>, Status> {
        let key = ShardId::from(req.get_ref());
        let entry = self.registry.get(&key)?;
        let shard = entry.lock();
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
