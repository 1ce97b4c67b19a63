//! `shoal submit` and `shoal validate`.

use std::path::Path;
use std::process::ExitCode;

use shoal_common::proto::SubmitJobRequest;

use crate::client::Target;
use crate::error::CliError;
use crate::jobfile;

pub async fn run(
    target: &Target,
    file: &Path,
    watch: bool,
    priority: Option<i64>,
    check_paths: bool,
) -> Result<ExitCode, CliError> {
    let mut job = jobfile::load(file, check_paths)?;
    if let Some(p) = priority {
        job.spec.priority = p;
    }
    let mut client = target.connect().await?;
    let response = client.submit_job(target.request(SubmitJobRequest { spec: Some(job.spec) })).await?.into_inner();
    println!("{}", response.job_id);
    if watch {
        return super::watch::run(target, &response.job_id).await;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn validate(file: &Path, check_paths: bool) -> Result<ExitCode, CliError> {
    let job = jobfile::load(file, check_paths)?;
    let c = &job.config;
    match &c.evaluate {
        // An evaluation job's model comes from its artifact: nothing to tell of it here.
        Some(e) => println!(
            "{}: valid evaluation job `{}` ({} on {}, {} rank{})",
            file.display(),
            c.name,
            e.artifact.display(),
            e.data.display(),
            c.parallel.data,
            if c.parallel.data == 1 { "" } else { "s" }
        ),
        None => println!(
            "{}: valid job `{}` ({} hidden layers, batch {})",
            file.display(),
            c.name,
            c.model.layers.len(),
            c.training.batch_size
        ),
    }
    Ok(ExitCode::SUCCESS)
}
