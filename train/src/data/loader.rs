//! Batching. A loader thread walks the epochs' sample orders and assembles batches (gathered rows
//! turned into tensors on the model's backend) a few steps ahead of training, so the step loop
//! never waits for data in steady state. With more than one loader thread, `threads` gatherers
//! each prepare every `threads`-th step's rows and the loader thread takes them in step order
//! and hands them to the backend: the batches, and their order, are the same whatever the thread
//! count, and only one thread ever uploads to the device.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::Dataset;
use crate::backend::{self, Backend, Tensor};
use crate::error::{Result, TrainError};
use crate::nn::loss::Targets;
use crate::rng::Rng;

/// Steps in one pass over `rows` samples (the last batch may be short).
pub fn steps_per_epoch(rows: usize, batch: usize) -> u64 {
    rows.div_ceil(batch.max(1)).max(1) as u64
}

/// Which batches to produce.
#[derive(Clone, Copy, Debug)]
pub struct BatchPlan {
    pub batch: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// First global step to produce (non-zero when resuming).
    pub start_step: u64,
    /// Steps to produce in total, counted from step 0.
    pub total_steps: u64,
    /// Batches prepared ahead.
    pub depth: usize,
    /// Threads gathering rows (1: the loader thread does it itself).
    pub threads: usize,
    /// This loader's shard: rank and number of ranks (0 and 1 for the whole dataset).
    pub rank: usize,
    pub world: usize,
}

impl BatchPlan {
    /// Samples in this rank's shard of one epoch.
    pub fn shard_len(&self, rows: usize) -> usize {
        rows.div_ceil(self.world.max(1))
    }
}

/// One batch.
pub struct Batch {
    pub x: Tensor,
    pub targets: Targets,
    /// Global step (0-based) and epoch (0-based) the batch belongs to.
    pub step: u64,
    pub epoch: u64,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.targets.rows()
    }
}

/// The order in which epoch `epoch` visits the samples.
pub fn epoch_order(rows: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows).collect();
    if shuffle {
        Rng::derive(seed, "epoch", epoch).shuffle(&mut order);
    }
    order
}

/// This rank's shard of an epoch's order, as PyTorch's `DistributedSampler` cuts it: the order is
/// padded by wrapping around to a multiple of `world`, and rank r takes positions r, r + world, ...
pub fn shard_order(rows: usize, shuffle: bool, seed: u64, epoch: u64, rank: usize, world: usize) -> Vec<usize> {
    let order = epoch_order(rows, shuffle, seed, epoch);
    if world <= 1 || rows == 0 {
        return order;
    }
    let per = rows.div_ceil(world);
    (0..per).map(|i| order[(rank + i * world) % rows]).collect()
}

/// Handle on the loader thread; dropping it stops the thread.
pub struct Loader {
    rx: Receiver<Result<Batch>>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    /// A loader whose batches are on the CPU backend.
    pub fn spawn(data: Arc<Dataset>, plan: BatchPlan) -> Result<Self> {
        Self::spawn_on(data, plan, backend::cpu())
    }

    /// A loader whose batches are made by `backend` (on the loader thread, so uploads overlap
    /// the step loop).
    pub fn spawn_on(data: Arc<Dataset>, plan: BatchPlan, backend: Arc<dyn Backend>) -> Result<Self> {
        let (tx, rx) = sync_channel(plan.depth.max(1));
        let thread = std::thread::Builder::new()
            .name("shoal-loader".into())
            .spawn(move || produce(&data, plan, backend.as_ref(), &tx))
            .map_err(|source| TrainError::LoaderSpawn { source })?;
        Ok(Self { rx, thread: Some(thread) })
    }

    /// The next batch, blocking until it is ready.
    pub fn next(&self) -> Result<Batch> {
        self.rx.recv().map_err(|_| TrainError::LoaderStopped)?
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock the producer (its send fails once the receiver is gone), then join it.
        let (_, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One step's rows, gathered on the host.
struct Gathered {
    x: Vec<f32>,
    rows: usize,
    targets: Targets,
    step: u64,
    epoch: u64,
}

/// Gathers the rows of `start, start + every, start + every·2, ...` below `plan.total_steps`,
/// handing each to `deliver` until it says stop.
fn gather_steps(data: &Dataset, plan: &BatchPlan, start: u64, every: u64, mut deliver: impl FnMut(Gathered) -> bool) {
    let shard = plan.shard_len(data.rows);
    let per_epoch = steps_per_epoch(shard, plan.batch);
    let order_of = |epoch| shard_order(data.rows, plan.shuffle, plan.seed, epoch, plan.rank, plan.world);
    let mut epoch = start / per_epoch;
    let mut order = order_of(epoch);
    let mut step = start;
    while step < plan.total_steps {
        let e = step / per_epoch;
        if e != epoch {
            epoch = e;
            order = order_of(epoch);
        }
        let i = (step % per_epoch) as usize * plan.batch;
        let rows = &order[i..(i + plan.batch).min(shard)];
        let (x, targets) = data.gather(rows);
        if !deliver(Gathered { x, rows: rows.len(), targets, step, epoch }) {
            return;
        }
        step += every;
    }
}

fn produce(data: &Arc<Dataset>, plan: BatchPlan, backend: &dyn Backend, tx: &SyncSender<Result<Batch>>) {
    let features = data.features;
    let upload = |g: Gathered| {
        let batch = backend
            .batch_from_host(g.x, &[g.rows, features])
            .map(|x| Batch { x, targets: g.targets, step: g.step, epoch: g.epoch })
            .map_err(TrainError::from);
        tx.send(batch).is_ok()
    };
    let threads = plan.threads.max(1);
    if threads == 1 {
        return gather_steps(data, &plan, plan.start_step, 1, upload);
    }
    // Each gatherer keeps a share of the prefetch depth ready; they stop when their receiver goes.
    let per_thread = plan.depth.div_ceil(threads).max(1);
    let mut queues = Vec::with_capacity(threads);
    let mut gatherers = Vec::with_capacity(threads);
    for k in 0..threads {
        let (gtx, grx) = sync_channel::<Gathered>(per_thread);
        let data = data.clone();
        let spawned = std::thread::Builder::new().name(format!("shoal-gather-{k}")).spawn(move || {
            gather_steps(&data, &plan, plan.start_step + k as u64, threads as u64, |g| gtx.send(g).is_ok())
        });
        match spawned {
            Ok(handle) => gatherers.push(handle),
            Err(source) => {
                let _ = tx.send(Err(TrainError::LoaderSpawn { source }));
                return;
            }
        }
        queues.push(grx);
    }
    for (i, _) in (plan.start_step..plan.total_steps).enumerate() {
        let Ok(g) = queues[i % threads].recv() else { break };
        if !upload(g) {
            break;
        }
    }
    drop(queues);
    for g in gatherers {
        let _ = g.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    /// Batches of `batch` rows for `total_steps` steps over the whole data set, in order.
    fn plan(batch: usize, total_steps: u64) -> BatchPlan {
        BatchPlan {
            batch,
            shuffle: false,
            seed: 0,
            start_step: 0,
            total_steps,
            depth: 2,
            threads: 1,
            rank: 0,
            world: 1,
        }
    }

    #[test]
    fn batches_cover_each_epoch_once_and_resume_identically() {
        let data = Arc::new(synthetic::classification(10, 2, 2, 0.0, 1));
        let plan =
            BatchPlan { shuffle: true, seed: 3, start_step: 0, depth: 2, threads: 1, rank: 0, world: 1, ..plan(4, 6) };
        let loader = Loader::spawn(data.clone(), plan).expect("spawn");
        let batches: Vec<Batch> = (0..6).map(|_| loader.next().expect("batch")).collect();
        assert_eq!(batches.iter().map(Batch::rows).collect::<Vec<_>>(), vec![4, 4, 2, 4, 4, 2]);
        assert_eq!(batches.iter().map(|b| b.epoch).collect::<Vec<_>>(), vec![0, 0, 0, 1, 1, 1]);
        assert!(loader.next().is_err(), "no batch after the last step");

        let resumed = Loader::spawn(data, BatchPlan { start_step: 4, ..plan }).expect("spawn");
        let b = resumed.next().expect("batch");
        assert_eq!(b.step, 4);
        assert_eq!(b.targets, batches[4].targets);
        assert_eq!(b.x.to_host_vec().expect("x"), batches[4].x.to_host_vec().expect("x"));
    }

    #[test]
    fn shards_are_disjoint_padded_and_cover_the_epoch() {
        for (rows, world) in [(10, 3), (12, 4), (2, 3)] {
            let shards: Vec<Vec<usize>> = (0..world).map(|r| shard_order(rows, true, 7, 2, r, world)).collect();
            let per = rows.div_ceil(world);
            assert!(shards.iter().all(|s| s.len() == per));
            let mut all: Vec<usize> = shards.concat();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all, (0..rows).collect::<Vec<_>>(), "every sample in some shard");
            if rows % world == 0 {
                assert_eq!(shards.concat().len(), rows, "no padding when it divides");
            }
        }
        // Union of the ranks' step-s batches equals the single worker's step-s batch of world×B.
        let order = epoch_order(12, true, 7, 0);
        let (r0, r1) = (shard_order(12, true, 7, 0, 0, 2), shard_order(12, true, 7, 0, 1, 2));
        let mut union: Vec<usize> = r0[..3].iter().chain(&r1[..3]).copied().collect();
        let mut single = order[..6].to_vec();
        union.sort_unstable();
        single.sort_unstable();
        assert_eq!(union, single);
    }

    #[test]
    fn dropping_a_loader_mid_stream_does_not_hang() {
        let data = Arc::new(synthetic::classification(100, 2, 2, 0.0, 1));
        let loader = Loader::spawn(
            data,
            BatchPlan {
                shuffle: false,
                seed: 0,
                start_step: 0,
                depth: 2,
                threads: 3,
                rank: 0,
                world: 1,
                ..plan(1, 1000)
            },
        )
        .expect("spawn");
        loader.next().expect("one batch");
        drop(loader);
    }

    #[test]
    fn batches_and_their_order_do_not_depend_on_the_thread_count() {
        let data = Arc::new(synthetic::classification(50, 3, 2, 0.0, 1));
        let plan =
            BatchPlan { shuffle: true, seed: 5, start_step: 3, depth: 4, threads: 1, rank: 1, world: 2, ..plan(7, 40) };
        let all = |threads: usize| -> Vec<(u64, Vec<f32>, Targets)> {
            let loader = Loader::spawn(data.clone(), BatchPlan { threads, ..plan }).expect("spawn");
            let batches = (3..40)
                .map(|_| {
                    let b = loader.next().expect("batch");
                    (b.step, b.x.to_host_vec().expect("x"), b.targets)
                })
                .collect();
            assert!(loader.next().is_err(), "no batch after the last step");
            batches
        };
        let one = all(1);
        assert_eq!(one.iter().map(|b| b.0).collect::<Vec<_>>(), (3..40).collect::<Vec<_>>());
        for threads in [2, 3, 8] {
            assert_eq!(all(threads), one, "{threads} threads");
        }
    }
}
