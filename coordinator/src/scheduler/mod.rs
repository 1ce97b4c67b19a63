//! Placement as a pure state machine: workers with capacity, a priority queue of jobs with
//! demands; `place` decides which queued jobs start where. No clocks, sockets or database, so
//! every decision is unit-tested directly.
//!
//! Policy: highest priority first, then submission order. A job goes to the worker it fits best
//! (least CPU left over, then least memory, then worker id). When the head of the queue fits no
//! worker right now but would fit one once that worker's jobs end, that worker is reserved for it,
//! so smaller jobs behind it cannot starve it; they may still use other workers (backfill).

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
        write!(
            f,
            "{} CPU{}, {} MiB",
            self.cpus,
            if self.cpus == 1 { "" } else { "s" },
            self.memory_mb
        )?;
        if self.gpus > 0 {
            write!(
                f,
                ", {} GPU{}",
                self.gpus,
                if self.gpus == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

struct Node {
    capacity: Resources,
    used: Resources,
    /// GPU indices not reserved by a job.
    free_gpus: BTreeSet<u32>,
    /// False while the worker drains or is disconnected.
    schedulable: bool,
    jobs: BTreeSet<JobId>,
}

impl Node {
    fn free(&self) -> Resources {
        self.capacity.minus(&self.used)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct QueueKey {
    priority: Reverse<i64>,
    seq: u64,
    job: JobId,
}

struct Running {
    worker: WorkerId,
    demand: Resources,
    gpus: Vec<u32>,
}

/// A decision: start `job` on `worker`, with these GPU indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub job: JobId,
    pub worker: WorkerId,
    pub gpus: Vec<u32>,
}

/// Why a queued job is still waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A worker could take it once some of its jobs end.
    Busy,
    /// No schedulable worker is large enough.
    TooLarge { largest: Option<Resources> },
}

#[derive(Default)]
pub struct Scheduler {
    nodes: BTreeMap<WorkerId, Node>,
    queue: BTreeSet<QueueKey>,
    demands: HashMap<JobId, (QueueKey, Resources)>,
    running: HashMap<JobId, Running>,
}

impl Scheduler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a worker, or updates its capacity (jobs it runs stay).
    pub fn add_worker(&mut self, id: WorkerId, capacity: Resources, gpu_indices: &[u32]) {
        let node = self.nodes.entry(id).or_insert_with(|| Node {
            capacity,
            used: Resources::default(),
            free_gpus: gpu_indices.iter().copied().collect(),
            schedulable: true,
            jobs: BTreeSet::new(),
        });
        node.capacity = capacity;
    }

    /// Whether new jobs may go to this worker.
    pub fn set_schedulable(&mut self, id: &WorkerId, schedulable: bool) {
        if let Some(n) = self.nodes.get_mut(id) {
            n.schedulable = schedulable;
        }
    }

    /// Removes a worker and returns the jobs that were running on it (their resources are gone).
    pub fn remove_worker(&mut self, id: &WorkerId) -> Vec<JobId> {
        let Some(node) = self.nodes.remove(id) else {
            return Vec::new();
        };
        for job in &node.jobs {
            self.running.remove(job);
        }
        node.jobs.into_iter().collect()
    }

    /// Queues a job. `seq` orders jobs of equal priority.
    pub fn enqueue(&mut self, job: JobId, priority: i64, seq: u64, demand: Resources) {
        let key = QueueKey {
            priority: Reverse(priority),
            seq,
            job: job.clone(),
        };
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

    /// Records that a job runs on a worker (restored from the database after a restart).
    pub fn restore_running(
        &mut self,
        job: JobId,
        worker: &WorkerId,
        demand: Resources,
        gpus: Vec<u32>,
    ) {
        if let Some(node) = self.nodes.get_mut(worker) {
            node.used = node.used.plus(&demand);
            for g in &gpus {
                node.free_gpus.remove(g);
            }
            node.jobs.insert(job.clone());
            self.running.insert(
                job,
                Running {
                    worker: worker.clone(),
                    demand,
                    gpus,
                },
            );
        }
    }

    /// Frees what a running job held. Returns the worker it ran on.
    pub fn release(&mut self, job: &JobId) -> Option<WorkerId> {
        let run = self.running.remove(job)?;
        if let Some(node) = self.nodes.get_mut(&run.worker) {
            node.used = node.used.minus(&run.demand);
            node.free_gpus.extend(run.gpus);
            node.jobs.remove(job);
        }
        Some(run.worker)
    }

    pub fn is_running(&self, job: &JobId) -> bool {
        self.running.contains_key(job)
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

    /// Why a queued job waits.
    pub fn wait_reason(&self, job: &JobId) -> Option<Wait> {
        let (_, demand) = self.demands.get(job)?;
        let fits_somewhere = self
            .nodes
            .values()
            .any(|n| n.schedulable && demand.fits_in(&n.capacity));
        if fits_somewhere {
            Some(Wait::Busy)
        } else {
            let largest = self
                .nodes
                .values()
                .filter(|n| n.schedulable)
                .map(|n| n.capacity)
                .max_by_key(|c| (c.gpus, c.cpus, c.memory_mb));
            Some(Wait::TooLarge { largest })
        }
    }

    /// Starts every queued job that can start now.
    pub fn place(&mut self) -> Vec<Placement> {
        let mut placements = Vec::new();
        let mut reserved: BTreeSet<WorkerId> = BTreeSet::new();
        let keys: Vec<QueueKey> = self.queue.iter().cloned().collect();
        for key in keys {
            let Some(&(_, demand)) = self.demands.get(&key.job) else {
                continue;
            };
            let best = self
                .nodes
                .iter()
                .filter(|(id, n)| {
                    n.schedulable && !reserved.contains(*id) && demand.fits_in(&n.free())
                })
                .min_by_key(|(id, n)| {
                    let left = n.free().minus(&demand);
                    (left.gpus, left.cpus, left.memory_mb, (*id).clone())
                })
                .map(|(id, _)| id.clone());
            match best {
                Some(worker) => {
                    let node = self.nodes.get_mut(&worker).expect("chosen from the map");
                    let gpus: Vec<u32> = node
                        .free_gpus
                        .iter()
                        .take(demand.gpus as usize)
                        .copied()
                        .collect();
                    for g in &gpus {
                        node.free_gpus.remove(g);
                    }
                    node.used = node.used.plus(&demand);
                    node.jobs.insert(key.job.clone());
                    self.queue.remove(&key);
                    self.demands.remove(&key.job);
                    self.running.insert(
                        key.job.clone(),
                        Running {
                            worker: worker.clone(),
                            demand,
                            gpus: gpus.clone(),
                        },
                    );
                    placements.push(Placement {
                        job: key.job,
                        worker,
                        gpus,
                    });
                }
                None => {
                    // Reserve the emptiest worker it will fit on once jobs end, if any.
                    let target = self
                        .nodes
                        .iter()
                        .filter(|(id, n)| {
                            n.schedulable && !reserved.contains(*id) && demand.fits_in(&n.capacity)
                        })
                        .max_by_key(|(id, n)| {
                            (n.free().cpus, n.free().memory_mb, Reverse((*id).clone()))
                        })
                        .map(|(id, _)| id.clone());
                    if let Some(t) = target {
                        reserved.insert(t);
                    }
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
        Resources {
            cpus,
            memory_mb,
            gpus,
        }
    }

    fn w(n: &str) -> WorkerId {
        WorkerId::new(n)
    }

    fn j(n: &str) -> JobId {
        JobId::new(n)
    }

    #[test]
    fn priority_then_submission_order() {
        let mut s = Scheduler::new();
        s.enqueue(j("low"), 0, 1, r(1, 100, 0));
        s.enqueue(j("high"), 5, 2, r(1, 100, 0));
        s.enqueue(j("low2"), 0, 3, r(1, 100, 0));
        assert_eq!(s.queue_position(&j("high")), Some(1));
        assert_eq!(s.queue_position(&j("low2")), Some(3));
        assert!(s.place().is_empty(), "no workers yet");
        s.add_worker(w("a"), r(2, 1000, 0), &[]);
        let placed: Vec<String> = s.place().into_iter().map(|p| p.job.to_string()).collect();
        assert_eq!(placed, vec!["high", "low"]);
        assert_eq!(s.queue_position(&j("low2")), Some(1));
    }

    #[test]
    fn best_fit_and_release() {
        let mut s = Scheduler::new();
        s.add_worker(w("big"), r(8, 8000, 0), &[]);
        s.add_worker(w("small"), r(2, 2000, 0), &[]);
        s.enqueue(j("a"), 0, 1, r(2, 500, 0));
        let p = s.place();
        assert_eq!(p[0].worker, w("small"), "the tighter fit wins");
        assert_eq!(s.free(&w("small")), Some(r(0, 1500, 0)));
        assert_eq!(s.release(&j("a")), Some(w("small")));
        assert_eq!(s.free(&w("small")), Some(r(2, 2000, 0)));
        assert_eq!(s.release(&j("a")), None, "release is idempotent");
    }

    #[test]
    fn gpus_are_assigned_by_index() {
        let mut s = Scheduler::new();
        s.add_worker(w("g"), r(8, 8000, 2), &[0, 1]);
        s.enqueue(j("a"), 0, 1, r(1, 100, 1));
        s.enqueue(j("b"), 0, 2, r(1, 100, 1));
        s.enqueue(j("c"), 0, 3, r(1, 100, 1));
        let p = s.place();
        assert_eq!(
            p.iter().map(|p| p.gpus.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1]]
        );
        assert_eq!(s.wait_reason(&j("c")), Some(Wait::Busy));
        s.release(&j("a"));
        assert_eq!(
            s.place(),
            vec![Placement {
                job: j("c"),
                worker: w("g"),
                gpus: vec![0]
            }]
        );
    }

    #[test]
    fn too_large_jobs_wait_with_a_reason_and_do_not_block_others() {
        let mut s = Scheduler::new();
        s.add_worker(w("a"), r(2, 1000, 0), &[]);
        s.enqueue(j("huge"), 10, 1, r(16, 100, 0));
        s.enqueue(j("small"), 0, 2, r(1, 100, 0));
        assert_eq!(s.place().len(), 1);
        assert_eq!(
            s.wait_reason(&j("huge")),
            Some(Wait::TooLarge {
                largest: Some(r(2, 1000, 0))
            })
        );
    }

    #[test]
    fn head_of_queue_reserves_its_worker_against_backfill() {
        let mut s = Scheduler::new();
        s.add_worker(w("a"), r(4, 4000, 0), &[]);
        s.enqueue(j("first"), 0, 1, r(2, 100, 0));
        assert_eq!(s.place().len(), 1);
        s.enqueue(j("wide"), 5, 2, r(4, 100, 0));
        s.enqueue(j("filler"), 0, 3, r(2, 100, 0));
        assert!(s.place().is_empty(), "filler would starve wide");
        s.release(&j("first"));
        let p = s.place();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].job, j("wide"));
    }

    #[test]
    fn draining_workers_take_nothing_and_removal_returns_their_jobs() {
        let mut s = Scheduler::new();
        s.add_worker(w("a"), r(4, 4000, 0), &[]);
        s.enqueue(j("x"), 0, 1, r(1, 100, 0));
        s.place();
        s.set_schedulable(&w("a"), false);
        s.enqueue(j("y"), 0, 2, r(1, 100, 0));
        assert!(s.place().is_empty());
        assert_eq!(s.remove_worker(&w("a")), vec![j("x")]);
        assert!(!s.is_running(&j("x")));
        assert!(s.dequeue(&j("y")));
        assert!(!s.dequeue(&j("y")));
    }
}
