//! Joining the other ranks of a data-parallel job: the TCP ring over the data plane, or NCCL
//! (with the `cuda` feature), whose unique id rank 0 creates and the coordinator relays.

use shoal_common::JobId;
use shoal_common::proto::{Assignment, WorkerMessage};
use shoal_common::spec::{SyncKind, TrainConfig};
use shoal_train::pipeline::PipePeers;
use shoal_train::{Collective, Peers};
use tokio::sync::mpsc::UnboundedSender;

use super::error::{Link, RunError};
use super::{JobContext, RendezvousRx};
use crate::sync::{PeerInfo, PipeLink, PsClient, Ring, ShardInfo};

/// Data-plane channels of the rings between the same stage of pipeline replicas: this plus the
/// stage index (0 is the data-parallel ring, 1 the pipeline links).
const STAGE_RING_CHANNEL: u32 = 16;

/// How this rank is connected to the others.
pub enum Joined {
    Alone,
    AllReduce(Box<dyn Collective>),
    ParamServer(Box<PsClient>),
    /// One pipeline stage: its neighbours, and the same stage of the other replicas.
    Pipeline {
        link: Box<PipeLink>,
        replicas: Option<Box<Ring>>,
    },
}

impl Joined {
    pub fn peers(&mut self) -> Peers<'_> {
        match self {
            Joined::Alone => Peers::Alone,
            Joined::AllReduce(c) => Peers::AllReduce(c.as_mut()),
            Joined::ParamServer(p) => Peers::ParamServer(p.as_mut()),
            Joined::Pipeline { link, replicas } => Peers::Pipeline(PipePeers {
                link: link.as_mut(),
                replicas: replicas.as_deref_mut().map(|r| r as &mut dyn Collective),
            }),
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
) -> Result<Joined, RunError> {
    let world = assignment.world_size.max(1) as usize;
    let rank = assignment.rank as usize;
    let job = || JobId::new(assignment.job_id.clone());
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
            &ctx.ps_access,
        )
        .map_err(|e| RunError::Join { job: job(), rank, link: Link::ParamServers, source: Box::new(e) })?;
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
        return Err(RunError::PeerCount { job: job(), rank, listed: assignment.peers.len(), world });
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
    let stages = cfg.parallel.pipeline.stages;
    if stages > 1 {
        return pipeline(assignment, ctx, rank, stages, peers, timeout);
    }
    tracing::info!(rank, world, backend = %assignment.backend, "joining the other ranks");
    match assignment.backend.as_str() {
        "nccl" => nccl(assignment, rank, world, timeout, updates, rendezvous),
        _ => {
            let _ = (updates, rendezvous);
            let ring = Ring::connect(&ctx.plane, &assignment.job_id, assignment.attempt, rank, peers, timeout)
                .map_err(|e| RunError::Join { job: job(), rank, link: Link::AllReduceRing, source: Box::new(e) })?;
            Ok(Joined::AllReduce(Box::new(ring)))
        }
    }
}

/// Rank r is stage r % K of replica r / K: it links to ranks r - 1 and r + 1 of its replica, and
/// (with several replicas) joins a ring with the same stage of the others.
fn pipeline(
    assignment: &Assignment,
    ctx: &JobContext,
    rank: usize,
    stages: usize,
    peers: Vec<PeerInfo>,
    timeout: std::time::Duration,
) -> Result<Joined, RunError> {
    let world = peers.len();
    let job = || JobId::new(assignment.job_id.clone());
    if !world.is_multiple_of(stages) {
        return Err(RunError::Stages { job: job(), world, stages });
    }
    let (replica, stage, replicas) = (rank / stages, rank % stages, world / stages);
    tracing::info!(rank, stage, replica, stages, replicas, "joining the pipeline");
    let prev = (stage > 0).then(|| peers[rank - 1].clone());
    let next = (stage + 1 < stages).then(|| peers[rank + 1].clone());
    let link =
        PipeLink::connect(&ctx.plane, &assignment.job_id, assignment.attempt, rank, stage, stages, prev, next, timeout)
            .map_err(|e| RunError::Join { job: job(), rank, link: Link::Pipeline, source: Box::new(e) })?;
    let ring = if replicas > 1 {
        let same_stage: Vec<PeerInfo> = (0..replicas).map(|d| peers[d * stages + stage].clone()).collect();
        let channel = STAGE_RING_CHANNEL + stage as u32;
        let ring =
            Ring::connect_on(&ctx.plane, &assignment.job_id, assignment.attempt, replica, same_stage, timeout, channel)
                .map_err(|e| RunError::Join {
                    job: job(),
                    rank,
                    link: Link::StageRing { stage },
                    source: Box::new(e),
                })?;
        Some(Box::new(ring))
    } else {
        None
    };
    Ok(Joined::Pipeline { link: Box::new(link), replicas: ring })
}

#[cfg(not(feature = "cuda"))]
fn nccl(
    assignment: &Assignment,
    _: usize,
    _: usize,
    _: std::time::Duration,
    _: &UnboundedSender<WorkerMessage>,
    _: &RendezvousRx,
) -> Result<Joined, RunError> {
    Err(RunError::NoCuda { job: JobId::new(assignment.job_id.clone()) })
}

#[cfg(feature = "cuda")]
fn nccl(
    assignment: &Assignment,
    rank: usize,
    world: usize,
    timeout: std::time::Duration,
    updates: &UnboundedSender<WorkerMessage>,
    rendezvous: &RendezvousRx,
) -> Result<Joined, RunError> {
    use shoal_common::proto::{RendezvousPublish, worker_message};

    use crate::sync::nccl::{Nccl, UniqueId};
    const KEY: &str = "nccl-unique-id";
    let job = || JobId::new(assignment.job_id.clone());
    let gpu = *assignment.gpus.first().ok_or_else(|| RunError::NoGpu { job: job(), rank })?;
    let id = if rank == 0 {
        let id = UniqueId::new().map_err(|e| RunError::NcclId { job: job(), source: Box::new(e) })?;
        let _ = updates.send(WorkerMessage {
            kind: Some(worker_message::Kind::Publish(RendezvousPublish {
                job_id: assignment.job_id.clone(),
                attempt: assignment.attempt,
                key: KEY.into(),
                value: id.to_bytes(),
            })),
            seq: 0,
        });
        id
    } else {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rendezvous.recv_timeout(left) {
                Ok((key, value)) if key == KEY => {
                    break UniqueId::from_bytes(&value).map_err(|e| RunError::BadNcclId {
                        job: job(),
                        rank,
                        source: Box::new(e),
                    })?;
                }
                Ok(_) => continue,
                Err(_) => return Err(RunError::NoNcclId { job: job(), rank, timeout }),
            }
        }
    };
    let mut comm = Nccl::new(gpu as usize, rank, world, id).map_err(|e| RunError::NcclJoin {
        job: job(),
        rank,
        gpu,
        source: Box::new(e),
    })?;
    comm.set_timeout(timeout);
    Ok(Joined::AllReduce(Box::new(comm)))
}
