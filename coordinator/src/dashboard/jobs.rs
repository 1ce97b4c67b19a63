//! The jobs page (`/`): every job, newest first, with its state, progress, retries and queue
//! position, filtered by state and name, each running or queued one with a cancel button. Its
//! script reloads the table every few seconds.

use serde::Deserialize;
use shoal_common::proto::{Job, JobState};

use super::html::{self, Nav, escape};
use crate::metrics::kind_of;

/// Most jobs the page lists.
const LIMIT: usize = 500;

/// The page's filters, from its query string.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub name: String,
}

/// The states the filter accepts, by label; `Err` names the unknown one.
pub fn states(filter: &Filter) -> Result<Vec<JobState>, String> {
    match filter.state.trim() {
        "" | "all" => Ok(Vec::new()),
        label => JobState::from_label(label).map(|s| vec![s]).ok_or_else(|| {
            format!("state: unknown job state `{label}` (expected queued, running, succeeded, failed or cancelled)")
        }),
    }
}

/// The jobs of the list that match the name filter (a case-insensitive part of the name or id).
pub fn matching(jobs: Vec<Job>, filter: &Filter) -> Vec<Job> {
    let needle = filter.name.trim().to_lowercase();
    jobs.into_iter()
        .filter(|j| {
            needle.is_empty()
                || j.job_id.to_lowercase().contains(&needle)
                || j.spec.as_ref().is_some_and(|s| s.name.to_lowercase().contains(&needle))
        })
        .take(LIMIT)
        .collect()
}

/// How far a job got, as a bar with a label.
fn progress(job: &Job) -> String {
    let state = job.state();
    let fraction = match (&job.last_train, state) {
        (_, JobState::Succeeded) => Some(1.0),
        (Some(p), _) if p.total_steps > 0 => Some((p.step as f64 / p.total_steps as f64).min(1.0)),
        _ => None,
    };
    match fraction {
        Some(f) => {
            let step = job.last_train.as_ref().map_or(String::new(), |p| format!(" · step {}", p.step));
            format!(
                "<div class=\"progress\" title=\"{pct:.0}%\"><span style=\"width:{pct:.1}%\"></span></div>\
                 <small>{pct:.0}%{step}</small>",
                pct = f * 100.0
            )
        }
        None => "-".into(),
    }
}

fn row(job: &Job) -> Vec<String> {
    let state = job.state();
    let name = job.spec.as_ref().map_or("", |s| s.name.as_str());
    let position =
        if state == JobState::Queued && job.queue_position > 0 { job.queue_position.to_string() } else { "-".into() };
    vec![
        format!("<a href=\"/jobs/{0}\">{0}</a>", escape(&job.job_id)),
        escape(name),
        kind_of(job.spec.as_ref()).into(),
        format!("{}<div class=\"reason\">{}</div>", html::state_badge(state), escape(&job.reason)),
        progress(job),
        format!("{} / attempt {}", job.retries, job.attempt.max(1)),
        position,
        html::time(job.submitted_at.as_ref()),
        escape(&job.worker_id),
        html::cancel_button(job, "Cancel"),
    ]
}

/// The page.
pub fn page(jobs: &[Job], filter: &Filter) -> String {
    let mut options = String::new();
    for label in ["all", "queued", "running", "succeeded", "failed", "cancelled"] {
        let selected = if filter.state.trim() == label || (label == "all" && filter.state.trim().is_empty()) {
            " selected"
        } else {
            ""
        };
        options.push_str(&format!("<option{selected}>{label}</option>"));
    }
    let form = format!(
        "<form class=\"filter\" method=\"get\" action=\"/\"><label>State <select name=\"state\">{options}</select></label>\
         <label>Name <input name=\"name\" value=\"{}\" placeholder=\"part of a name or id\"></label>\
         <button>Filter</button></form>",
        escape(&filter.name)
    );
    let rows: Vec<Vec<String>> = jobs.iter().map(row).collect();
    let headers = ["Job", "Name", "Kind", "State", "Progress", "Retries", "Queue", "Submitted", "Worker", ""];
    let body = format!(
        "<h1>Jobs</h1>{form}{}",
        html::table("jobs", &headers, &rows, "No job matches. Submit one with `shoal submit JOB.toml`.")
    );
    html::page("Jobs", Nav::Jobs, &[("page", "jobs")], &body)
}
