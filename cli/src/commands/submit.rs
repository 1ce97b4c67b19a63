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
    println!(
        "{}: valid job `{}` ({} hidden layers, batch {})",
        file.display(),
        job.config.name,
        job.config.model.layers.len(),
        job.config.training.batch_size
    );
    Ok(ExitCode::SUCCESS)
}
