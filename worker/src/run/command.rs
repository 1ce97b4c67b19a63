//! External trials: the job runs a user's program instead of a built-in model. The program gets
//! the trial's parameters as JSON on stdin and in `SHOAL_TRIAL_PARAMS`, and reports metrics by
//! printing lines of the form
//!
//! ```text
//! SHOAL_METRIC {"step": 100, "split": "validation", "accuracy": 0.93, "loss": 0.21}
//! ```
//!
//! `split` defaults to validation; `step`, `total_steps`, `epoch`, `loss` and `accuracy` fill the
//! metric point's fields and any other numeric key lands in its extra values. Other output goes to
//! the worker's log. Cancelling the job (an early stop) terminates the program: SIGTERM, then
//! SIGKILL after a grace period.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_common::proto::{JobFinished, JobResult, MetricPoint, Outcome, Split};
use shoal_common::spec::TrainConfig;
use shoal_train::{Host, Report, Stop};

use super::error::RunError;
use super::report::ReportHost;

/// Prefix of a metric line.
pub const METRIC_PREFIX: &str = "SHOAL_METRIC ";
const TERM_GRACE: Duration = Duration::from_secs(5);

enum Line {
    Out(String),
    Err(String),
}

/// What is wrong with a `SHOAL_METRIC` line.
#[derive(Debug, thiserror::Error)]
pub enum MetricLineError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("bad JSON: {source}")]
    Json { source: serde_json::Error },
    #[error("split must be train or validation, got `{split}`")]
    Split { split: String },
    #[error("{key} must be a whole number >= 0")]
    NotWhole { key: String },
    #[error("`{key}` must be a number")]
    NotANumber { key: String },
}

/// Parses one `SHOAL_METRIC` line into a metric point. `Err` says what is wrong with it.
pub fn parse_metric(line: &str) -> Option<Result<MetricPoint, MetricLineError>> {
    let json = line.strip_prefix(METRIC_PREFIX)?;
    let obj: serde_json::Map<String, Value> = match serde_json::from_str(json.trim()) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Some(Err(MetricLineError::NotAnObject)),
        Err(source) => return Some(Err(MetricLineError::Json { source })),
    };
    let mut p = MetricPoint { split: Split::Validation as i32, ..Default::default() };
    for (k, v) in obj {
        match (k.as_str(), &v) {
            ("split", Value::String(s)) => {
                p.split = match s.as_str() {
                    "train" => Split::Train as i32,
                    "validation" => Split::Validation as i32,
                    other => return Some(Err(MetricLineError::Split { split: other.to_owned() })),
                }
            }
            ("step" | "total_steps" | "epoch", _) => {
                let Some(n) = v.as_u64() else { return Some(Err(MetricLineError::NotWhole { key: k })) };
                match k.as_str() {
                    "step" => p.step = n,
                    "total_steps" => p.total_steps = n,
                    _ => p.epoch = n as u32,
                }
            }
            (_, Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                match k.as_str() {
                    "loss" => p.loss = x,
                    "accuracy" => p.accuracy = Some(x),
                    "lr" => p.lr = x,
                    "samples_per_s" => p.samples_per_s = x,
                    _ => {
                        p.extra.insert(k, x);
                    }
                }
            }
            _ => return Some(Err(MetricLineError::NotANumber { key: k })),
        }
    }
    Some(Ok(p))
}

fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs the job's command to completion (or until the job is stopped).
pub fn run(
    cfg: &TrainConfig,
    job_id: &str,
    attempt: u32,
    checkpoint_dir: &std::path::Path,
    host: &mut ReportHost<'_>,
) -> JobFinished {
    let base = JobFinished { job_id: job_id.into(), attempt, ..Default::default() };
    let job = || shoal_common::JobId::new(job_id);
    let failed = |error: RunError| super::failed(attempt, &error);
    let Some(cmd) = &cfg.command else { return failed(RunError::NoCommand { job: job() }) };
    let params = if cfg.trial_params.is_empty() { "{}".to_owned() } else { cfg.trial_params.clone() };
    let _ = std::fs::create_dir_all(checkpoint_dir);
    let mut command = Command::new(&cmd.argv[0]);
    command
        .args(&cmd.argv[1..])
        .env("SHOAL_TRIAL_PARAMS", &params)
        .env("SHOAL_JOB_ID", job_id)
        .env("SHOAL_CHECKPOINT_DIR", checkpoint_dir)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &cmd.workdir {
        command.current_dir(dir);
    }
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(source) => return failed(RunError::CommandStart { job: job(), program: cmd.argv[0].clone(), source }),
    };
    tracing::info!(program = %cmd.argv[0], pid = child.id(), "external trial started");
    host.report(Report::Started {
        total_steps: 0,
        steps_per_epoch: 0,
        params: 0,
        model: format!("external command `{}`", cmd.argv.join(" ")),
        resumed_at: None,
    });
    if let Some(mut stdin) = child.stdin.take() {
        // A program that never reads stdin must not block us: write from a thread, then close.
        let text = params.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.write_all(b"\n");
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(Line::Out(line));
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(Line::Err(line));
            }
        });
    }
    drop(tx);
    let mut last_val: Option<MetricPoint> = None;
    let mut last_step = 0;
    let mut last_err = String::new();
    let mut first_loss = None;
    let mut last_loss = f64::NAN;
    let status = loop {
        if let Some(stop) = host.stop() {
            terminate(&mut child);
            let outcome = match stop {
                Stop::Cancel => Outcome::Cancelled,
                Stop::Drain => Outcome::Interrupted,
            };
            return JobFinished { outcome: outcome as i32, step: last_step, ..base };
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Line::Out(line)) => match parse_metric(&line) {
                Some(Ok(mut p)) => {
                    p.elapsed_s = started.elapsed().as_secs_f64();
                    last_step = last_step.max(p.step);
                    if p.split == Split::Validation as i32 {
                        last_val = Some(p.clone());
                    } else {
                        first_loss.get_or_insert(p.loss);
                        last_loss = p.loss;
                    }
                    host.metric_point(p);
                }
                Some(Err(why)) => host.warn(format!("ignored a metric line of the trial program ({why}): {line}")),
                None => tracing::info!(target: "trial", "{line}"),
            },
            Ok(Line::Err(line)) => {
                tracing::info!(target: "trial", stream = "stderr", "{line}");
                if !line.trim().is_empty() {
                    last_err = line;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => match child.wait() {
                Ok(s) => break s,
                Err(source) => return failed(RunError::CommandWait { job: job(), source }),
            },
        }
    };
    if !status.success() {
        let error = RunError::CommandFailed { job: job(), program: cmd.argv[0].clone(), status, last_err };
        return JobFinished { step: last_step, ..failed(error) };
    }
    let val = last_val.unwrap_or_default();
    let mut extra: HashMap<String, f64> = val.extra.iter().map(|(k, v)| (format!("validation_{k}"), *v)).collect();
    extra.retain(|_, v| v.is_finite());
    JobFinished {
        outcome: Outcome::Succeeded as i32,
        step: last_step,
        result: Some(JobResult {
            steps: last_step,
            train_loss: last_loss,
            validation_loss: val.loss,
            validation_accuracy: val.accuracy,
            elapsed_s: started.elapsed().as_secs_f64(),
            first_train_loss: first_loss.unwrap_or(f64::NAN),
            extra,
            ..Default::default()
        }),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_parse_into_points() {
        let p = parse_metric(r#"SHOAL_METRIC {"step": 7, "accuracy": 0.5, "loss": 1.25, "f1": 0.4}"#)
            .expect("a metric line")
            .expect("valid");
        assert_eq!((p.step, p.accuracy, p.loss), (7, Some(0.5), 1.25));
        assert_eq!(p.split, Split::Validation as i32);
        assert_eq!(p.extra.get("f1"), Some(&0.4));
        let t = parse_metric(r#"SHOAL_METRIC {"split": "train", "step": 1, "loss": 2}"#).expect("line").expect("ok");
        assert_eq!(t.split, Split::Train as i32);
        assert!(parse_metric("epoch 3 done").is_none());
        assert!(parse_metric("SHOAL_METRIC [1]").expect("line").is_err());
        assert!(parse_metric(r#"SHOAL_METRIC {"step": -1}"#).expect("line").is_err());
        assert!(parse_metric(r#"SHOAL_METRIC {"accuracy": "high"}"#).expect("line").is_err());
    }
}
