//! Keeping data-parallel ranks in step: the data plane that connects workers directly, and the
//! collectives that run over it (the TCP ring on CPUs; NCCL on GPUs with the `cuda` feature).

pub mod dataplane;
mod engine;
mod frame;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod pipe;
pub mod ps;
pub mod ring;

use std::fmt;

use shoal_train::Peer;

pub use dataplane::{DataPlane, LinkKey};
pub use pipe::PipeLink;
pub use ps::{PsAccess, PsClient, ShardInfo};
pub use ring::Ring;

/// One rank of a job, as the others name it in errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub rank: usize,
    pub worker_id: String,
    pub hostname: String,
    pub data_addr: String,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.peer().fmt(f)
    }
}

impl PeerInfo {
    /// A stand-in for ranks started outside a cluster (benchmarks, tests).
    pub fn local(rank: usize, data_addr: String) -> Self {
        Self { rank, worker_id: format!("local-{rank}"), hostname: "localhost".into(), data_addr }
    }

    /// How errors name this rank.
    pub fn peer(&self) -> Peer {
        Peer { rank: self.rank, worker: self.worker_id.clone(), host: self.hostname.clone() }
    }
}
