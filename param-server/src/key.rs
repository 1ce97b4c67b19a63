//! Which shard a request names: a job attempt and one shard index of it.

use std::fmt;

/// One shard of one job attempt: the key of the shard registry and the id every error carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardId {
    pub job_id: String,
    pub attempt: u32,
    pub shard: u32,
}

impl From<&shoal_common::proto::ShardKey> for ShardId {
    fn from(k: &shoal_common::proto::ShardKey) -> Self {
        Self { job_id: k.job_id.clone(), attempt: k.attempt, shard: k.shard }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} of job {} (attempt {})", self.shard, self.job_id, self.attempt)
    }
}
