//! Joining the other ranks of a data-parallel job: the TCP ring over the data plane, or NCCL
//! (with the `cuda` feature), whose unique id rank 0 creates and the coordinator relays.

use shoal_common::proto::{Assignment, WorkerMessage};
use shoal_common::spec::{SyncKind, TrainConfig};
use shoal_train::{Collective, Peers};
use tokio::sync::mpsc::UnboundedSender;

use super::{JobContext, RendezvousRx};
use crate::sync::{PeerInfo, PsClient, Ring, ShardInfo};

/// How this rank is connected to the others.
pub enum Joined {
    Alone,
    AllReduce(Box<dyn Collective>),
    ParamServer(Box<PsClient>),
}

impl Joined {
    pub fn peers(&mut self) -> Peers<'_> {
        match self {
            Joined::Alone => Peers::Alone,
            Joined::AllReduce(c) => Peers::AllReduce(c.as_mut()),
            Joined::ParamServer(p) => Peers::ParamServer(p.as_mut()),
        }
    }
}

/// Connects this rank to its peers (or its parameter servers).
pub fn join(
    assignment: &Assignment,
    cfg: &TrainConfig,
    ctx: &JobContext,
    updates: &UnboundedSender<WorkerMessage>,
    rendezvous: &RendezvousRx,
) -> Result<Joined, String> {
    let world = assignment.world_size.max(1) as usize;
    let rank = assignment.rank as usize;
    if let SyncKind::ParamServer { mode, .. } = cfg.parallel.sync {
        let shards: Vec<ShardInfo> = assignment
            .ps_shards
            .iter()
            .map(|s| ShardInfo {
                shard: s.shard,
                node_id: s.node_id.clone(),
                hostname: s.hostname.clone(),
                addr: s.addr.clone(),
            })
            .collect();
        let spec = assignment.spec.clone().unwrap_or_default();
        let client = PsClient::connect(
            &assignment.job_id,
            assignment.attempt,
            rank,
            world,
            mode,
            spec,
            shards,
            cfg.training.collective_timeout,
        )
        .map_err(|e| format!("cannot reach the parameter servers: {e}"))?;
        tracing::info!(
            rank,
            world,
            shards = assignment.ps_shards.len(),
            mode = mode.name(),
            "connected to the parameter servers"
        );
        return Ok(Joined::ParamServer(Box::new(client)));
    }
    if world == 1 {
        return Ok(Joined::Alone);
    }
    if assignment.peers.len() != world || rank >= world {
        return Err(format!(
            "the assignment lists {} peers for world size {world} (rank {rank})",
            assignment.peers.len()
        ));
    }
    let peers: Vec<PeerInfo> = assignment
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| PeerInfo {
            rank: i,
            worker_id: p.worker_id.clone(),
            hostname: p.hostname.clone(),
            data_addr: p.data_addr.clone(),
        })
        .collect();
    let timeout = cfg.training.collective_timeout;
    tracing::info!(rank, world, backend = %assignment.backend, "joining the other ranks");
    match assignment.backend.as_str() {
        "nccl" => nccl(assignment, rank, world, timeout, updates, rendezvous),
        _ => {
            let _ = (updates, rendezvous);
            let ring = Ring::connect(&ctx.plane, &assignment.job_id, assignment.attempt, rank, peers, timeout)
                .map_err(|e| format!("cannot join the all-reduce ring: {e}"))?;
            Ok(Joined::AllReduce(Box::new(ring)))
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn nccl(
    _: &Assignment,
    _: usize,
    _: usize,
    _: std::time::Duration,
    _: &UnboundedSender<WorkerMessage>,
    _: &RendezvousRx,
) -> Result<Joined, String> {
    Err("this worker was built without the `cuda` feature, so it cannot use the NCCL backend".into())
}

#[cfg(feature = "cuda")]
fn nccl(
    assignment: &Assignment,
    rank: usize,
    world: usize,
    timeout: std::time::Duration,
    updates: &UnboundedSender<WorkerMessage>,
    rendezvous: &RendezvousRx,
) -> Result<Joined, String> {
    use shoal_common::proto::{RendezvousPublish, worker_message};

    use crate::sync::nccl::{Nccl, UniqueId};
    const KEY: &str = "nccl-unique-id";
    let gpu = *assignment.gpus.first().ok_or("the NCCL backend needs a GPU, and none was reserved for this rank")?;
    let id = if rank == 0 {
        let id = UniqueId::new().map_err(|e| format!("cannot create the NCCL unique id: {e}"))?;
        let _ = updates.send(WorkerMessage {
            kind: Some(worker_message::Kind::Publish(RendezvousPublish {
                job_id: assignment.job_id.clone(),
                attempt: assignment.attempt,
                key: KEY.into(),
                value: id.to_bytes(),
            })),
        });
        id
    } else {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rendezvous.recv_timeout(left) {
                Ok((key, value)) if key == KEY => {
                    break UniqueId::from_bytes(&value).map_err(|e| format!("bad NCCL unique id from rank 0: {e}"))?;
                }
                Ok(_) => continue,
                Err(_) => return Err(format!("rank 0 did not publish the NCCL unique id within {timeout:?}")),
            }
        }
    };
    let mut comm =
        Nccl::new(gpu as usize, rank, world, id).map_err(|e| format!("cannot join NCCL on GPU {gpu}: {e}"))?;
    comm.set_timeout(timeout);
    Ok(Joined::AllReduce(Box::new(comm)))
}
