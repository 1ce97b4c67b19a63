//! Translates the training loop's reports into session messages and log lines.

use std::collections::HashMap;
use std::sync::atomic::AtomicU8;

use shoal_common::proto::{
    JobCheckpointed, JobFinished, JobMetric, JobNotice, JobResult, MetricPoint, Notice, NoticeLevel, Outcome, Split,
    WorkerMessage, worker_message,
};
use shoal_train::{Host, Outcome as TrainOutcome, Report, Stop, Summary, TrainError};
use tokio::sync::mpsc::UnboundedSender;

use super::input_bound::InputWatch;
use super::window::StepWindows;
use crate::devices::GpuMonitor;

pub struct ReportHost<'a> {
    job_id: String,
    attempt: u32,
    rank: usize,
    updates: UnboundedSender<WorkerMessage>,
    stop: &'a AtomicU8,
    /// The GPUs reserved for this rank, sampled into each training point.
    gpus: Option<(GpuMonitor, Vec<u32>)>,
    windows: StepWindows,
    /// Watches for a rank starved of data, with the job's loader thread count.
    input: Option<(InputWatch, usize)>,
}

impl<'a> ReportHost<'a> {
    pub fn new(
        job_id: String,
        attempt: u32,
        rank: usize,
        updates: UnboundedSender<WorkerMessage>,
        stop: &'a AtomicU8,
    ) -> Self {
        Self { job_id, attempt, rank, updates, stop, gpus: None, windows: StepWindows::default(), input: None }
    }

    /// Tells the job once if its training keeps waiting for data (it loads with `loader_threads`).
    pub fn watch_input(&mut self, loader_threads: usize) {
        self.input = Some((InputWatch::default(), loader_threads));
    }

    /// Training points carry the use of these GPUs (none when `gpus` is empty).
    pub fn sample_gpus(&mut self, monitor: GpuMonitor, gpus: Vec<u32>) {
        self.gpus = (!gpus.is_empty()).then_some((monitor, gpus));
    }

    fn send(&self, kind: worker_message::Kind) {
        // The session task is gone only while the worker shuts down; nothing to do then.
        let _ = self.updates.send(WorkerMessage { kind: Some(kind), seq: 0 });
    }

    fn notice(&self, level: NoticeLevel, message: String) {
        self.send(worker_message::Kind::Notice(JobNotice {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            notice: Some(Notice { level: level as i32, message }),
        }));
    }

    /// A note for the job's event history and the log.
    pub fn info(&self, message: String) {
        tracing::info!("{message}");
        self.notice(NoticeLevel::Info, message);
    }

    /// A warning for the job's event history and the log.
    pub fn warn(&self, message: String) {
        tracing::warn!("{message}");
        self.notice(NoticeLevel::Warn, message);
    }

    /// Sends a metric point as is (external trials).
    pub fn metric_point(&self, point: MetricPoint) {
        self.metric(point);
    }

    fn metric(&self, point: MetricPoint) {
        self.send(worker_message::Kind::Metric(JobMetric {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            point: Some(point),
        }));
    }
}

impl Host for ReportHost<'_> {
    fn report(&mut self, report: Report) {
        match report {
            Report::Started { total_steps, steps_per_epoch, params, model, resumed_at } => {
                tracing::info!(total_steps, steps_per_epoch, params, model = %model, "training started");
                let mut msg = format!(
                    "training {params} parameters ({model}) for {total_steps} steps, {steps_per_epoch} per epoch"
                );
                if let Some(step) = resumed_at {
                    msg.push_str(&format!("; resumed at step {step}"));
                }
                self.notice(NoticeLevel::Info, msg);
                self.windows.start(resumed_at.unwrap_or(0));
            }
            Report::Train(p) => {
                self.windows.progress(&p);
                if let Some(message) = self.input.as_mut().and_then(|(watch, threads)| watch.observe(&p, *threads)) {
                    self.warn(message);
                }
                tracing::info!(
                    step = p.step,
                    epoch = p.epoch,
                    loss = p.loss,
                    accuracy = p.accuracy,
                    samples_per_s = p.samples_per_s.round(),
                    lr = p.lr,
                    rank = p.rank,
                    comm_share = (p.comm_share * 1000.0).round() / 1000.0,
                    data_wait_share = (p.data_wait_share * 1000.0).round() / 1000.0,
                    "progress"
                );
                self.metric(MetricPoint {
                    step: p.step,
                    total_steps: p.total_steps,
                    epoch: p.epoch as u32,
                    total_epochs: p.total_epochs as u32,
                    split: Split::Train as i32,
                    loss: p.loss,
                    accuracy: p.accuracy,
                    samples_per_s: p.samples_per_s,
                    lr: p.lr,
                    elapsed_s: p.elapsed_s,
                    extra: [("data_wait_share".to_owned(), p.data_wait_share), ("comm_share".to_owned(), p.comm_share)]
                        .into_iter()
                        .chain(p.extra.iter().cloned())
                        .collect(),
                    rank: p.rank as u32,
                    // Not in the log line above: the session message carries it.
                    gpus: self.gpus.as_ref().map(|(m, gpus)| m.sample_of(gpus)).unwrap_or_default(),
                });
            }
            Report::Validation(p) => {
                tracing::info!(
                    step = p.step,
                    epoch = p.epoch,
                    loss = p.loss,
                    accuracy = p.accuracy,
                    r2 = p.r2,
                    "validation"
                );
                self.metric(MetricPoint {
                    step: p.step,
                    epoch: p.epoch as u32,
                    split: Split::Validation as i32,
                    loss: p.loss,
                    accuracy: p.accuracy,
                    elapsed_s: p.elapsed_s,
                    extra: p.r2.map(|r| HashMap::from([("r2".to_owned(), r)])).unwrap_or_default(),
                    rank: self.rank as u32,
                    ..Default::default()
                });
            }
            Report::Checkpoint { step, path } => {
                tracing::info!(step, path = %path.display(), "checkpoint written");
                self.notice(
                    NoticeLevel::Info,
                    format!("{}{step}: {}", shoal_common::proto::CHECKPOINT_NOTICE, path.display()),
                );
                self.send(worker_message::Kind::Checkpointed(JobCheckpointed {
                    job_id: self.job_id.clone(),
                    attempt: self.attempt,
                    step,
                    path: path.display().to_string(),
                }));
            }
        }
    }

    fn stop(&self) -> Option<Stop> {
        super::stop_of(self.stop)
    }
}

/// The final result of a successful run.
pub fn result_of(s: &Summary) -> JobResult {
    let val = s.validation.as_ref();
    let mut extra = HashMap::new();
    if let Some(r2) = val.and_then(|v| v.r2) {
        extra.insert("validation_r2".to_owned(), r2);
    }
    extra.extend(s.extra.iter().cloned());
    JobResult {
        steps: s.steps,
        epochs: s.epochs as u32,
        train_loss: s.last10_loss,
        validation_loss: val.map_or(f64::NAN, |v| v.loss),
        validation_accuracy: val.and_then(|v| v.accuracy),
        samples_per_s: s.samples_per_s,
        elapsed_s: s.elapsed_s,
        checkpoint: s.checkpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        first_train_loss: s.first_loss,
        extra,
    }
}

/// The message that ends a job's rank; `world` ranks trained at the same pace, so the job's
/// throughput is `world` times this rank's.
pub fn finished(job_id: &str, attempt: u32, world: usize, outcome: Result<TrainOutcome, TrainError>) -> JobFinished {
    let base = JobFinished { job_id: job_id.into(), attempt, ..Default::default() };
    match outcome {
        Ok(TrainOutcome::Completed(s)) => JobFinished {
            outcome: Outcome::Succeeded as i32,
            step: s.steps,
            checkpoint: s.checkpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            result: Some(JobResult { samples_per_s: s.samples_per_s * world as f64, ..result_of(&s) }),
            ..base
        },
        Ok(TrainOutcome::Cancelled { step }) => JobFinished { outcome: Outcome::Cancelled as i32, step, ..base },
        Ok(TrainOutcome::Interrupted { step, checkpoint }) => JobFinished {
            outcome: Outcome::Interrupted as i32,
            step,
            checkpoint: checkpoint.map(|p| p.display().to_string()).unwrap_or_default(),
            ..base
        },
        Err(e) => JobFinished {
            outcome: Outcome::Failed as i32,
            // A peer or link failed; the job itself may well succeed from its checkpoint.
            retryable: e.retryable(),
            error: e.to_string(),
            ..base
        },
    }
}
