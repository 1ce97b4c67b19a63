//! `shoal status`, `list`, `cancel` and `workers`.

use std::process::ExitCode;

use shoal_common::proto::{
    CancelJobRequest, GetJobRequest, GpuInfo, GpuUsage, JobState, ListJobsRequest, ListWorkersRequest,
};

use crate::client::Target;
use crate::error::CliError;
use crate::render;

fn to_json(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn usage_json(u: &GpuUsage) -> serde_json::Value {
    serde_json::json!({
        "index": u.index, "memory_used_bytes": u.memory_used_bytes, "memory_total_bytes": u.memory_total_bytes,
        "utilization_percent": u.utilization_percent,
    })
}

/// A registered GPU and its newest sample (`null` fields when there is none).
fn gpu_json(g: &GpuInfo, usage: &[GpuUsage]) -> serde_json::Value {
    let u = usage.iter().find(|u| u.index == g.index);
    serde_json::json!({
        "index": g.index, "name": g.name, "memory_bytes": g.memory_bytes, "pci_bus_id": g.pci_bus_id,
        "compute_capability": format!("{}.{}", g.compute_capability_major, g.compute_capability_minor),
        "memory_used_bytes": u.map(|u| u.memory_used_bytes), "utilization_percent": u.and_then(|u| u.utilization_percent),
    })
}

/// A job as JSON (prost types do not derive serde; pick the useful fields).
fn job_json(j: &shoal_common::proto::Job) -> serde_json::Value {
    let point = |p: &Option<shoal_common::proto::MetricPoint>| {
        p.as_ref().map(|p| serde_json::json!({"step": p.step, "total_steps": p.total_steps, "epoch": p.epoch, "loss": p.loss, "accuracy": p.accuracy, "samples_per_s": p.samples_per_s, "extra": p.extra, "gpus": p.gpus.iter().map(usage_json).collect::<Vec<_>>()}))
    };
    serde_json::json!({
        "job_id": j.job_id,
        "name": j.spec.as_ref().map(|s| s.name.clone()),
        "spec": j.spec,
        "state": render::state_of(j).label(),
        "reason": j.reason,
        "worker_id": j.worker_id,
        "attempt": j.attempt,
        "retries": j.retries,
        "queue_position": j.queue_position,
        "submitted_at_ms": j.submitted_at.as_ref().map(shoal_common::time::timestamp_to_ms),
        "started_at_ms": j.started_at.as_ref().map(shoal_common::time::timestamp_to_ms),
        "finished_at_ms": j.finished_at.as_ref().map(shoal_common::time::timestamp_to_ms),
        "last_train": point(&j.last_train),
        "ranks": j.ranks.iter().map(|r| serde_json::json!({
            "rank": r.rank, "worker_id": r.worker_id, "state": r.state, "last_train": point(&r.last_train),
        })).collect::<Vec<_>>(),
        "last_validation": point(&j.last_validation),
        "result": j.result.as_ref().map(|r| serde_json::json!({
            "steps": r.steps, "epochs": r.epochs, "first_train_loss": r.first_train_loss, "train_loss": r.train_loss,
            "validation_loss": r.validation_loss, "validation_accuracy": r.validation_accuracy,
            "samples_per_s": r.samples_per_s, "elapsed_s": r.elapsed_s, "checkpoint": r.checkpoint, "extra": r.extra,
        })),
    })
}

pub async fn status(target: &Target, job: &str, json: bool) -> Result<ExitCode, CliError> {
    let mut client = target.connect().await?;
    let j = client.get_job(target.request(GetJobRequest { job_id: job.into() })).await?.into_inner();
    if json {
        println!("{}", to_json(&job_json(&j)));
    } else {
        println!("{}", render::job(&j));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(target: &Target, states: &[String], limit: u32, json: bool) -> Result<ExitCode, CliError> {
    let mut wanted = Vec::new();
    for s in states {
        let state = JobState::from_label(s).ok_or_else(|| {
            CliError::usage(format!("--state `{s}`: expected queued, running, succeeded, failed or cancelled"))
        })?;
        wanted.push(state as i32);
    }
    let mut client = target.connect().await?;
    let jobs = client.list_jobs(target.request(ListJobsRequest { states: wanted, limit })).await?.into_inner().jobs;
    if json {
        println!("{}", to_json(&serde_json::Value::Array(jobs.iter().map(job_json).collect())));
    } else if jobs.is_empty() {
        println!("no jobs");
    } else {
        println!("{}", render::jobs_table(&jobs));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(target: &Target, job: &str, reason: &str) -> Result<ExitCode, CliError> {
    let mut client = target.connect().await?;
    let j = client
        .cancel_job(target.request(CancelJobRequest { job_id: job.into(), reason: reason.into() }))
        .await?
        .into_inner();
    println!("{} {}", j.job_id, render::state_of(&j).label());
    Ok(ExitCode::SUCCESS)
}

pub async fn workers(target: &Target, json: bool) -> Result<ExitCode, CliError> {
    let mut client = target.connect().await?;
    let workers = client.list_workers(target.request(ListWorkersRequest {})).await?.into_inner().workers;
    if json {
        let rows: Vec<serde_json::Value> = workers
            .iter()
            .map(|w| {
                let info = w.info.clone().unwrap_or_default();
                serde_json::json!({
                    "worker_id": w.worker_id, "hostname": info.hostname, "state": shoal_common::proto::WorkerState::try_from(w.state).map(|s| s.label()).unwrap_or("unknown"),
                    "reason": w.reason, "cpu_cores": info.cpu_cores, "free_cpus": w.free_cpus, "memory_bytes": info.memory_bytes,
                    "free_memory_bytes": w.free_memory_bytes, "gpus": info.gpus.iter().map(|g| gpu_json(g, &w.gpu_usage)).collect::<Vec<_>>(),
                    "gpu_note": info.gpu_note, "data_addr": info.data_addr, "version": info.version, "jobs": w.job_ids,
                })
            })
            .collect();
        println!("{}", to_json(&serde_json::Value::Array(rows)));
    } else if workers.is_empty() {
        println!("no workers registered");
    } else {
        println!("{}", render::workers(&workers));
    }
    Ok(ExitCode::SUCCESS)
}
