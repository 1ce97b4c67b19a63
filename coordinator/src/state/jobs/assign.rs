//! Assignment: running the scheduler and telling the chosen workers and parameter servers.

use shoal_common::WorkerId;
use shoal_common::proto::{
    Assignment, JobState, NoticeLevel, Peer, PsShard, RankStatus, ShardAssignment, coordinator_message,
};
use shoal_common::spec::Backend;

use super::{RANK_RUNNING, notice};
use crate::scheduler::Placement;
use crate::state::State;

impl State {
    /// Starts every job that can start now.
    /// Runs searches' next trials as room appears. A search adds a trial only while none of its
    /// trials waits in the queue, so suggestions are made as late as possible (with the most
    /// results to learn from) and a freed worker is filled at once.
    pub(in crate::state) fn schedule(&mut self) {
        loop {
            let created = self.drive_searches();
            for p in self.scheduler.place() {
                self.assign(p);
            }
            if created == 0 {
                break;
            }
        }
    }

    fn assign(&mut self, p: Placement) {
        let Some(entry) = self.jobs.get(&p.job) else { return };
        let (mut row, backend) = (entry.row.clone(), entry.backend);
        let world = p.ranks.len();
        row.job.attempt += 1;
        row.job.worker_id = p.ranks[0].worker.to_string();
        row.job.ranks = p
            .ranks
            .iter()
            .enumerate()
            .map(|(i, s)| RankStatus {
                rank: i as u32,
                worker_id: s.worker.to_string(),
                state: RANK_RUNNING.into(),
                last_train: None,
            })
            .collect();
        row.gpus = p.ranks.iter().map(|s| s.gpus.clone()).collect();
        row.job.ps_shards = p
            .shards
            .iter()
            .enumerate()
            .map(|(k, node)| {
                let info = self.workers.get(node).map(|w| w.info.clone()).unwrap_or_default();
                PsShard { shard: k as u32, node_id: node.to_string(), hostname: info.hostname, addr: info.data_addr }
            })
            .collect();
        for s in &row.job.ps_shards {
            let shard = ShardAssignment {
                job_id: row.job.job_id.clone(),
                attempt: row.job.attempt,
                shard: s.shard,
                shards: p.shards.len() as u32,
                spec: row.job.spec.clone(),
                workers: world as u32,
            };
            self.send(&WorkerId::new(s.node_id.clone()), coordinator_message::Kind::Shard(shard));
        }
        let hosts: Vec<String> = p.ranks.iter().map(|s| self.host_of(&s.worker)).collect();
        let peers: Vec<Peer> = p
            .ranks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let info = self.workers.get(&s.worker).map(|w| w.info.clone()).unwrap_or_default();
                Peer {
                    rank: i as u32,
                    worker_id: s.worker.to_string(),
                    hostname: info.hostname,
                    data_addr: info.data_addr,
                }
            })
            .collect();
        let all_nccl =
            p.ranks.iter().all(|s| !s.gpus.is_empty() && self.workers.get(&s.worker).is_some_and(|w| w.info.nccl));
        let backend = match (world, backend) {
            _ if !p.shards.is_empty() => "ps",
            (1, _) => "",
            (_, Backend::Nccl) => "nccl",
            (_, Backend::Auto) if all_nccl => "nccl",
            _ => "ring",
        };
        let resume = (!row.resume_from.is_empty()).then(|| row.resume_from.clone());
        let mut message = if world == 1 {
            format!("assigned to worker {}", hosts[0])
        } else if !p.shards.is_empty() {
            let list: Vec<String> = hosts.iter().enumerate().map(|(i, h)| format!("rank {i} on {h}")).collect();
            let servers: Vec<String> = row
                .job
                .ps_shards
                .iter()
                .map(|s| format!("shard {} on {}", s.shard, self.host_of(&WorkerId::new(s.node_id.clone()))))
                .collect();
            format!(
                "assigned {world} ranks ({}) and {} parameter shards ({})",
                list.join(", "),
                servers.len(),
                servers.join(", ")
            )
        } else {
            let list: Vec<String> = hosts.iter().enumerate().map(|(i, h)| format!("rank {i} on {h}")).collect();
            format!("assigned {world} ranks ({backend} all-reduce): {}", list.join(", "))
        };
        if let Some(ckpt) = &resume {
            message.push_str(&format!(", resuming from {ckpt}"));
        }
        let ev = self.event(&mut row, notice(NoticeLevel::Info, message));
        self.store_and_keep(row.clone(), vec![ev]);
        let where_ =
            if world == 1 { format!("running on {}", hosts[0]) } else { format!("running on {world} workers") };
        self.set_state(&mut row, JobState::Running, where_, None);
        tracing::info!(job_id = %p.job, ranks = world, backend, attempt = row.job.attempt, "job assigned");
        self.placed_at.insert(p.job.clone(), tokio::time::Instant::now());
        let link_key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        for (i, slot) in p.ranks.into_iter().enumerate() {
            let assignment = Assignment {
                trace_parent: self.traces.parent_of(&p.job),
                link_key: link_key.clone(),
                job_id: p.job.to_string(),
                attempt: row.job.attempt,
                spec: row.job.spec.clone(),
                resume_from: row.resume_from.clone(),
                gpus: slot.gpus,
                rank: i as u32,
                world_size: world as u32,
                peers: if world > 1 { peers.clone() } else { Vec::new() },
                backend: backend.into(),
                ps_shards: row.job.ps_shards.clone(),
            };
            self.send(&slot.worker, coordinator_message::Kind::Assign(assignment));
        }
    }
}
