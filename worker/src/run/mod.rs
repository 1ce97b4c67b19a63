//! Running one assigned job: a dedicated thread validates the spec, loads the data, trains with
//! candle (the loader prefetches on its own thread) and streams reports to the session task.

mod command;
mod device;
mod error;
mod evaluate;
mod group;
mod input_bound;
mod report;
mod window;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;

use shoal_common::proto::{Assignment, JobFinished, JobStarted, Outcome, WorkerMessage, worker_message};
use shoal_common::{JobId, WorkerId, spec};
use shoal_train::{RunOptions, Stop, data, train};
use tokio::sync::mpsc::UnboundedSender;

use crate::sync::DataPlane;

pub use error::{Link, RunError};
use report::ReportHost;
pub use report::result_of;

const RUN: u8 = 0;
const CANCEL: u8 = 1;
const DRAIN: u8 = 2;

/// Where and how jobs run on this worker.
#[derive(Clone)]
pub struct JobContext {
    pub worker_id: WorkerId,
    pub checkpoint_root: PathBuf,
    /// Folders user-supplied paths must lie in (empty = anywhere); see `WorkerConfig::data_roots`.
    pub data_roots: Vec<PathBuf>,
    pub keep_checkpoints: usize,
    /// Matmul threads are capped at the cores this worker offers.
    pub max_threads: usize,
    /// Links to the other ranks of data-parallel jobs.
    pub plane: DataPlane,
    /// How to reach parameter servers.
    pub ps_access: crate::sync::PsAccess,
    /// Samples the GPUs reserved for a job into its progress points (`None` without GPUs).
    pub gpu_monitor: Option<crate::devices::GpuMonitor>,
}

/// Values other ranks published through the coordinator (the NCCL unique id).
pub type RendezvousRx = std::sync::mpsc::Receiver<(String, Vec<u8>)>;

/// A job running on its own thread.
pub struct JobHandle {
    pub job_id: JobId,
    pub attempt: u32,
    stop: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
    rendezvous: std::sync::mpsc::Sender<(String, Vec<u8>)>,
}

impl JobHandle {
    /// Stop between steps; the job ends cancelled.
    pub fn cancel(&self) {
        self.stop.store(CANCEL, Ordering::SeqCst);
    }

    /// Finish the step, checkpoint and stop; the job ends interrupted, to resume elsewhere.
    pub fn drain(&self) {
        let _ = self.stop.compare_exchange(RUN, DRAIN, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Hands a value published by another rank to the job.
    pub fn rendezvous(&self, key: String, value: Vec<u8>) {
        let _ = self.rendezvous.send((key, value));
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for JobHandle {
    /// A dropped handle stops its job between steps. The thread is not joined: it ends on its own
    /// (or with the process) and never blocks the session task.
    fn drop(&mut self) {
        self.cancel();
    }
}

fn stop_of(flag: &AtomicU8) -> Option<Stop> {
    match flag.load(Ordering::SeqCst) {
        CANCEL => Some(Stop::Cancel),
        DRAIN => Some(Stop::Drain),
        _ => None,
    }
}

/// Starts an assigned job on a new thread. Its reports and final outcome go to `updates`.
pub fn start(
    assignment: Assignment,
    ctx: JobContext,
    updates: UnboundedSender<WorkerMessage>,
) -> std::io::Result<JobHandle> {
    let job_id = JobId::new(assignment.job_id.clone());
    let attempt = assignment.attempt;
    let stop = Arc::new(AtomicU8::new(RUN));
    let flag = stop.clone();
    let (rendezvous, rendezvous_rx) = std::sync::mpsc::channel();
    // Links of this attempt must prove they know its key; forgotten when the thread ends.
    let link_key = ctx.plane.admit(&assignment.job_id, attempt, &assignment.link_key);
    let thread = std::thread::Builder::new().name(format!("job-{}", job_id)).spawn(move || {
        let _link_key = link_key;
        // No `step` field: a span field recorded again at every report is appended each time.
        let span = tracing::info_span!(
            "rank",
            job_id = %assignment.job_id,
            worker_id = %ctx.worker_id,
            attempt,
            rank = assignment.rank,
            world = assignment.world_size
        );
        // Under the coordinator's span for the job, when both export spans.
        shoal_common::telemetry::adopt_parent(&span, &assignment.trace_parent);
        let _entered = span.enter();
        let _ = updates.send(WorkerMessage {
            kind: Some(worker_message::Kind::Started(JobStarted { job_id: assignment.job_id.clone(), attempt })),
            seq: 0,
        });
        let job = assignment.job_id.clone();
        let finished =
            std::panic::catch_unwind(AssertUnwindSafe(|| run(assignment, &ctx, &flag, &updates, &rendezvous_rx)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failed(attempt, &RunError::Panicked { job: JobId::new(job), what })
                });
        match Outcome::try_from(finished.outcome) {
            Ok(Outcome::Failed) => tracing::warn!(error = %finished.error, "job failed"),
            Ok(o) => tracing::info!(outcome = o.as_str_name(), step = finished.step, "job finished"),
            Err(_) => {}
        }
        let _ = updates.send(WorkerMessage { kind: Some(worker_message::Kind::Finished(finished)), seq: 0 });
    })?;
    Ok(JobHandle { job_id, attempt, stop, thread: Some(thread), rendezvous })
}

/// The message that ends a run that failed outside training.
fn failed(attempt: u32, error: &RunError) -> JobFinished {
    JobFinished {
        job_id: error.job().to_string(),
        attempt,
        outcome: Outcome::Failed as i32,
        error: error.to_string(),
        retryable: error.retryable(),
        ..Default::default()
    }
}

/// The learning-rate rule of elastic jobs: `optimizer.lr` is the rate for the most ranks
/// (`parallelism.data`); with fewer, the global batch shrinks in proportion and so does the rate
/// (linear scaling: lr x ranks / max ranks). Returns the notice to show, if the rate changed.
pub fn elastic_lr(cfg: &mut spec::TrainConfig, world: usize) -> Option<String> {
    let max = cfg.parallel.data;
    if cfg.parallel.min_data == max || world >= max {
        return None;
    }
    let lr = cfg.optimizer.lr * world as f64 / max as f64;
    let note = format!(
        "elastic: running on {world} of up to {max} ranks; learning rate {} x {world}/{max} = {lr:.6} (linear scaling)",
        cfg.optimizer.lr
    );
    cfg.optimizer.lr = lr;
    Some(note)
}

fn run(
    assignment: Assignment,
    ctx: &JobContext,
    stop: &AtomicU8,
    updates: &UnboundedSender<WorkerMessage>,
    rendezvous: &RendezvousRx,
) -> JobFinished {
    let (job_id, attempt) = (assignment.job_id.clone(), assignment.attempt);
    let job = || JobId::new(job_id.clone());
    let Some(job_spec) = assignment.spec.clone() else {
        return failed(attempt, &RunError::NoSpec { job: job() });
    };
    let mut cfg = match spec::validate(&job_spec) {
        Ok(c) => c,
        Err(errors) => return failed(attempt, &RunError::InvalidSpec { job: job(), errors }),
    };
    if let Err(e) = confine_paths(&cfg, ctx, job()) {
        return failed(attempt, &e);
    }
    if cfg.command.is_some() {
        let mut host = ReportHost::new(job_id.clone(), attempt, 0, updates.clone(), stop);
        let dir = ctx.checkpoint_root.join(&job_id);
        return command::run(&cfg, &job_id, attempt, &dir, &mut host);
    }
    let rank = assignment.rank as usize;
    if cfg.evaluate.is_some() {
        let mut joined = match group::join(&assignment, &cfg, ctx, updates, rendezvous) {
            Ok(c) => c,
            Err(e) => return failed(attempt, &e),
        };
        let mut host = ReportHost::new(job_id.clone(), attempt, rank, updates.clone(), stop);
        let world = assignment.world_size.max(1) as usize;
        let dir = ctx.checkpoint_root.join(&job_id);
        return evaluate::run(&cfg, &job_id, attempt, (rank, world), &dir, &mut joined, &mut host);
    }
    let stages = cfg.parallel.pipeline.stages;
    let resume_from = (!assignment.resume_from.is_empty())
        .then(|| stage_checkpoint(PathBuf::from(&assignment.resume_from), rank % stages, stages));
    // A run that continues from a checkpoint (resumed, or inheriting a parent's weights) applies
    // the feature transforms saved there, as its weights were trained on them; a student applies
    // its teacher's, which reads the student's batches (even where the student trains on a
    // share of the rows the teacher's transforms were not fitted on).
    let continues = resume_from
        .as_deref()
        .or(cfg.inherit.as_ref().map(|i| i.checkpoint.as_path()))
        .or(cfg.distill.as_ref().map(|d| d.teacher.as_path()))
        .filter(|p| !p.as_os_str().is_empty());
    tracing::info!(dataset = ?cfg.dataset.source, "loading dataset");
    let splits = match data::load_continuing(&cfg.dataset, continues) {
        Ok(s) => s,
        Err(e) => return failed(attempt, &RunError::Dataset { job: job(), source: Box::new(e) }),
    };
    tracing::info!(
        train = splits.train.rows,
        validation = splits.validation.as_ref().map_or(0, |v| v.rows),
        features = splits.train.features,
        "dataset loaded"
    );
    // Before joining, so a rank that cannot train where it was placed fails before its peers wait.
    let backend = match device::backend_for(&job(), &assignment.gpus, cfg.training.precision) {
        Ok(b) => b,
        Err(e) => return failed(attempt, &e),
    };
    let mut joined = match group::join(&assignment, &cfg, ctx, updates, rendezvous) {
        Ok(c) => c,
        Err(e) => return failed(attempt, &e),
    };
    let opts = RunOptions {
        // Data-parallel ranks hold identical parameters, so rank 0 writes the checkpoints; each
        // stage of the first pipeline replica writes its own part.
        checkpoint_dir: (rank < stages).then(|| match stages {
            1 => ctx.checkpoint_root.join(&job_id),
            _ => ctx.checkpoint_root.join(&job_id).join(format!("stage-{rank}")),
        }),
        resume_from,
        threads: (cfg.resources.cpus as usize).clamp(1, ctx.max_threads.max(1)),
        spec_toml: spec::to_toml(&job_spec),
        keep_checkpoints: ctx.keep_checkpoints,
        warmup_steps: 0,
        backend,
    };
    let mut host = ReportHost::new(job_id.clone(), attempt, rank, updates.clone(), stop);
    host.watch_input(cfg.dataset.loader_threads);
    if let Some(monitor) = &ctx.gpu_monitor {
        host.sample_gpus(monitor.clone(), assignment.gpus.clone());
    }
    if let Some(note) = elastic_lr(&mut cfg, assignment.world_size.max(1) as usize)
        && rank == 0
    {
        host.info(note);
    }
    let outcome = train(&cfg, splits, &opts, &mut host, joined.peers());
    // Every stage of a pipeline sees all of its replica's samples.
    let replicas = (assignment.world_size.max(1) as usize / stages).max(1);
    report::finished(&job_id, attempt, replicas, outcome)
}

/// Checks every path the spec asks this worker to read against its allowed folders.
fn confine_paths(cfg: &spec::TrainConfig, ctx: &JobContext, job: JobId) -> Result<(), RunError> {
    if ctx.data_roots.is_empty() {
        return Ok(());
    }
    let mut roots = ctx.data_roots.clone();
    roots.push(ctx.checkpoint_root.clone());
    let mut paths = cfg.dataset.files();
    if let Some(i) = &cfg.inherit {
        paths.push(("inherit.checkpoint", &i.checkpoint));
    }
    if let Some(d) = &cfg.distill {
        paths.push(("distill.teacher", &d.teacher));
    }
    if let Some(dir) = cfg.command.as_ref().and_then(|c| c.workdir.as_ref()) {
        paths.push(("command.workdir", dir));
    }
    if let Some(e) = &cfg.evaluate {
        paths.push(("evaluate.artifact", &e.artifact));
        paths.push(("evaluate.data", &e.data));
        paths.extend(e.output.as_ref().map(|p| ("evaluate.output", p)));
        paths.extend(e.html.as_ref().map(|p| ("evaluate.html", p)));
    }
    let confine = |field: &'static str, path: &std::path::Path| {
        shoal_common::paths::confine(field, path, &roots).map(|_| ()).map_err(|reason| RunError::PathNotAllowed {
            job: job.clone(),
            field,
            reason,
        })
    };
    // Each file of a folder or name pattern too: one of them could be a link out of the roots.
    let exts = cfg.dataset.extensions();
    for (field, path) in cfg.dataset.files() {
        if !exts.is_empty()
            && let Ok(files) = shoal_common::paths::data_files(path, exts)
        {
            for file in files {
                confine(field, &file)?;
            }
        }
    }
    for (field, path) in paths {
        // A name pattern is no path of its own; the files it matched were checked above.
        let pattern = !exts.is_empty() && path.file_name().is_some_and(|n| n.to_string_lossy().contains('*'));
        if !pattern {
            confine(field, path)?;
        }
    }
    Ok(())
}

/// The checkpoint of stage `stage` that belongs with `path`, the first stage's checkpoint
/// (`.../stage-0/step-N` becomes `.../stage-S/step-N`).
fn stage_checkpoint(path: PathBuf, stage: usize, stages: usize) -> PathBuf {
    if stages == 1 {
        return path;
    }
    let (Some(step), Some(stage_dir)) = (path.file_name(), path.parent()) else { return path };
    match stage_dir.parent() {
        Some(root) if stage_dir.file_name().is_some_and(|n| n == "stage-0") => {
            root.join(format!("stage-{stage}")).join(step)
        }
        _ => path,
    }
}
