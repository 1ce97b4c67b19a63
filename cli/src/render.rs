//! Text formatting for people: numbers, durations, jobs and tables.

use shoal_common::proto::{GpuUsage, Job, JobResult, JobState, MetricPoint, WorkerState, WorkerStatus};

pub fn state_of(job: &Job) -> JobState {
    JobState::try_from(job.state).unwrap_or(JobState::Unspecified)
}

/// 1234567 -> "1.23M", 12345 -> "12.3k".
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 if seconds < 10.0 => format!("{seconds:.1}s"),
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn bytes(b: u64) -> String {
    let gib = b as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.1} GiB") } else { format!("{} MiB", b >> 20) }
}

/// "12.1/139.8 GiB": a GPU's memory in use of its total.
pub fn gpu_memory(u: &GpuUsage) -> String {
    format!("{:.1}/{}", u.memory_used_bytes as f64 / (1u64 << 30) as f64, bytes(u.memory_total_bytes))
}

/// "87%", or "-" where the GPU cannot tell (MIG instances).
pub fn gpu_utilization(u: &GpuUsage) -> String {
    u.utilization_percent.map_or_else(|| "-".to_owned(), |p| format!("{p}%"))
}

/// "12.1/139.8 GiB, 87%".
pub fn gpu_use(u: &GpuUsage) -> String {
    format!("{}, {}", gpu_memory(u), gpu_utilization(u))
}

/// "loss 0.4123 acc 0.912".
pub fn metric(p: &MetricPoint) -> String {
    let mut s = format!("loss {:.4}", p.loss);
    if let Some(a) = p.accuracy {
        s.push_str(&format!(" acc {a:.3}"));
    }
    if let Some(r2) = p.extra.get("r2") {
        s.push_str(&format!(" r2 {r2:.3}"));
    }
    s
}

/// One-paragraph summary of a finished job's result.
pub fn result(r: &JobResult) -> String {
    let mut s = format!(
        "{} steps in {}, train loss {:.4} -> {:.4}",
        r.steps,
        duration(r.elapsed_s),
        r.first_train_loss,
        r.train_loss
    );
    if r.validation_loss.is_finite() {
        s.push_str(&format!(", validation loss {:.4}", r.validation_loss));
    }
    if let Some(a) = r.validation_accuracy {
        s.push_str(&format!(", validation accuracy {a:.4}"));
    }
    if let Some(r2) = r.extra.get("validation_r2") {
        s.push_str(&format!(", validation R2 {r2:.4}"));
    }
    s.push_str(&format!(", {} samples/s", si(r.samples_per_s)));
    s
}

fn ago(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map_or_else(|| "-".into(), |t| format!("{} ago", duration(shoal_common::time::age(t).as_secs_f64())))
}

/// `shoal status` text.
pub fn job(j: &Job) -> String {
    let name = j.spec.as_ref().map_or("", |s| s.name.as_str());
    let mut out = format!("job {}  {}\n  state     {}", j.job_id, name, state_of(j).label());
    if !j.reason.is_empty() {
        out.push_str(&format!(" ({})", j.reason));
    }
    if !j.worker_id.is_empty() {
        out.push_str(&format!("\n  worker    {} (attempt {})", j.worker_id, j.attempt));
        if j.retries > 0 {
            out.push_str(&format!("\n  restarts  {} after failures", j.retries));
        }
    }
    out.push_str(&format!("\n  submitted {}", ago(j.submitted_at.as_ref())));
    if j.started_at.is_some() {
        out.push_str(&format!("\n  started   {}", ago(j.started_at.as_ref())));
    }
    if j.finished_at.is_some() {
        out.push_str(&format!("\n  finished  {}", ago(j.finished_at.as_ref())));
    }
    if let Some(p) = &j.last_train {
        out.push_str(&format!(
            "\n  progress  step {}/{} epoch {}/{}, {}, {} samples/s",
            p.step,
            p.total_steps,
            p.epoch,
            p.total_epochs,
            metric(p),
            si(p.samples_per_s)
        ));
    }
    for u in j.last_train.iter().flat_map(|p| &p.gpus) {
        out.push_str(&format!("\n  gpu {:<5} {}", u.index, gpu_use(u)));
    }
    if let Some(p) = &j.last_validation {
        out.push_str(&format!("\n  validation at step {}: {}", p.step, metric(p)));
    }
    if j.ranks.len() > 1 {
        for r in &j.ranks {
            let progress = r.last_train.as_ref().map_or_else(String::new, |p| {
                let comm = p.extra.get("comm_share").copied().unwrap_or(0.0);
                format!(", step {}, {} samples/s, {:.0}% communicating", p.step, si(p.samples_per_s), comm * 100.0)
            });
            out.push_str(&format!("\n  rank {:<3} {} ({}{progress})", r.rank, r.worker_id, r.state));
        }
    }
    if let Some(r) = &j.result {
        out.push_str(&format!("\n  result    {}", result(r)));
        if !r.checkpoint.is_empty() {
            out.push_str(&format!("\n  checkpoint {}", r.checkpoint));
        }
    }
    out
}

/// Left-aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

pub fn jobs_table(jobs: &[Job]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let progress = match (&j.result, &j.last_train) {
                (Some(r), _) => r
                    .validation_accuracy
                    .map_or_else(|| format!("val loss {:.4}", r.validation_loss), |a| format!("val acc {a:.3}")),
                (None, Some(p)) => format!("{}/{} {}", p.step, p.total_steps, metric(p)),
                _ => String::new(),
            };
            vec![
                j.job_id.clone(),
                j.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                state_of(j).label().to_owned(),
                j.worker_id.clone(),
                ago(j.submitted_at.as_ref()),
                progress,
            ]
        })
        .collect();
    table(&["JOB", "NAME", "STATE", "WORKER", "SUBMITTED", "PROGRESS"], &rows)
}

pub fn workers_table(workers: &[WorkerStatus]) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let info = w.info.clone().unwrap_or_default();
            let state = WorkerState::try_from(w.state).unwrap_or(WorkerState::Unspecified).label().to_owned();
            let gpus = if info.gpus.is_empty() {
                "-".to_owned()
            } else {
                info.gpus.iter().map(|g| g.name.clone()).collect::<Vec<_>>().join(", ")
            };
            vec![
                w.worker_id.clone(),
                info.hostname,
                if w.reason.is_empty() { state } else { format!("{state}: {}", w.reason) },
                format!("{}/{}", w.free_cpus, info.cpu_cores),
                format!("{}/{}", bytes(w.free_memory_bytes), bytes(info.memory_bytes)),
                gpus,
                w.job_ids.join(","),
                ago(w.last_seen.as_ref()),
            ]
        })
        .collect();
    table(&["WORKER", "HOST", "STATE", "CPUS FREE", "MEMORY FREE", "GPUS", "JOBS", "SEEN"], &rows)
}

/// `shoal workers`: the workers, then one row per GPU with its newest sample (memory in use of
/// the total, utilisation), or why no worker has GPUs.
pub fn workers(workers: &[WorkerStatus]) -> String {
    let mut out = workers_table(workers);
    let mut rows = Vec::new();
    for w in workers {
        for g in w.info.iter().flat_map(|i| &i.gpus) {
            // No sample: the worker has no NVML, or its session is not open.
            let (used, util) = match w.gpu_usage.iter().find(|u| u.index == g.index) {
                Some(u) => (gpu_memory(u), gpu_utilization(u)),
                None => (format!("-/{}", bytes(g.memory_bytes)), "-".to_owned()),
            };
            rows.push(vec![w.worker_id.clone(), g.index.to_string(), g.name.clone(), used, util]);
        }
    }
    if rows.is_empty() {
        let mut notes: Vec<&str> = workers
            .iter()
            .filter_map(|w| w.info.as_ref())
            .filter(|i| i.role != "param-server" && !i.gpu_note.is_empty())
            .map(|i| i.gpu_note.as_str())
            .collect();
        notes.sort_unstable();
        notes.dedup();
        out.push_str("\n\nno GPUs");
        if !notes.is_empty() {
            out.push_str(&format!(": {}", notes.join("; ")));
        }
    } else {
        out.push_str("\n\n");
        out.push_str(&table(&["WORKER", "GPU", "NAME", "MEMORY USED", "UTIL"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use shoal_common::proto::{GpuInfo, WorkerInfo};

    use super::*;

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(si(21_345.0), "21.3k");
        assert_eq!(si(950.0), "950");
        assert_eq!(duration(3.25), "3.2s");
        assert_eq!(duration(75.0), "1m15s");
        assert_eq!(duration(7300.0), "2h01m");
        assert_eq!(table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]), "A    BB\nxyz  1");
    }

    fn worker(id: &str, gpus: Vec<GpuInfo>, usage: Vec<GpuUsage>, note: &str) -> WorkerStatus {
        WorkerStatus {
            worker_id: id.into(),
            info: Some(WorkerInfo {
                hostname: "host".into(),
                cpu_cores: 8,
                gpus,
                gpu_note: note.into(),
                ..Default::default()
            }),
            state: WorkerState::Ready as i32,
            gpu_usage: usage,
            ..Default::default()
        }
    }

    /// A made-up sample: what is tested is where its numbers go.
    #[test]
    fn workers_show_each_gpu_with_its_newest_sample() {
        let gpu = |index| GpuInfo { index, name: "NVIDIA H200".into(), memory_bytes: 140 << 30, ..Default::default() };
        let sampled = GpuUsage {
            index: 0,
            memory_used_bytes: 12 << 30,
            memory_total_bytes: 140 << 30,
            utilization_percent: Some(87),
        };
        let text = workers(&[
            worker("wrk-a", vec![gpu(0), gpu(1)], vec![sampled], ""),
            worker("wrk-b", vec![], vec![], "no CUDA driver found"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("WORKER  GPU")).expect("a GPU table");
        assert_eq!(lines[header], "WORKER  GPU  NAME         MEMORY USED     UTIL");
        assert_eq!(lines[header + 1], "wrk-a   0    NVIDIA H200  12.0/140.0 GiB  87%");
        assert_eq!(lines[header + 2], "wrk-a   1    NVIDIA H200  -/140.0 GiB     -", "GPU 1 sent no sample");
        assert_eq!(lines.len(), header + 3, "a worker without GPUs has no GPU rows:\n{text}");
        assert!(!text.contains("no GPUs"), "{text}");
    }

    #[test]
    fn cpu_only_workers_say_why_there_are_no_gpus() {
        let note = "this worker was built without the `cuda` feature; training runs on CPU";
        let text = workers(&[worker("wrk-a", vec![], vec![], note), worker("wrk-b", vec![], vec![], note)]);
        assert!(text.ends_with(&format!("\n\nno GPUs: {note}")), "one note for both workers:\n{text}");
        assert!(!text.contains("MEMORY USED"), "{text}");
    }

    #[test]
    fn a_progress_point_shows_the_use_of_its_gpus() {
        let point = MetricPoint {
            step: 5,
            total_steps: 10,
            gpus: vec![GpuUsage {
                index: 3,
                memory_used_bytes: 1 << 29,
                memory_total_bytes: 80 << 30,
                utilization_percent: None,
            }],
            ..Default::default()
        };
        let text = job(&Job { job_id: "job-1".into(), last_train: Some(point), ..Default::default() });
        assert!(text.contains("\n  gpu 3     0.5/80.0 GiB, -"), "{text}");
        let cpu = job(&Job { job_id: "job-1".into(), last_train: Some(MetricPoint::default()), ..Default::default() });
        assert!(!cpu.contains("gpu"), "{cpu}");
    }
}
