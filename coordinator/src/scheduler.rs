//! Placement as a pure state machine: workers with capacity, a priority queue of jobs with
//! demands; `place` decides which queued jobs start where. No clocks, sockets or database, so
//! every decision is unit-tested directly.
//!
//! Policy: highest priority first, then submission order. A job asks for `ranks` workers (one rank
//! each) that all fit its per-rank demand; it starts on all of them at once or not at all (gang
//! scheduling), so two large jobs can never deadlock holding half a cluster each. Each rank goes to
//! the worker it fits best (least left over). When the head of the queue cannot start now but
//! would once running jobs end, the workers it will need are reserved for it, so smaller jobs
//! behind it cannot starve it; they may still use other workers (backfill).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use shoal_common::{JobId, WorkerId};

/// An amount of worker resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: u32,
    pub memory_mb: u64,
    pub gpus: u32,
}

impl Resources {
    fn fits_in(&self, free: &Resources) -> bool {
        self.cpus <= free.cpus && self.memory_mb <= free.memory_mb && self.gpus <= free.gpus
    }

    fn minus(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.saturating_sub(other.cpus),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    fn plus(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus + other.cpus,
            memory_mb: self.memory_mb + other.memory_mb,
            gpus: self.gpus + other.gpus,
        }
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} CPU{}, {} MiB", self.cpus, if self.cpus == 1 { "" } else { "s" }, self.memory_mb)?;
        if self.gpus > 0 {
            write!(f, ", {} GPU{}", self.gpus, if self.gpus == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

/// What a queued job needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    /// Per rank.
    pub per_rank: Resources,
    /// Ranks, each on a different worker.
    pub ranks: u32,
    /// Elastic jobs start with as many ranks as fit, from this many up to `ranks`.
    pub min_ranks: u32,
    /// Every rank's worker must be able to load NCCL.
    pub needs_nccl: bool,
    /// Parameter-server shards, placed on parameter-server nodes.
    pub ps_shards: u32,
}

impl Demand {
    pub fn single(per_rank: Resources) -> Self {
        Self { per_rank, ranks: 1, min_ranks: 1, needs_nccl: false, ps_shards: 0 }
    }
}

struct Node {
    capacity: Resources,
    used: Resources,
    /// GPU indices not reserved by a job.
    free_gpus: BTreeSet<u32>,
    /// False while the worker drains or is disconnected.
    schedulable: bool,
    nccl: bool,
    /// A parameter-server node: holds shards, never ranks.
    param_server: bool,
    /// Shards held (parameter-server nodes).
    shards: usize,
    jobs: BTreeSet<JobId>,
}

impl Node {
    fn free(&self) -> Resources {
        self.capacity.minus(&self.used)
    }

    fn suits(&self, d: &Demand) -> bool {
        self.schedulable && !self.param_server && (!d.needs_nccl || self.nccl)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct QueueKey {
    priority: Reverse<i64>,
    seq: u64,
    job: JobId,
}

struct Slot {
    worker: WorkerId,
    demand: Resources,
    gpus: Vec<u32>,
}

/// One rank's place: the worker and the GPU indices reserved there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankSlot {
    pub worker: WorkerId,
    pub gpus: Vec<u32>,
}

/// A decision: start `job` with rank i on `ranks[i]` and shard k on `shards[k]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub job: JobId,
    pub ranks: Vec<RankSlot>,
    pub shards: Vec<WorkerId>,
}

/// Why a queued job is still waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Enough workers could take it once some of their jobs end.
    Busy,
    /// Fewer than `ranks` schedulable workers are large enough.
    TooLarge { fitting: usize, largest: Option<Resources> },
    /// The job needs parameter servers and none is registered.
    NoParamServers,
}

#[derive(Default)]
pub struct Scheduler {
    nodes: BTreeMap<WorkerId, Node>,
    queue: BTreeSet<QueueKey>,
    demands: HashMap<JobId, (QueueKey, Demand)>,
    running: HashMap<JobId, Vec<Slot>>,
    /// Parameter-server nodes holding each job's shards (one entry per shard).
    shards: HashMap<JobId, Vec<WorkerId>>,
}

impl Scheduler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a worker, or updates its capacity (jobs it runs stay).
    pub fn add_worker(&mut self, id: WorkerId, capacity: Resources, gpu_indices: &[u32], nccl: bool) {
        self.add_node(id, capacity, gpu_indices, nccl, false);
    }

    /// Adds a parameter-server node.
    pub fn add_param_server(&mut self, id: WorkerId, capacity: Resources) {
        self.add_node(id, capacity, &[], false, true);
    }

    fn add_node(&mut self, id: WorkerId, capacity: Resources, gpu_indices: &[u32], nccl: bool, param_server: bool) {
        let node = self.nodes.entry(id).or_insert_with(|| Node {
            capacity,
            used: Resources::default(),
            free_gpus: gpu_indices.iter().copied().collect(),
            schedulable: true,
            nccl,
            param_server,
            shards: 0,
            jobs: BTreeSet::new(),
        });
        node.capacity = capacity;
        node.nccl = nccl;
        node.param_server = param_server;
    }

    /// Frees the shard slots a job held on parameter-server nodes.
    pub fn release_shards(&mut self, job: &JobId) {
        for node_id in self.shards.remove(job).unwrap_or_default() {
            if let Some(n) = self.nodes.get_mut(&node_id) {
                n.shards = n.shards.saturating_sub(1);
                n.jobs.remove(job);
            }
        }
    }

    /// Whether new jobs may go to this worker.
    pub fn set_schedulable(&mut self, id: &WorkerId, schedulable: bool) {
        if let Some(n) = self.nodes.get_mut(id) {
            n.schedulable = schedulable;
        }
    }

    /// Removes a worker and returns the jobs that had a rank on it. Those ranks' resources are
    /// gone; the jobs' other ranks keep theirs until released.
    pub fn remove_worker(&mut self, id: &WorkerId) -> Vec<JobId> {
        let Some(node) = self.nodes.remove(id) else { return Vec::new() };
        for job in &node.jobs {
            if let Some(held) = self.shards.get_mut(job) {
                held.retain(|w| w != id);
            }
            if let Some(slots) = self.running.get_mut(job) {
                slots.retain(|s| &s.worker != id);
                if slots.is_empty() {
                    self.running.remove(job);
                }
            }
        }
        node.jobs.into_iter().collect()
    }

    /// Queues a job. `seq` orders jobs of equal priority.
    pub fn enqueue(&mut self, job: JobId, priority: i64, seq: u64, demand: Demand) {
        let key = QueueKey { priority: Reverse(priority), seq, job: job.clone() };
        self.queue.insert(key.clone());
        self.demands.insert(job, (key, demand));
    }

    /// Takes a job out of the queue (cancelled before it started). True if it was queued.
    pub fn dequeue(&mut self, job: &JobId) -> bool {
        match self.demands.remove(job) {
            Some((key, _)) => self.queue.remove(&key),
            None => false,
        }
    }

    /// Records that a rank of a job runs on a worker (restored after a coordinator restart).
    pub fn restore_rank(&mut self, job: JobId, worker: &WorkerId, demand: Resources, gpus: Vec<u32>) {
        let Some(node) = self.nodes.get_mut(worker) else { return };
        let slots = self.running.entry(job.clone()).or_default();
        if slots.iter().any(|s| &s.worker == worker) {
            return;
        }
        node.used = node.used.plus(&demand);
        for g in &gpus {
            node.free_gpus.remove(g);
        }
        node.jobs.insert(job);
        slots.push(Slot { worker: worker.clone(), demand, gpus });
    }

    /// Frees what one rank of a job held on `worker`. True if it held something there.
    pub fn release_rank(&mut self, job: &JobId, worker: &WorkerId) -> bool {
        let Some(slots) = self.running.get_mut(job) else { return false };
        let Some(i) = slots.iter().position(|s| &s.worker == worker) else { return false };
        let slot = slots.remove(i);
        if slots.is_empty() {
            self.running.remove(job);
        }
        if let Some(node) = self.nodes.get_mut(&slot.worker) {
            node.used = node.used.minus(&slot.demand);
            node.free_gpus.extend(slot.gpus);
            node.jobs.remove(job);
        }
        true
    }

    /// Frees everything a job holds.
    pub fn release(&mut self, job: &JobId) {
        let workers: Vec<WorkerId> =
            self.running.get(job).map(|s| s.iter().map(|s| s.worker.clone()).collect()).unwrap_or_default();
        for w in workers {
            self.release_rank(job, &w);
        }
    }

    pub fn holds(&self, job: &JobId, worker: &WorkerId) -> bool {
        self.running.get(job).is_some_and(|s| s.iter().any(|s| &s.worker == worker))
    }

    /// Free resources of a worker.
    pub fn free(&self, worker: &WorkerId) -> Option<Resources> {
        self.nodes.get(worker).map(Node::free)
    }

    /// 1-based position of a queued job.
    pub fn queue_position(&self, job: &JobId) -> Option<usize> {
        let (key, _) = self.demands.get(job)?;
        Some(self.queue.range(..key).count() + 1)
    }

    /// Whether any job waits in the queue.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Workers that could take one more rank of `job` right now (schedulable, free enough, not
    /// already running one of its ranks).
    pub fn idle_for(&self, job: &JobId, demand: &Demand) -> usize {
        self.nodes
            .values()
            .filter(|n| n.suits(demand) && !n.jobs.contains(job) && demand.per_rank.fits_in(&n.free()))
            .count()
    }

    /// Why a queued job waits.
    pub fn wait_reason(&self, job: &JobId) -> Option<Wait> {
        let (_, demand) = self.demands.get(job)?;
        if demand.ps_shards > 0 && !self.nodes.values().any(|n| n.param_server && n.schedulable) {
            return Some(Wait::NoParamServers);
        }
        let fitting = self.nodes.values().filter(|n| n.suits(demand) && demand.per_rank.fits_in(&n.capacity)).count();
        if fitting >= demand.min_ranks.max(1) as usize {
            Some(Wait::Busy)
        } else {
            let largest = self
                .nodes
                .values()
                .filter(|n| n.suits(demand))
                .map(|n| n.capacity)
                .max_by_key(|c| (c.gpus, c.cpus, c.memory_mb));
            Some(Wait::TooLarge { fitting, largest })
        }
    }

    /// Starts every queued job that can start now, all ranks at once.
    pub fn place(&mut self) -> Vec<Placement> {
        let mut placements = Vec::new();
        let mut reserved: BTreeSet<WorkerId> = BTreeSet::new();
        let keys: Vec<QueueKey> = self.queue.iter().cloned().collect();
        for key in keys {
            let Some(&(_, demand)) = self.demands.get(&key.job) else { continue };
            let mut candidates: Vec<(&WorkerId, Resources)> = self
                .nodes
                .iter()
                .filter(|(id, n)| n.suits(&demand) && !reserved.contains(*id) && demand.per_rank.fits_in(&n.free()))
                .map(|(id, n)| (id, n.free().minus(&demand.per_rank)))
                .collect();
            candidates.sort_by_key(|(id, left)| (left.gpus, left.cpus, left.memory_mb, (*id).clone()));
            let servers: Vec<WorkerId> =
                self.nodes.iter().filter(|(_, n)| n.param_server && n.schedulable).map(|(id, _)| id.clone()).collect();
            let shards_placeable = demand.ps_shards == 0 || !servers.is_empty();
            // Elastic jobs take what is there, up to their most ranks.
            let ranks = candidates.len().min(demand.ranks as usize);
            if ranks >= demand.min_ranks.max(1) as usize && shards_placeable {
                let chosen: Vec<WorkerId> = candidates[..ranks].iter().map(|(id, _)| (*id).clone()).collect();
                let mut slots = Vec::with_capacity(ranks);
                let mut placed = Vec::with_capacity(ranks);
                for worker in chosen {
                    let node = self.nodes.get_mut(&worker).expect("chosen from the map");
                    let gpus: Vec<u32> = node.free_gpus.iter().take(demand.per_rank.gpus as usize).copied().collect();
                    for g in &gpus {
                        node.free_gpus.remove(g);
                    }
                    node.used = node.used.plus(&demand.per_rank);
                    node.jobs.insert(key.job.clone());
                    slots.push(Slot { worker: worker.clone(), demand: demand.per_rank, gpus: gpus.clone() });
                    placed.push(RankSlot { worker, gpus });
                }
                // Shards go to the parameter servers holding the fewest, one at a time.
                let mut shards = Vec::with_capacity(demand.ps_shards as usize);
                for _ in 0..demand.ps_shards {
                    let Some(id) = servers.iter().min_by_key(|id| (self.nodes[*id].shards, (*id).clone())).cloned()
                    else {
                        break;
                    };
                    let node = self.nodes.get_mut(&id).expect("listed above");
                    node.shards += 1;
                    node.jobs.insert(key.job.clone());
                    shards.push(id);
                }
                if !shards.is_empty() {
                    self.shards.insert(key.job.clone(), shards.clone());
                }
                self.queue.remove(&key);
                self.demands.remove(&key.job);
                self.running.insert(key.job.clone(), slots);
                placements.push(Placement { job: key.job, ranks: placed, shards });
            } else {
                // Reserve the emptiest workers it will fit on once jobs end, if there are enough.
                let mut targets: Vec<(&WorkerId, &Node)> = self
                    .nodes
                    .iter()
                    .filter(|(id, n)| {
                        n.suits(&demand) && !reserved.contains(*id) && demand.per_rank.fits_in(&n.capacity)
                    })
                    .collect();
                let ranks = demand.min_ranks.max(1) as usize;
                if targets.len() >= ranks {
                    targets.sort_by_key(|(id, n)| (Reverse(n.free().cpus), Reverse(n.free().memory_mb), (*id).clone()));
                    let keep: Vec<WorkerId> = targets[..ranks].iter().map(|(id, _)| (*id).clone()).collect();
                    reserved.extend(keep);
                }
            }
        }
        placements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpus: u32, memory_mb: u64, gpus: u32) -> Resources {
        Resources { cpus, memory_mb, gpus }
    }

    fn one(res: Resources) -> Demand {
        Demand::single(res)
    }

    fn gang(res: Resources, ranks: u32) -> Demand {
        Demand { per_rank: res, ranks, min_ranks: ranks, needs_nccl: false, ps_shards: 0 }
    }

    fn w(n: &str) -> WorkerId {
        WorkerId::new(n)
    }

    fn j(n: &str) -> JobId {
        JobId::new(n)
    }

    fn workers_of(p: &Placement) -> Vec<String> {
        p.ranks.iter().map(|s| s.worker.to_string()).collect()
    }

    #[test]
    fn priority_then_submission_order() {
        let mut s = Scheduler::new();
        s.enqueue(j("low"), 0, 1, one(r(1, 100, 0)));
        s.enqueue(j("high"), 5, 2, one(r(1, 100, 0)));
        s.enqueue(j("low2"), 0, 3, one(r(1, 100, 0)));
        assert_eq!(s.queue_position(&j("high")), Some(1));
        assert_eq!(s.queue_position(&j("low2")), Some(3));
        assert!(s.place().is_empty(), "no workers yet");
        s.add_worker(w("a"), r(2, 1000, 0), &[], false);
        let placed: Vec<String> = s.place().into_iter().map(|p| p.job.to_string()).collect();
        assert_eq!(placed, vec!["high", "low"]);
        assert_eq!(s.queue_position(&j("low2")), Some(1));
    }

    #[test]
    fn best_fit_and_release() {
        let mut s = Scheduler::new();
        s.add_worker(w("big"), r(8, 8000, 0), &[], false);
        s.add_worker(w("small"), r(2, 2000, 0), &[], false);
        s.enqueue(j("a"), 0, 1, one(r(2, 500, 0)));
        let p = s.place();
        assert_eq!(workers_of(&p[0]), vec!["small"], "the tighter fit wins");
        assert_eq!(s.free(&w("small")), Some(r(0, 1500, 0)));
        assert!(s.release_rank(&j("a"), &w("small")));
        assert_eq!(s.free(&w("small")), Some(r(2, 2000, 0)));
        assert!(!s.release_rank(&j("a"), &w("small")), "release is idempotent");
    }

    #[test]
    fn gpus_are_assigned_by_index() {
        let mut s = Scheduler::new();
        s.add_worker(w("g"), r(8, 8000, 2), &[0, 1], false);
        s.enqueue(j("a"), 0, 1, one(r(1, 100, 1)));
        s.enqueue(j("b"), 0, 2, one(r(1, 100, 1)));
        s.enqueue(j("c"), 0, 3, one(r(1, 100, 1)));
        let p = s.place();
        assert_eq!(p.iter().map(|p| p.ranks[0].gpus.clone()).collect::<Vec<_>>(), vec![vec![0], vec![1]]);
        assert_eq!(s.wait_reason(&j("c")), Some(Wait::Busy));
        s.release(&j("a"));
        assert_eq!(
            s.place(),
            vec![Placement { job: j("c"), ranks: vec![RankSlot { worker: w("g"), gpus: vec![0] }], shards: vec![] }]
        );
    }

    #[test]
    fn too_large_jobs_wait_with_a_reason_and_do_not_block_others() {
        let mut s = Scheduler::new();
        s.add_worker(w("a"), r(2, 1000, 0), &[], false);
        s.enqueue(j("huge"), 10, 1, one(r(16, 100, 0)));
        s.enqueue(j("small"), 0, 2, one(r(1, 100, 0)));
        assert_eq!(s.place().len(), 1);
        assert_eq!(s.wait_reason(&j("huge")), Some(Wait::TooLarge { fitting: 0, largest: Some(r(2, 1000, 0)) }));
    }

    #[test]
    fn head_of_queue_reserves_its_worker_against_backfill() {
        let mut s = Scheduler::new();
        s.add_worker(w("a"), r(4, 4000, 0), &[], false);
        s.enqueue(j("first"), 0, 1, one(r(2, 100, 0)));
        assert_eq!(s.place().len(), 1);
        s.enqueue(j("wide"), 5, 2, one(r(4, 100, 0)));
        s.enqueue(j("filler"), 0, 3, one(r(2, 100, 0)));
        assert!(s.place().is_empty(), "filler would starve wide");
        s.release(&j("first"));
        let p = s.place();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].job, j("wide"));
    }

    #[test]
    fn draining_workers_take_nothing_and_removal_returns_their_jobs() {
        let mut s = Scheduler::new();
        s.add_worker(w("a"), r(4, 4000, 0), &[], false);
        s.enqueue(j("x"), 0, 1, one(r(1, 100, 0)));
        s.place();
        s.set_schedulable(&w("a"), false);
        s.enqueue(j("y"), 0, 2, one(r(1, 100, 0)));
        assert!(s.place().is_empty());
        assert_eq!(s.remove_worker(&w("a")), vec![j("x")]);
        assert!(!s.holds(&j("x"), &w("a")));
        assert!(s.dequeue(&j("y")));
        assert!(!s.dequeue(&j("y")));
    }

    #[test]
    fn elastic_gangs_start_with_what_fits_between_min_and_max() {
        let mut s = Scheduler::new();
        for n in ["a", "b"] {
            s.add_worker(w(n), r(1, 1000, 0), &[], false);
        }
        let elastic = |min, max| Demand { min_ranks: min, ..gang(r(1, 100, 0), max) };
        s.enqueue(j("too-few"), 0, 1, elastic(3, 4));
        assert!(s.place().is_empty(), "two workers are below the minimum of three");
        assert!(matches!(s.wait_reason(&j("too-few")), Some(Wait::TooLarge { fitting: 2, .. })));
        s.dequeue(&j("too-few"));
        s.enqueue(j("e"), 0, 2, elastic(2, 4));
        let p = s.place();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].ranks.len(), 2, "starts with the two workers there are, not waiting for four");
        s.add_worker(w("c"), r(1, 1000, 0), &[], false);
        s.enqueue(j("e2"), 0, 3, elastic(1, 2));
        assert_eq!(s.place()[0].ranks.len(), 1);
    }

    #[test]
    fn gangs_start_whole_on_distinct_workers() {
        let mut s = Scheduler::new();
        for n in ["a", "b", "c"] {
            s.add_worker(w(n), r(2, 1000, 0), &[], false);
        }
        s.enqueue(j("g3"), 0, 1, gang(r(2, 100, 0), 3));
        let p = s.place();
        assert_eq!(p.len(), 1);
        let mut used = workers_of(&p[0]);
        used.sort();
        assert_eq!(used, vec!["a", "b", "c"]);
        s.enqueue(j("g2"), 0, 2, gang(r(1, 100, 0), 2));
        assert!(s.place().is_empty(), "no partial start while the cluster is full");
        s.release_rank(&j("g3"), &w("a"));
        assert!(s.place().is_empty(), "one free worker is not enough for two ranks");
        s.release_rank(&j("g3"), &w("b"));
        assert_eq!(s.place().len(), 1);
    }

    #[test]
    fn two_big_gangs_run_one_after_the_other_without_deadlock() {
        let mut s = Scheduler::new();
        for n in ["a", "b", "c"] {
            s.add_worker(w(n), r(1, 1000, 0), &[], false);
        }
        s.enqueue(j("first"), 0, 1, gang(r(1, 100, 0), 2));
        s.enqueue(j("second"), 0, 2, gang(r(1, 100, 0), 2));
        let p = s.place();
        assert_eq!(p.iter().map(|p| p.job.to_string()).collect::<Vec<_>>(), vec!["first"], "second waits whole");
        assert_eq!(s.wait_reason(&j("second")), Some(Wait::Busy));
        s.release(&j("first"));
        assert_eq!(s.place()[0].job, j("second"));
    }

    #[test]
    fn parameter_server_jobs_spread_shards_and_never_run_ranks_on_servers() {
        let mut s = Scheduler::new();
        s.add_worker(w("a"), r(2, 1000, 0), &[], false);
        s.add_worker(w("b"), r(2, 1000, 0), &[], false);
        s.enqueue(
            j("ps"),
            0,
            1,
            Demand { per_rank: r(1, 100, 0), ranks: 2, min_ranks: 2, needs_nccl: false, ps_shards: 3 },
        );
        assert!(s.place().is_empty(), "no parameter servers yet");
        assert_eq!(s.wait_reason(&j("ps")), Some(Wait::NoParamServers));
        s.add_param_server(w("p1"), r(8, 8000, 0));
        s.add_param_server(w("p2"), r(8, 8000, 0));
        let p = s.place();
        assert_eq!(p.len(), 1);
        let mut ranks = workers_of(&p[0]);
        ranks.sort();
        assert_eq!(ranks, vec!["a", "b"], "ranks only on workers");
        let mut shards: Vec<String> = p[0].shards.iter().map(ToString::to_string).collect();
        shards.sort();
        assert_eq!(shards, vec!["p1", "p1", "p2"], "shards spread over the servers");
        s.release(&j("ps"));
        s.release_shards(&j("ps"));
        s.enqueue(
            j("next"),
            0,
            2,
            Demand { per_rank: r(1, 100, 0), ranks: 1, min_ranks: 1, needs_nccl: false, ps_shards: 1 },
        );
        assert_eq!(s.place()[0].shards.len(), 1);
    }

    #[test]
    fn nccl_jobs_need_nccl_workers_and_gangs_larger_than_the_cluster_say_so() {
        let mut s = Scheduler::new();
        s.add_worker(w("cpu"), r(4, 4000, 1), &[0], false);
        s.add_worker(w("gpu"), r(4, 4000, 1), &[0], true);
        s.enqueue(
            j("n"),
            0,
            1,
            Demand { per_rank: r(1, 100, 1), ranks: 2, min_ranks: 2, needs_nccl: true, ps_shards: 0 },
        );
        assert!(s.place().is_empty());
        assert_eq!(s.wait_reason(&j("n")), Some(Wait::TooLarge { fitting: 1, largest: Some(r(4, 4000, 1)) }));
        s.add_worker(w("gpu2"), r(4, 4000, 1), &[0], true);
        let mut used = workers_of(&s.place()[0]);
        used.sort();
        assert_eq!(used, vec!["gpu", "gpu2"]);
    }
}
