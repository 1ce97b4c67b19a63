//! `shoal watch`: a live progress bar (step, epoch, loss, accuracy, samples/s, ETA) fed by the
//! job's event stream, then a final summary. A watch that loses the coordinator reconnects and
//! resumes after the last event it saw.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_common::proto::{JobEvent, JobResult, JobState, MetricPoint, NoticeLevel, Split, WatchJobRequest, job_event};

use crate::client::Target;
use crate::error::CliError;
use crate::render;

/// Give up when the coordinator stays unreachable this long.
const OUTAGE_LIMIT: Duration = Duration::from_secs(120);
/// Without a terminal, print a progress line at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

pub async fn run(target: &Target, job_id: &str) -> Result<ExitCode, CliError> {
    let mut view = View::new(job_id);
    let mut after = 0;
    let mut outage: Option<Instant> = None;
    let mut pause = Duration::from_millis(250);
    loop {
        match follow(target, job_id, &mut after, &mut view).await {
            Ok(Some(state)) => return Ok(view.finish(state)),
            // The stream closed early (the coordinator restarted): resume promptly.
            Ok(None) => outage = None,
            Err(e) if e.code == 3 => {
                let since = *outage.get_or_insert_with(Instant::now);
                if since.elapsed() > OUTAGE_LIMIT {
                    view.clear();
                    return Err(e);
                }
                view.line(&format!("lost the coordinator ({}); reconnecting", e.message));
            }
            Err(e) => {
                view.clear();
                return Err(e);
            }
        }
        pause = if outage.is_some() { (pause * 2).min(Duration::from_secs(5)) } else { Duration::from_millis(250) };
        tokio::time::sleep(pause).await;
    }
}

/// Follows the stream once. `Some(state)` when the job ended; `None` when the stream closed early.
async fn follow(target: &Target, job_id: &str, after: &mut u64, view: &mut View) -> Result<Option<JobState>, CliError> {
    let mut client = target.connect().await?;
    // Only the call itself has a deadline: the stream lives as long as the job, and HTTP/2
    // keep-alives detect a dead connection.
    let mut request = tonic::Request::new(WatchJobRequest { job_id: job_id.into(), after_seq: *after });
    shoal_common::auth::attach(&mut request, &target.token);
    let call = client.watch_job(request);
    let mut stream = tokio::time::timeout(target.timeout, call)
        .await
        .map_err(|_| CliError::unavailable("the coordinator did not answer the watch request in time"))??
        .into_inner();
    loop {
        match stream.message().await {
            Ok(Some(event)) => {
                *after = event.seq;
                if let Some(state) = view.apply(&event) {
                    return Ok(Some(state));
                }
            }
            Ok(None) => return Ok(None),
            Err(status) => return Err(status.into()),
        }
    }
}

/// Newest progress of one rank.
#[derive(Clone, Copy, Default)]
struct RankProgress {
    samples_per_s: f64,
    comm_share: f64,
    /// Share of step time spent waiting for the next batch.
    data_wait: f64,
    /// Pipeline stage and its idle share (pipeline jobs only).
    stage: Option<u32>,
    bubble: f64,
}

struct View {
    job_id: String,
    ranks: std::collections::BTreeMap<u32, RankProgress>,
    bar: Option<ProgressBar>,
    tty: bool,
    last_plain: Option<Instant>,
    result: Option<JobResult>,
    reason: String,
    last_validation: Option<MetricPoint>,
}

impl View {
    fn new(job_id: &str) -> Self {
        let tty = !ProgressDrawTarget::stderr().is_hidden();
        Self {
            job_id: job_id.into(),
            ranks: Default::default(),
            bar: None,
            tty,
            last_plain: None,
            result: None,
            reason: String::new(),
            last_validation: None,
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) if self.tty => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn progress(&mut self, p: &MetricPoint) {
        let comm = p.extra.get("comm_share").copied().unwrap_or(0.0);
        let stage = p.extra.get("stage").map(|s| *s as u32);
        let bubble = p.extra.get("bubble").copied().unwrap_or(0.0);
        let data_wait = p.extra.get("data_wait_share").copied().unwrap_or(0.0);
        self.ranks.insert(
            p.rank,
            RankProgress { samples_per_s: p.samples_per_s, comm_share: comm, data_wait, stage, bubble },
        );
        if p.rank != 0 {
            // Rank 0 drives the bar; the others add their throughput and communication share.
            return;
        }
        // Every stage of a pipeline sees the same samples: count each replica once.
        let throughput: f64 = self.ranks.values().filter(|r| r.stage.unwrap_or(0) == 0).map(|r| r.samples_per_s).sum();
        let stages = self.ranks.values().filter_map(|r| r.stage).max().map(|s| s + 1);
        let mut message = format!(
            "epoch {}/{}  {}  {} samples/s",
            p.epoch,
            p.total_epochs,
            render::metric(p),
            render::si(throughput)
        );
        if let Some(stages) = stages {
            let replicas = self.ranks.len().div_ceil(stages as usize);
            let idle = self.ranks.values().map(|r| r.bubble).fold(1.0, f64::min);
            message.push_str(&format!(
                " over {replicas} replica(s) x {stages} stages, busiest stage idle {:.0}%",
                idle * 100.0
            ));
        } else if self.ranks.len() > 1 {
            let worst = self.ranks.values().map(|r| r.comm_share).fold(0.0, f64::max);
            message.push_str(&format!(" over {} ranks, comm up to {:.0}%", self.ranks.len(), worst * 100.0));
        } else if comm > 0.0 {
            message.push_str(&format!(", comm {:.0}%", comm * 100.0));
        }
        // Waiting for data is worth a word once it is a visible share of the step.
        let waiting = self.ranks.values().map(|r| r.data_wait).fold(0.0, f64::max);
        if waiting >= 0.01 {
            message.push_str(&format!(", data wait {:.0}%", waiting * 100.0));
        }
        if self.tty {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(p.total_steps.max(1));
                let style = ProgressStyle::with_template("{spinner} [{bar:30}] step {pos}/{len}  {msg}  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                bar.set_style(style);
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            });
            bar.set_length(p.total_steps.max(1));
            bar.set_position(p.step);
            bar.set_message(message);
        } else if self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) || p.step == p.total_steps {
            self.last_plain = Some(Instant::now());
            let eta = if p.step > 0 && p.elapsed_s > 0.0 {
                render::duration(p.elapsed_s / p.step as f64 * (p.total_steps.saturating_sub(p.step)) as f64)
            } else {
                "-".into()
            };
            eprintln!("step {}/{}  {message}  eta {eta}", p.step, p.total_steps);
        }
    }

    /// Applies one event; returns the final state when the job ended.
    fn apply(&mut self, e: &JobEvent) -> Option<JobState> {
        match &e.kind {
            Some(job_event::Kind::State(s)) => {
                let state = JobState::try_from(s.state).unwrap_or(JobState::Unspecified);
                if state.is_terminal() {
                    self.result = s.result.clone();
                    self.reason = s.reason.clone();
                    return Some(state);
                }
                let detail = if s.reason.is_empty() { String::new() } else { format!(": {}", s.reason) };
                self.line(&format!("{} {}{detail}", self.job_id, state.label()));
                None
            }
            Some(job_event::Kind::Metric(p)) => {
                if let Some(ended) = p.extra.get("trials_ended") {
                    let value = p.accuracy.map_or_else(|| format!("{:.4}", p.loss), |a| format!("{a:.4}"));
                    self.line(&format!("best after {ended} of {} trials: {value}", p.total_steps));
                    self.last_validation = Some(p.clone());
                } else if p.split == Split::Validation as i32 {
                    self.line(&format!("validation at step {}: {}", p.step, render::metric(p)));
                    self.last_validation = Some(p.clone());
                } else {
                    self.progress(p);
                }
                None
            }
            Some(job_event::Kind::Notice(n)) => {
                let prefix = match NoticeLevel::try_from(n.level) {
                    Ok(NoticeLevel::Warn) => "warning: ",
                    Ok(NoticeLevel::Error) => "error: ",
                    _ => "",
                };
                self.line(&format!("{prefix}{}", n.message));
                None
            }
            None => None,
        }
    }

    fn finish(&mut self, state: JobState) -> ExitCode {
        self.clear();
        match state {
            JobState::Succeeded => {
                println!("{} succeeded", self.job_id);
                if let Some(r) = &self.result {
                    if r.extra.contains_key("best_trial") {
                        println!("  {}", self.reason);
                    } else {
                        println!("  {}", render::result(r));
                    }
                    if let Some(a) = r.validation_accuracy {
                        println!("final validation accuracy: {a:.4}");
                    }
                    if !r.checkpoint.is_empty() {
                        println!("  checkpoint: {}", r.checkpoint);
                    }
                }
                ExitCode::SUCCESS
            }
            other => {
                eprintln!("shoal: {} {}: {}", self.job_id, other.label(), self.reason);
                ExitCode::from(1)
            }
        }
    }
}
