//! `shoal monitor`: runs `shoal-worker monitor` (which runs the model) and passes its output
//! through; with `--on-drift JOBFILE` it also reads the reports as they come and submits the job
//! file to the coordinator each time a window's drift is confirmed. The job file is checked
//! before monitoring starts, so a bad one fails at once (exit 2) rather than at the first drift.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use shoal_common::proto::{JobSpec, SubmitJobRequest};

use super::local::worker_binary;
use crate::client::Target;
use crate::error::CliError;
use crate::jobfile;

/// A confirmed drift: the window and what drifted.
struct Confirmed {
    window: u64,
    reasons: String,
}

/// Runs the monitor with `args` (the worker's options plus `--on-drift`).
pub async fn run(target: &Target, args: &[String]) -> Result<ExitCode, CliError> {
    let (job_file, args) = take_on_drift(args)?;
    let Some(job_file) = job_file else {
        return super::compress::passthrough("monitor", &args);
    };
    let spec = jobfile::load(&job_file, true)?.spec;
    let bin = worker_binary()?;
    let mut child = std::process::Command::new(&bin)
        .arg("monitor")
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::usage(format!("cannot start {}: {e}", bin.display())))?;
    let stdout = child.stdout.take().ok_or_else(|| CliError::usage("the monitor's output is not readable"))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || read_reports(stdout, &tx));
    let mut failed = false;
    while let Some(c) = rx.recv().await {
        match submit(target, &spec).await {
            Ok(id) => eprintln!("shoal: drift confirmed in window {} ({}): submitted job {id}", c.window, c.reasons),
            Err(e) => {
                failed = true;
                eprintln!(
                    "shoal: drift confirmed in window {}, but the job was not submitted: {}",
                    c.window, e.message
                );
            }
        }
    }
    let _ = reader.join();
    let status = child.wait().map_err(|e| CliError::usage(format!("the monitor: {e}")))?;
    let code = status.code().map_or(1, |c| c.clamp(0, 255) as u8);
    Ok(ExitCode::from(if code == 0 && failed { 1 } else { code }))
}

/// `--on-drift FILE` (or `--on-drift=FILE`) taken out of the worker's arguments.
fn take_on_drift(args: &[String]) -> Result<(Option<PathBuf>, Vec<String>), CliError> {
    let mut file = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--on-drift" {
            let f = it.next().ok_or_else(|| CliError::usage("--on-drift: name a job file"))?;
            file = Some(PathBuf::from(f));
        } else if let Some(f) = a.strip_prefix("--on-drift=") {
            file = Some(PathBuf::from(f));
        } else {
            rest.push(a.clone());
        }
    }
    if file.as_deref().is_some_and(|f: &Path| f.as_os_str().is_empty()) {
        return Err(CliError::usage("--on-drift: name a job file"));
    }
    Ok((file, rest))
}

/// Copies the monitor's output to ours while reading it as a sequence of JSON reports (one
/// document, or one line per window), sending each confirmed drift.
fn read_reports(stdout: impl Read, tx: &tokio::sync::mpsc::UnboundedSender<Confirmed>) {
    // Standard output is line-buffered: the copy reaches the terminal report by report.
    let tee = Tee { inner: std::io::BufReader::new(stdout), out: std::io::stdout() };
    for value in serde_json::Deserializer::from_reader(tee).into_iter::<serde_json::Value>() {
        let Ok(v) = value else { break };
        if v["confirmed"] == serde_json::Value::Bool(true) {
            let reasons = v["reasons"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            if tx.send(Confirmed { window: v["window"].as_u64().unwrap_or(0), reasons }).is_err() {
                break;
            }
        }
    }
}

/// A reader that writes what it reads to standard output.
struct Tee<R> {
    inner: R,
    out: std::io::Stdout,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.lock().write_all(&buf[..n])?;
        Ok(n)
    }
}

async fn submit(target: &Target, spec: &JobSpec) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let response = client.submit_job(target.request(SubmitJobRequest { spec: Some(spec.clone()) })).await?;
    Ok(response.into_inner().job_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_on_drift_out_of_the_arguments() {
        let args: Vec<String> =
            ["--reference", "r.csv", "--on-drift", "job.toml", "--follow", "d"].iter().map(|s| s.to_string()).collect();
        let (file, rest) = take_on_drift(&args).expect("parse");
        assert_eq!(file, Some(PathBuf::from("job.toml")));
        assert_eq!(rest, ["--reference", "r.csv", "--follow", "d"]);
        let (file, _) = take_on_drift(&["--on-drift=j.toml".to_string()]).expect("parse");
        assert_eq!(file, Some(PathBuf::from("j.toml")));
        assert!(take_on_drift(&["--on-drift".to_string()]).is_err());
        assert_eq!(take_on_drift(&[]).expect("parse").0, None);
    }
}
