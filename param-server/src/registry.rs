//! Every shard this server holds, keyed by (job, attempt, shard), and the job attempts that ended.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::ParamServerError;
use crate::key::ShardId;
use crate::shard::Shard;

/// One shard with what its waiting pulls need.
pub(crate) struct Entry {
    pub(crate) shard: Mutex<Shard>,
    /// Signalled whenever the shard changes (a pull may now be allowed).
    pub(crate) changed: Notify,
    /// How long a pull may wait for the mode to allow it.
    pub(crate) timeout: Duration,
}

impl Entry {
    pub(crate) fn new(shard: Shard, timeout: Duration) -> Self {
        Self { shard: Mutex::new(shard), changed: Notify::new(), timeout }
    }

    /// The shard, even after a panic elsewhere left the lock poisoned (its state stays consistent).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shard> {
        self.shard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every shard this server holds.
#[derive(Default)]
pub struct Registry {
    shards: Mutex<HashMap<ShardId, Arc<Entry>>>,
    /// Signalled whenever a shard is created (pulls may arrive before rank 0 seeds a shard).
    created: Notify,
    /// Job attempts that ended: their pushes are refused with the reason.
    ended: Mutex<HashMap<(String, u32), String>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// How many shards this server holds.
    pub fn shard_count(&self) -> usize {
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The shard `k`, created with `make` if this server does not hold it yet.
    pub(crate) fn get_or_create(&self, k: &ShardId, make: impl FnOnce() -> Entry) -> Arc<Entry> {
        let entry = self
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone();
        self.created.notify_waiters();
        entry
    }

    pub(crate) fn get(&self, k: &ShardId) -> Result<Arc<Entry>, ParamServerError> {
        if let Some(reason) = self.ended.lock().unwrap_or_else(|e| e.into_inner()).get(&(k.job_id.clone(), k.attempt)) {
            return Err(ParamServerError::JobEnded { shard: k.clone(), reason: reason.clone() });
        }
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
            .cloned()
            .ok_or_else(|| ParamServerError::NoShard { shard: k.clone() })
    }

    /// Like `get`, but waits up to `limit` for the shard to be created: non-zero ranks may pull
    /// before rank 0 has seeded it.
    pub(crate) async fn wait_for(&self, k: &ShardId, limit: Duration) -> Result<Arc<Entry>, ParamServerError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let created = self.created.notified();
            tokio::pin!(created);
            created.as_mut().enable();
            match self.get(k) {
                Err(ParamServerError::NoShard { .. }) => {
                    if tokio::time::timeout_at(deadline, created).await.is_err() {
                        return Err(ParamServerError::NotCreated { shard: k.clone(), waited: limit });
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
        let gone: Vec<ShardId> = shards.keys().filter(|k| k.job_id == job && k.attempt == attempt).cloned().collect();
        for k in gone {
            if let Some(e) = shards.remove(&k) {
                e.lock().finish(reason);
                e.changed.notify_waiters();
            }
        }
    }

    /// Jobs with shards here.
    pub fn jobs(&self) -> HashSet<(String, u32)> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).keys().map(|k| (k.job_id.clone(), k.attempt)).collect()
    }
}
