//! Job operations: submit, inspect, cancel, watch; gang placement onto workers; progress, results
//! and rendezvous values reported by each rank.

use shoal_common::proto::{
    Assignment, CancelJob, CoordinatorMessage, Job, JobCheckpointed, JobEnded, JobEvent, JobFinished, JobMetric,
    JobNotice, JobResult, JobSpec, JobState, Notice, NoticeLevel, Outcome, Peer, PsShard, RankStatus,
    RendezvousPublish, RendezvousValue, ShardAssignment, Split, StateChanged, coordinator_message, job_event,
};
use shoal_common::spec::{Backend, SyncKind, TrainConfig};
use shoal_common::time::{ms_to_timestamp, now_ms};
use shoal_common::{JobId, WorkerId, spec};
use tokio::sync::broadcast;

use super::{JobEntry, State};
use crate::error::CoordinatorError;
use crate::scheduler::{Demand, Placement, Resources, Wait};
use crate::store::JobRow;

/// Live events buffered per watched job before a slow watcher falls back to the database.
const WATCH_BUFFER: usize = 256;
/// Most jobs one list returns.
const MAX_LIST: usize = 1000;
/// Largest job spec accepted (encoded), against specs that bloat the database and every watcher.
const MAX_SPEC_BYTES: usize = 256 * 1024;
/// Longest wait before an automatic restart.
const RETRY_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);
/// Rank states (`RankStatus.state`).
const RANK_RUNNING: &str = "running";
/// An elastic job runs at least this long on a placement before it grows again.
const GROW_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) fn demand_of(cfg: &TrainConfig) -> Demand {
    let ps_shards = match cfg.parallel.sync {
        SyncKind::ParamServer { shards, .. } => shards as u32,
        SyncKind::AllReduce => 0,
    };
    Demand {
        per_rank: Resources { cpus: cfg.resources.cpus, memory_mb: cfg.resources.memory_mb, gpus: cfg.resources.gpus },
        ranks: (cfg.parallel.data * cfg.parallel.pipeline.stages) as u32,
        min_ranks: (cfg.parallel.min_data * cfg.parallel.pipeline.stages) as u32,
        needs_nccl: ps_shards == 0 && cfg.parallel.backend == Backend::Nccl,
        ps_shards,
    }
}

fn state_of(row: &JobRow) -> JobState {
    JobState::try_from(row.job.state).unwrap_or(JobState::Unspecified)
}

fn notice(level: NoticeLevel, message: impl Into<String>) -> job_event::Kind {
    job_event::Kind::Notice(Notice { level: level as i32, message: message.into() })
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed | Outcome::Unspecified => "failed",
        Outcome::Cancelled => "cancelled",
        Outcome::Interrupted => "interrupted",
    }
}

/// Ranks (and their workers) still running.
fn running_ranks(row: &JobRow) -> Vec<(usize, WorkerId)> {
    row.job
        .ranks
        .iter()
        .filter(|r| r.state == RANK_RUNNING)
        .map(|r| (r.rank as usize, WorkerId::new(r.worker_id.clone())))
        .collect()
}

/// What a new watcher gets: history, then live events until the job ends.
pub struct Subscription {
    pub history: Vec<JobEvent>,
    pub live: broadcast::Receiver<JobEvent>,
    pub finished: bool,
}

/// Whether an event makes its job terminal.
pub fn is_terminal_event(e: &JobEvent) -> bool {
    matches!(&e.kind, Some(job_event::Kind::State(s)) if JobState::try_from(s.state).is_ok_and(JobState::is_terminal))
}

impl State {
    /// Re-creates a job loaded from the database.
    pub(super) fn restore_job(&mut self, mut row: JobRow) {
        let id = JobId::new(row.job.job_id.clone());
        let (demand, backend) = match row.job.spec.as_ref().map(spec::validate) {
            Some(Ok(cfg)) => (demand_of(&cfg), cfg.parallel.backend),
            Some(Err(errors)) => {
                if !state_of(&row).is_terminal() {
                    let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    self.set_state(
                        &mut row,
                        JobState::Failed,
                        format!("stored spec is no longer valid: {}", reasons.join("; ")),
                        None,
                    );
                }
                (Demand::single(Resources::default()), Backend::Auto)
            }
            None => (Demand::single(Resources::default()), Backend::Auto),
        };
        if state_of(&row) == JobState::Queued {
            self.scheduler.enqueue(id.clone(), row.job.spec.as_ref().map_or(0, |s| s.priority), row.seq, demand);
        }
        self.jobs.insert(id, JobEntry { row, demand, backend });
    }

    pub fn submit(&mut self, spec: Option<JobSpec>) -> Result<Job, CoordinatorError> {
        let spec = spec.ok_or_else(|| CoordinatorError::invalid("spec", "required"))?;
        let size = prost::Message::encoded_len(&spec);
        if size > MAX_SPEC_BYTES {
            return Err(CoordinatorError::invalid("spec", format!("{size} bytes, at most {MAX_SPEC_BYTES}")));
        }
        if spec.search.is_some() {
            return self.submit_search(spec);
        }
        let cfg = spec::validate(&spec).map_err(CoordinatorError::InvalidSpec)?;
        self.check_workers(&cfg, "parallelism")?;
        let id = self.enqueue_new(spec, &cfg, "submitted")?;
        self.schedule();
        self.view(&id)
    }

    /// Refuses a job that would occupy more workers than the operator allows.
    pub(super) fn check_workers(&self, cfg: &TrainConfig, field: &str) -> Result<(), CoordinatorError> {
        let limit = self.limits.max_workers_per_job;
        let ranks = demand_of(cfg).ranks;
        if limit > 0 && ranks > limit {
            return Err(CoordinatorError::invalid(
                field,
                format!("needs {ranks} workers; this coordinator allows at most {limit} per job (max_workers_per_job)"),
            ));
        }
        Ok(())
    }

    /// Creates a job record in `state` (queued, or running for jobs the coordinator runs itself)
    /// with its first event, and stores it.
    pub(super) fn store_new(
        &mut self,
        id: &JobId,
        spec: JobSpec,
        state: JobState,
        reason: &str,
    ) -> Result<JobRow, CoordinatorError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = ms_to_timestamp(now_ms());
        let running = state == JobState::Running;
        let mut row = JobRow {
            job: Job {
                job_id: id.to_string(),
                spec: Some(spec),
                state: state as i32,
                // A queued job's reason is its live wait reason (see `view`).
                reason: if running { reason.to_owned() } else { String::new() },
                submitted_at: now,
                started_at: if running { now } else { None },
                attempt: u32::from(running),
                ..Default::default()
            },
            seq,
            resume_from: String::new(),
            last_checkpoint: String::new(),
            gpus: Vec::new(),
            next_event: 1,
            holds_worker: false,
        };
        let change =
            StateChanged { state: state as i32, reason: reason.into(), attempt: row.job.attempt, ..Default::default() };
        let ev = self.event(&mut row, job_event::Kind::State(change));
        self.commit(&row, vec![ev])?;
        Ok(row)
    }

    /// Stores a new job and queues it.
    pub(super) fn enqueue_new(
        &mut self,
        spec: JobSpec,
        cfg: &TrainConfig,
        reason: &str,
    ) -> Result<JobId, CoordinatorError> {
        let id = JobId::generate();
        let row = self.store_new(&id, spec, JobState::Queued, reason)?;
        let seq = row.seq;
        tracing::info!(job_id = %id, name = %cfg.name, priority = cfg.priority, ranks = cfg.parallel.data, "job submitted");
        let demand = demand_of(cfg);
        self.scheduler.enqueue(id.clone(), cfg.priority, seq, demand);
        self.jobs.insert(id.clone(), JobEntry { row, demand, backend: cfg.parallel.backend });
        Ok(id)
    }

    /// The public record of a job, with its live queue position and wait reason.
    pub fn view(&self, id: &JobId) -> Result<Job, CoordinatorError> {
        let entry = self.jobs.get(id).ok_or_else(|| CoordinatorError::JobNotFound { job_id: id.to_string() })?;
        let mut job = entry.row.job.clone();
        if state_of(&entry.row) == JobState::Queued {
            job.queue_position = self.scheduler.queue_position(id).unwrap_or(0) as u32;
            let d = entry.demand;
            let need = if d.ranks > 1 {
                format!("{} workers with {} each", d.ranks, d.per_rank)
            } else {
                d.per_rank.to_string()
            };
            let waiting = match self.scheduler.wait_reason(id) {
                _ if self.workers.values().all(|w| w.session.is_none()) => "waiting for a worker to connect".to_owned(),
                Some(Wait::TooLarge { fitting, largest: Some(l) }) if d.ranks > 1 => {
                    format!(
                        "not enough large workers: needs {need}{}; {fitting} can fit a rank (the largest offers {l})",
                        if d.needs_nccl { " and NCCL" } else { "" }
                    )
                }
                Some(Wait::TooLarge { largest: Some(l), .. }) => {
                    format!("no worker is large enough: needs {need}, the largest offers {l}")
                }
                Some(Wait::TooLarge { largest: None, .. }) if d.needs_nccl => {
                    "waiting for workers that can load NCCL".to_owned()
                }
                Some(Wait::TooLarge { largest: None, .. }) => "waiting for a worker to connect".to_owned(),
                Some(Wait::NoParamServers) => {
                    format!("waiting for a parameter server to register ({} shards)", d.ps_shards)
                }
                _ => format!("waiting for {need} to be free (position {} in the queue)", job.queue_position),
            };
            job.reason = if job.reason.is_empty() { waiting } else { format!("{}; {waiting}", job.reason) };
        }
        Ok(job)
    }

    pub fn get(&self, job_id: &str) -> Result<Job, CoordinatorError> {
        self.view(&JobId::new(job_id))
    }

    /// Jobs in the given states (all when empty), newest first.
    pub fn list(&self, states: &[JobState], limit: usize) -> Vec<Job> {
        let limit = if limit == 0 { 100 } else { limit.min(MAX_LIST) };
        let mut rows: Vec<&JobEntry> =
            self.jobs.values().filter(|e| states.is_empty() || states.contains(&state_of(&e.row))).collect();
        rows.sort_by_key(|e| std::cmp::Reverse(e.row.seq));
        rows.into_iter().take(limit).filter_map(|e| self.view(&JobId::new(e.row.job.job_id.clone())).ok()).collect()
    }

    pub fn cancel(&mut self, job_id: &str, reason: &str) -> Result<Job, CoordinatorError> {
        let id = JobId::new(job_id);
        let entry = self.jobs.get(&id).ok_or_else(|| CoordinatorError::JobNotFound { job_id: job_id.into() })?;
        let state = state_of(&entry.row);
        if state.is_terminal() {
            return Err(CoordinatorError::AlreadyFinished { job_id: job_id.into(), state: state.label() });
        }
        let reason = if reason.trim().is_empty() {
            "cancelled by user".to_owned()
        } else {
            format!("cancelled by user: {}", reason.trim())
        };
        let mut row = entry.row.clone();
        if self.searches.contains_key(&id) {
            self.end_search(&id, JobState::Cancelled, reason.clone());
            self.schedule();
            return self.view(&id);
        }
        if state == JobState::Running {
            // The workers keep their reservations until they confirm the ranks stopped.
            self.stop_ranks(&mut row, None, &reason);
        } else {
            self.scheduler.dequeue(&id);
        }
        self.set_state(&mut row, JobState::Cancelled, reason, None);
        tracing::info!(job_id = %id, "job cancelled");
        self.schedule();
        self.view(&id)
    }

    /// Sends a cancellation to every running rank except `except`; the job keeps their
    /// reservations until they confirm.
    pub(super) fn stop_ranks(&mut self, row: &mut JobRow, except: Option<usize>, reason: &str) {
        self.stop_ranks_with(row, except, reason, false);
    }

    /// [`Self::stop_ranks`]; with `requeue` the ranks checkpoint before they stop.
    pub(super) fn stop_ranks_with(&mut self, row: &mut JobRow, except: Option<usize>, reason: &str, requeue: bool) {
        for (rank, worker) in running_ranks(row) {
            if Some(rank) == except {
                continue;
            }
            let cancel = CancelJob {
                job_id: row.job.job_id.clone(),
                attempt: row.job.attempt,
                reason: reason.to_owned(),
                checkpoint_and_requeue: requeue,
            };
            self.send(&worker, coordinator_message::Kind::Cancel(cancel));
            row.holds_worker = true;
        }
    }

    /// History after `after` plus a live feed. Subscribing and reading the history happen under
    /// the same lock, so no event falls between them.
    pub fn subscribe(&mut self, job_id: &str, after: u64) -> Result<Subscription, CoordinatorError> {
        let id = JobId::new(job_id);
        let entry = self.jobs.get(&id).ok_or_else(|| CoordinatorError::JobNotFound { job_id: job_id.into() })?;
        let finished = state_of(&entry.row).is_terminal();
        let live = self.watchers.entry(id).or_insert_with(|| broadcast::channel(WATCH_BUFFER).0).subscribe();
        let history = self.store.events(job_id, after)?;
        Ok(Subscription { history, live, finished })
    }

    /// Stored events after `after` (for a watcher that fell behind the live feed).
    pub fn events_after(&self, job_id: &str, after: u64) -> Result<Vec<JobEvent>, CoordinatorError> {
        Ok(self.store.events(job_id, after)?)
    }

    /// Drops live feeds nobody listens to any more.
    pub fn prune_watchers(&mut self) {
        self.watchers.retain(|_, tx| tx.receiver_count() > 0);
    }

    /// Changes a job's state, records the event and stores it.
    pub(super) fn set_state(&mut self, row: &mut JobRow, state: JobState, reason: String, result: Option<JobResult>) {
        let now = ms_to_timestamp(now_ms());
        row.job.state = state as i32;
        row.job.reason = reason.clone();
        if state == JobState::Running && row.job.started_at.is_none() {
            row.job.started_at = now;
        }
        if state.is_terminal() {
            row.job.finished_at = now;
        }
        if result.is_some() {
            row.job.result = result.clone();
        }
        if (state.is_terminal() || state == JobState::Queued) && !row.job.ps_shards.is_empty() {
            self.end_shards(row, state);
        }
        let ev = self.event(
            row,
            job_event::Kind::State(StateChanged {
                state: state as i32,
                reason,
                worker_id: row.job.worker_id.clone(),
                attempt: row.job.attempt,
                result,
            }),
        );
        self.store_and_keep(row.clone(), vec![ev]);
        if state.is_terminal() {
            self.trial_ended(row);
        }
    }

    /// Tells a job attempt's parameter servers that it is over, and frees their shard slots.
    fn end_shards(&mut self, row: &JobRow, state: JobState) {
        let id = JobId::new(row.job.job_id.clone());
        self.scheduler.release_shards(&id);
        let mut told = std::collections::BTreeSet::new();
        for s in &row.job.ps_shards {
            if told.insert(s.node_id.clone()) {
                let ended =
                    JobEnded { job_id: row.job.job_id.clone(), attempt: row.job.attempt, reason: state.label().into() };
                self.send(&WorkerId::new(s.node_id.clone()), coordinator_message::Kind::Ended(ended));
            }
        }
    }

    /// Stores the row (logging failures: callers are reacting to workers, not serving a request)
    /// and keeps it in memory.
    pub(super) fn store_and_keep(&mut self, row: JobRow, events: Vec<JobEvent>) {
        if let Err(e) = self.commit(&row, events) {
            tracing::error!(job_id = %row.job.job_id, error = %e, "could not store a job update");
        }
        let id = JobId::new(row.job.job_id.clone());
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.row = row;
        }
    }

    /// Starts every job that can start now.
    /// Runs searches' next trials as room appears. A search adds a trial only while none of its
    /// trials waits in the queue, so suggestions are made as late as possible (with the most
    /// results to learn from) and a freed worker is filled at once.
    pub(super) fn schedule(&mut self) {
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

    fn host_of(&self, worker: &WorkerId) -> String {
        self.workers.get(worker).map_or_else(|| worker.to_string(), |w| w.describe(worker))
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

    /// Sends to a worker's session; a missing session is handled by liveness.
    pub(super) fn send(&mut self, worker: &WorkerId, kind: coordinator_message::Kind) {
        let sent = self
            .workers
            .get(worker)
            .and_then(|w| w.session.as_ref())
            .is_some_and(|s| s.tx.send(Ok(CoordinatorMessage { kind: Some(kind) })).is_ok());
        if !sent {
            tracing::warn!(worker_id = %worker, "worker has no open session; liveness checks will resolve its jobs");
        }
    }

    /// The job a worker reports about and the rank it runs, if the report is current.
    fn reported_job(&self, worker: &WorkerId, job_id: &str, attempt: u32) -> Option<(JobRow, usize)> {
        let entry = self.jobs.get(&JobId::new(job_id))?;
        let rank = entry.row.job.ranks.iter().position(|r| r.worker_id == worker.as_str());
        match rank.filter(|_| entry.row.job.attempt == attempt) {
            Some(r) => Some((entry.row.clone(), r)),
            None => {
                tracing::debug!(job_id, worker_id = %worker, attempt, "ignoring a report about a stale attempt");
                None
            }
        }
    }

    pub(super) fn on_started(&mut self, worker: &WorkerId, job_id: &str, attempt: u32) {
        if let Some((mut row, rank)) =
            self.reported_job(worker, job_id, attempt).filter(|(r, _)| state_of(r) == JobState::Running)
        {
            let who = if row.job.ranks.len() > 1 {
                format!("rank {rank} started on {worker}")
            } else {
                format!("training started on {worker}")
            };
            let ev = self.event(&mut row, notice(NoticeLevel::Info, format!("{who} (attempt {attempt})")));
            self.store_and_keep(row, vec![ev]);
        }
    }

    pub(super) fn on_metric(&mut self, worker: &WorkerId, m: JobMetric) {
        let Some(point) = m.point else { return };
        let Some((mut row, rank)) =
            self.reported_job(worker, &m.job_id, m.attempt).filter(|(r, _)| state_of(r) == JobState::Running)
        else {
            return;
        };
        if point.split == Split::Validation as i32 {
            row.job.last_validation = Some(point.clone());
        } else {
            row.job.ranks[rank].last_train = Some(point.clone());
            if rank == 0 {
                row.job.last_train = Some(point.clone());
            }
        }
        let validation = point.split == Split::Validation as i32;
        let ev = self.event(&mut row, job_event::Kind::Metric(point.clone()));
        self.store_and_keep(row, vec![ev]);
        if validation {
            self.trial_reported(&JobId::new(m.job_id), &point);
        }
    }

    pub(super) fn on_notice(&mut self, worker: &WorkerId, n: JobNotice) {
        let Some(notice) = n.notice else { return };
        let Some((mut row, _)) =
            self.reported_job(worker, &n.job_id, n.attempt).filter(|(r, _)| state_of(r) == JobState::Running)
        else {
            return;
        };
        let ev = self.event(&mut row, job_event::Kind::Notice(notice));
        self.store_and_keep(row, vec![ev]);
    }

    pub(super) fn on_checkpointed(&mut self, worker: &WorkerId, c: JobCheckpointed) {
        // Rank 0 names the checkpoint to resume from; pipeline stages derive theirs from it.
        if let Some((mut row, 0)) = self.reported_job(worker, &c.job_id, c.attempt) {
            row.last_checkpoint = c.path;
            self.store_and_keep(row, Vec::new());
        }
    }

    /// Relays a value one rank published to the job's other ranks.
    pub(super) fn on_publish(&mut self, worker: &WorkerId, p: RendezvousPublish) {
        let Some((row, from)) = self.reported_job(worker, &p.job_id, p.attempt) else { return };
        tracing::debug!(job_id = %p.job_id, key = %p.key, from, "relaying a rendezvous value");
        for (rank, target) in running_ranks(&row) {
            if rank != from {
                let value = RendezvousValue {
                    job_id: p.job_id.clone(),
                    attempt: p.attempt,
                    key: p.key.clone(),
                    value: p.value.clone(),
                    from_rank: from as u32,
                };
                self.send(&target, coordinator_message::Kind::Rendezvous(value));
            }
        }
    }

    pub(super) fn on_finished(&mut self, worker: &WorkerId, f: JobFinished) {
        let Some((mut row, rank)) = self.reported_job(worker, &f.job_id, f.attempt) else { return };
        let id = JobId::new(f.job_id.clone());
        let world = row.job.ranks.len();
        self.scheduler.release_rank(&id, worker);
        let outcome = Outcome::try_from(f.outcome).unwrap_or(Outcome::Unspecified);
        row.job.ranks[rank].state = outcome_label(outcome).into();
        let still_running = !running_ranks(&row).is_empty();
        if state_of(&row).is_terminal() || state_of(&row) == JobState::Queued {
            // The job already ended (or was requeued); this rank confirmed it stopped.
            row.holds_worker = still_running;
            self.store_and_keep(row, Vec::new());
            self.schedule();
            return;
        }
        match outcome {
            Outcome::Succeeded => {
                if rank == 0 {
                    row.job.result = f.result;
                }
                if row.job.ranks.iter().all(|r| r.state == "succeeded") {
                    tracing::info!(job_id = %id, "job succeeded");
                    let result = row.job.result.clone();
                    self.set_state(&mut row, JobState::Succeeded, "finished".into(), result);
                } else {
                    self.store_and_keep(row, Vec::new());
                }
            }
            Outcome::Cancelled if !row.job.ranks.iter().any(|r| r.state == "interrupted") => {
                self.stop_ranks(&mut row, Some(rank), "another rank was cancelled");
                self.set_state(&mut row, JobState::Cancelled, "cancelled on the worker".into(), None);
            }
            Outcome::Interrupted | Outcome::Cancelled => {
                // A draining rank stops; its siblings are stopped too (ranks of all-reduce jobs
                // stop together by themselves), and once none runs the job is requeued.
                if rank == 0 && !f.checkpoint.is_empty() {
                    row.last_checkpoint = f.checkpoint.clone();
                }
                if still_running {
                    self.stop_ranks_with(&mut row, Some(rank), "another rank is draining", true);
                    self.store_and_keep(row, Vec::new());
                } else {
                    row.resume_from = row.last_checkpoint.clone();
                    let reason = if self.growing.remove(&id) {
                        format!("resizing: checkpointed at step {} to restart on more workers", f.step)
                    } else if row.resume_from.is_empty() {
                        format!("interrupted at step {} on {worker} (worker draining); restarting", f.step)
                    } else {
                        format!(
                            "interrupted at step {} on {worker} (worker draining); will resume from its checkpoint",
                            f.step
                        )
                    };
                    tracing::info!(job_id = %id, worker_id = %worker, step = f.step, "job interrupted, requeued");
                    self.set_state(&mut row, JobState::Queued, reason, None);
                    let (priority, demand) =
                        (row.job.spec.as_ref().map_or(0, |s| s.priority), self.jobs.get(&id).map(|e| e.demand));
                    if let Some(demand) = demand {
                        self.scheduler.enqueue(id, priority, row.seq, demand);
                    }
                }
            }
            Outcome::Failed | Outcome::Unspecified => {
                let error = if f.error.is_empty() {
                    "the worker reported a failure without a reason".to_owned()
                } else {
                    f.error
                };
                let error = if world > 1 { format!("rank {rank} on {}: {error}", self.host_of(worker)) } else { error };
                tracing::warn!(job_id = %id, worker_id = %worker, error = %error, "job failed");
                self.stop_ranks(&mut row, Some(rank), "another rank failed");
                self.fail_or_retry(&mut row, error, f.retryable);
            }
        }
        self.schedule();
    }

    /// Ends a running job after a failure. When the failure came from the infrastructure and the
    /// job has restarts left, it is requeued to resume from its last checkpoint once every rank
    /// has stopped and a backoff (1, 2, 4, ... up to 30 s) has passed; otherwise it fails.
    pub(super) fn fail_or_retry(&mut self, row: &mut JobRow, reason: String, retryable: bool) {
        let max = row.job.spec.as_ref().and_then(|s| spec::validate(s).ok()).map_or(0, |c| c.training.max_retries);
        if !retryable || row.job.retries >= max {
            let reason = if retryable && max > 0 { format!("{reason} (gave up after {max} restarts)") } else { reason };
            self.set_state(row, JobState::Failed, reason, None);
            return;
        }
        row.job.retries += 1;
        row.resume_from = row.last_checkpoint.clone();
        let delay = std::time::Duration::from_secs(1u64 << (row.job.retries - 1).min(5)).min(RETRY_BACKOFF_MAX);
        let from = if row.resume_from.is_empty() {
            "from the start".to_owned()
        } else {
            format!("from checkpoint {}", row.resume_from)
        };
        let why = format!("{reason}; restarting {from} in {}s (restart {} of {max})", delay.as_secs(), row.job.retries);
        tracing::warn!(job_id = %row.job.job_id, retries = row.job.retries, "job failed; restarting: {why}");
        self.set_state(row, JobState::Queued, why, None);
        self.retry_at.push((tokio::time::Instant::now() + delay, JobId::new(row.job.job_id.clone())));
    }

    /// Queues the restarts whose backoff has passed and whose ranks have all stopped.
    /// Elastic jobs running below their most ranks grow when workers could take more ranks and
    /// nothing waits in the queue: their ranks checkpoint and stop, and the job is placed again
    /// with as many ranks as fit (at most once per `GROW_AFTER` of running).
    pub(super) fn grow_elastic(&mut self, now: tokio::time::Instant) {
        let jobs = &self.jobs;
        let running = |id: &JobId| jobs.get(id).is_some_and(|e| state_of(&e.row) == JobState::Running);
        self.growing.retain(|id| running(id));
        self.placed_at.retain(|id, _| running(id));
        if self.scheduler.has_queued() {
            return;
        }
        let candidates: Vec<(JobId, Demand, usize)> = self
            .jobs
            .iter()
            .filter(|(id, e)| {
                state_of(&e.row) == JobState::Running
                    && e.demand.min_ranks < e.demand.ranks
                    && (e.row.job.ranks.len() as u32) < e.demand.ranks
                    && e.row.job.ranks.iter().all(|r| r.state == RANK_RUNNING)
                    && !self.growing.contains(*id)
                    && self.placed_at.get(*id).is_some_and(|t| now.duration_since(*t) >= GROW_AFTER)
            })
            .map(|(id, e)| (id.clone(), e.demand, e.row.job.ranks.len()))
            .collect();
        for (id, demand, ranks) in candidates {
            let idle = self.scheduler.idle_for(&id, &demand);
            if idle == 0 {
                continue;
            }
            let Some(mut row) = self.jobs.get(&id).map(|e| e.row.clone()) else { continue };
            let target = (ranks + idle).min(demand.ranks as usize);
            tracing::info!(job_id = %id, ranks, target, "elastic job growing");
            self.growing.insert(id.clone());
            let ev = self.event(
                &mut row,
                notice(
                    NoticeLevel::Info,
                    format!(
                        "elastic: {idle} more worker(s) free; checkpointing to grow from {ranks} to {target} ranks"
                    ),
                ),
            );
            self.stop_ranks_with(&mut row, None, "growing onto more workers", true);
            self.store_and_keep(row, vec![ev]);
        }
    }

    pub(super) fn requeue_due(&mut self, now: tokio::time::Instant) {
        let mut due = Vec::new();
        self.retry_at.retain(|(at, id)| {
            let ready = *at <= now;
            if ready {
                due.push(id.clone());
            }
            !ready
        });
        let mut queued = false;
        for id in due {
            let Some(entry) = self.jobs.get(&id) else { continue };
            if state_of(&entry.row) != JobState::Queued {
                continue;
            }
            if entry.row.holds_worker {
                // Some rank has not confirmed that it stopped: look again on the next tick.
                self.retry_at.push((now, id));
                continue;
            }
            let (priority, seq, demand) =
                (entry.row.job.spec.as_ref().map_or(0, |s| s.priority), entry.row.seq, entry.demand);
            self.scheduler.enqueue(id, priority, seq, demand);
            queued = true;
        }
        if queued {
            self.schedule();
        }
    }

    /// Fails every job that had a rank on a lost worker, and frees what they held.
    pub(super) fn fail_jobs_of(&mut self, worker: &WorkerId, why: &str) {
        self.scheduler.remove_worker(worker);
        let holds_shard = |row: &JobRow| {
            state_of(row) == JobState::Running && row.job.ps_shards.iter().any(|s| s.node_id == worker.as_str())
        };
        let shard_jobs: Vec<JobRow> =
            self.jobs.values().filter(|e| holds_shard(&e.row)).map(|e| e.row.clone()).collect();
        for mut row in shard_jobs {
            let shard = row.job.ps_shards.iter().find(|s| s.node_id == worker.as_str()).map_or(0, |s| s.shard);
            let reason = format!("parameter server shard {shard} on {why}");
            tracing::warn!(job_id = %row.job.job_id, node_id = %worker, reason, "job failed: parameter server lost");
            self.stop_ranks(&mut row, None, "a parameter server was lost");
            self.fail_or_retry(&mut row, reason, true);
        }
        let affected: Vec<JobRow> = self
            .jobs
            .values()
            .filter(|e| e.row.job.ranks.iter().any(|r| r.worker_id == worker.as_str() && r.state == RANK_RUNNING))
            .map(|e| e.row.clone())
            .collect();
        for mut row in affected {
            let Some(rank) = row.job.ranks.iter().position(|r| r.worker_id == worker.as_str()) else { continue };
            row.job.ranks[rank].state = "lost".into();
            let running = state_of(&row) == JobState::Running;
            if running {
                let reason = if row.job.ranks.len() > 1 { format!("rank {rank} on {why}") } else { why.to_owned() };
                tracing::warn!(job_id = %row.job.job_id, worker_id = %worker, reason, "job failed: worker lost");
                row.holds_worker = false;
                self.stop_ranks(&mut row, Some(rank), "another rank's worker was lost");
                self.fail_or_retry(&mut row, reason, true);
            } else {
                row.holds_worker = !running_ranks(&row).is_empty();
                self.store_and_keep(row, Vec::new());
            }
        }
    }

    /// Whether the job currently runs a rank on this worker in this attempt.
    pub(super) fn runs_on(&self, job_id: &str, attempt: u32, worker: &WorkerId) -> bool {
        self.jobs.get(&JobId::new(job_id)).is_some_and(|e| {
            state_of(&e.row) == JobState::Running
                && e.row.job.attempt == attempt
                && e.row.job.ranks.iter().any(|r| r.worker_id == worker.as_str() && r.state == RANK_RUNNING)
        })
    }

    /// Ranks the coordinator believes run on a worker: (job, attempt, rank, per-rank demand, GPUs).
    pub(super) fn ranks_on(&self, worker: &WorkerId) -> Vec<(JobId, u32, usize, Resources, Vec<u32>)> {
        let mut out = Vec::new();
        for (id, e) in &self.jobs {
            for r in e.row.job.ranks.iter().filter(|r| r.worker_id == worker.as_str() && r.state == RANK_RUNNING) {
                let gpus = e.row.gpus.get(r.rank as usize).cloned().unwrap_or_default();
                out.push((id.clone(), e.row.job.attempt, r.rank as usize, e.demand.per_rank, gpus));
            }
        }
        out
    }

    /// A reconnecting worker no longer runs this rank: the rank is lost.
    pub(super) fn forget_rank(&mut self, job: &JobId, worker: &WorkerId, why: String) {
        let Some(mut row) = self.jobs.get(job).map(|e| e.row.clone()) else { return };
        self.scheduler.release_rank(job, worker);
        let Some(rank) = row.job.ranks.iter().position(|r| r.worker_id == worker.as_str()) else { return };
        row.job.ranks[rank].state = "lost".into();
        if state_of(&row) == JobState::Running {
            row.holds_worker = false;
            self.stop_ranks(&mut row, Some(rank), "another rank was lost");
            let why = if row.job.ranks.len() > 1 { format!("rank {rank}: {why}") } else { why };
            self.fail_or_retry(&mut row, why, true);
        } else {
            row.holds_worker = !running_ranks(&row).is_empty();
            self.store_and_keep(row, Vec::new());
        }
    }
}
