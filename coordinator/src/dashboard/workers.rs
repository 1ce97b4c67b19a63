//! The workers page (`/workers`): every worker and parameter server the coordinator knows, with
//! its state, CPUs, memory and GPUs (free of total, and the GPUs' use), the jobs it runs and its
//! last heartbeat. Its script reloads the table every few seconds.

use shoal_common::proto::{WorkerState, WorkerStatus};

use super::html::{self, Nav, escape};

fn state_label(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Ready => "ready",
        WorkerState::Disconnected => "disconnected",
        WorkerState::Draining => "draining",
        WorkerState::Lost => "lost",
        WorkerState::Left => "left",
        WorkerState::Unspecified => "unknown",
    }
}

fn gpus(w: &WorkerStatus) -> String {
    let info = w.info.clone().unwrap_or_default();
    if info.gpus.is_empty() {
        return if info.gpu_note.is_empty() { "none".into() } else { escape(&info.gpu_note) };
    }
    let mut lines = vec![format!("{} free of {}", w.free_gpus, info.gpus.len())];
    for g in &info.gpus {
        let usage = w.gpu_usage.iter().find(|u| u.index == g.index);
        let used = usage.map_or(String::new(), |u| {
            let util = u.utilization_percent.map_or(String::new(), |p| format!(", {p}% busy"));
            format!(": {} of {} used{util}", html::bytes(u.memory_used_bytes), html::bytes(u.memory_total_bytes))
        });
        lines.push(format!("<small>#{} {}{used}</small>", g.index, escape(&g.name)));
    }
    lines.join("<br>")
}

fn row(w: &WorkerStatus) -> Vec<String> {
    let info = w.info.clone().unwrap_or_default();
    let state = state_label(w.state());
    let jobs: Vec<String> = w.job_ids.iter().map(|j| format!("<a href=\"/jobs/{0}\">{0}</a>", escape(j))).collect();
    vec![
        escape(&w.worker_id),
        escape(&info.hostname),
        escape(if info.role.is_empty() { "worker" } else { &info.role }),
        format!("<span class=\"state {state}\">{state}</span><div class=\"reason\">{}</div>", escape(&w.reason)),
        format!("{} free of {}", w.free_cpus, info.cpu_cores),
        format!("{} free of {}", html::bytes(w.free_memory_bytes), html::bytes(info.memory_bytes)),
        gpus(w),
        if jobs.is_empty() { "-".into() } else { jobs.join("<br>") },
        html::time(w.last_seen.as_ref()),
        escape(&info.version),
    ]
}

/// The page.
pub fn page(workers: &[WorkerStatus]) -> String {
    let rows: Vec<Vec<String>> = workers.iter().map(row).collect();
    let headers = ["Worker", "Host", "Role", "State", "CPUs", "Memory", "GPUs", "Jobs", "Last heartbeat", "Version"];
    let body = format!(
        "<h1>Workers</h1>{}",
        html::table(
            "workers",
            &headers,
            &rows,
            "No worker has registered. Start one with `shoal-worker --coordinator URL`."
        )
    );
    html::page("Workers", Nav::Workers, &[("page", "workers")], &body)
}
