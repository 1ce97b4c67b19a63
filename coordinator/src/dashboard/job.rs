//! A job's page (`/jobs/ID`): what it is and where it stands, its live curves (loss, accuracy,
//! learning rate, samples/s and the share of time in communication, per rank), its ranks and
//! their workers, its parameter-server shards, its checkpoints and its events. The page carries
//! its first curves (thinned on the server) and events; its script then asks
//! `/api/jobs/ID/updates?after=SEQ` each second for what came since.

use serde::Serialize;
use shoal_common::proto::{CHECKPOINT_NOTICE, Job, JobEvent, JobState, NoticeLevel, job_event};

use super::curves::{self, Curves};
use super::html::{self, Nav, escape};
use crate::metrics::kind_of;

/// Points per series the page opens with; updates add every new point.
pub const OPEN_POINTS: usize = 2000;
/// Events listed, newest first.
const EVENTS: usize = 200;

/// One event as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct EventLine {
    pub seq: u64,
    pub time: String,
    /// `state`, `info`, `warn` or `error`.
    pub level: &'static str,
    pub text: String,
}

/// The events people read (state changes and notices), oldest first; metric points are drawn.
pub fn event_lines(events: &[JobEvent]) -> Vec<EventLine> {
    let line = |e: &JobEvent, level, text| EventLine {
        seq: e.seq,
        time: e.time.as_ref().map_or(String::new(), |t| html::utc(shoal_common::time::timestamp_to_ms(t))),
        level,
        text,
    };
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(job_event::Kind::State(s)) => {
                let state = JobState::try_from(s.state).unwrap_or_default().label();
                let mut text = state.to_owned();
                if !s.worker_id.is_empty() {
                    text.push_str(&format!(" on {}", s.worker_id));
                }
                if s.attempt > 1 {
                    text.push_str(&format!(" (attempt {})", s.attempt));
                }
                if !s.reason.is_empty() {
                    text.push_str(&format!(": {}", s.reason));
                }
                Some(line(e, "state", text))
            }
            Some(job_event::Kind::Notice(n)) => {
                let level = match NoticeLevel::try_from(n.level).unwrap_or_default() {
                    NoticeLevel::Warn => "warn",
                    NoticeLevel::Error => "error",
                    _ => "info",
                };
                Some(line(e, level, n.message.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The job's checkpoints, from the notices their ranks sent: (step, path, time).
fn checkpoints(lines: &[EventLine]) -> Vec<Vec<String>> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.text.strip_prefix(CHECKPOINT_NOTICE)?;
            let (step, path) = rest.split_once(": ")?;
            Some(vec![escape(step), format!("<code>{}</code>", escape(path)), escape(&l.time)])
        })
        .collect()
}

/// The job's facts: what it is, where it runs, how it went.
pub fn facts(job: &Job) -> String {
    let spec = job.spec.clone().unwrap_or_default();
    let state = job.state();
    let mut pairs = vec![
        ("State", format!("{} {}", html::state_badge(state), escape(&job.reason))),
        ("Kind", kind_of(job.spec.as_ref()).to_owned()),
        ("Attempt", format!("{} ({} automatic retries)", job.attempt.max(1), job.retries)),
        ("Worker", if job.worker_id.is_empty() { "-".into() } else { escape(&job.worker_id) }),
        ("Submitted", html::time(job.submitted_at.as_ref())),
        ("Started", html::time(job.started_at.as_ref())),
        ("Finished", html::time(job.finished_at.as_ref())),
        ("Priority", spec.priority.to_string()),
    ];
    if state == JobState::Queued {
        pairs.push(("Queue position", job.queue_position.to_string()));
    }
    if let Some(p) = &job.last_train {
        let total = if p.total_steps > 0 { format!(" of {}", p.total_steps) } else { String::new() };
        pairs.push(("Step", format!("{}{total} (epoch {} of {})", p.step, p.epoch, p.total_epochs)));
        pairs.push(("Train loss", html::number(p.loss)));
        pairs.push(("Samples/s", html::number(p.samples_per_s)));
        if let Some(c) = p.extra.get("comm_share") {
            pairs.push(("Time in communication", format!("{:.1}% (rank 0)", c * 100.0)));
        }
    }
    if let Some(v) = &job.last_validation {
        pairs.push(("Validation loss", html::number(v.loss)));
        if let Some(a) = v.accuracy {
            pairs.push(("Validation accuracy", html::number(a)));
        }
    }
    if let Some(r) = job.result.as_ref().filter(|r| r.steps > 0) {
        pairs.push((
            "Result",
            format!(
                "{} steps in {}, {} samples/s, final train loss {}",
                r.steps,
                html::duration(r.elapsed_s),
                html::number(r.samples_per_s),
                html::number(r.train_loss)
            ),
        ));
    }
    if let Some(r) = job.result.as_ref().filter(|r| !r.checkpoint.is_empty()) {
        pairs.push(("Final checkpoint", format!("<code>{}</code>", escape(&r.checkpoint))));
    }
    html::facts(&pairs)
}

/// The ranks and their workers, with each rank's newest step, loss, throughput and share of time
/// in communication; then the parameter-server shards, if any.
pub fn ranks(job: &Job) -> String {
    let rows: Vec<Vec<String>> = job
        .ranks
        .iter()
        .map(|r| {
            let p = r.last_train.clone().unwrap_or_default();
            let comm = p.extra.get("comm_share").map_or("-".into(), |c| format!("{:.1}%", c * 100.0));
            vec![
                r.rank.to_string(),
                format!("<a href=\"/workers\">{}</a>", escape(&r.worker_id)),
                escape(&r.state),
                p.step.to_string(),
                html::number(p.loss),
                html::number(p.samples_per_s),
                comm,
            ]
        })
        .collect();
    let mut out = html::table(
        "ranks",
        &["Rank", "Worker", "State", "Step", "Loss", "Samples/s", "Communication"],
        &rows,
        "No rank has started.",
    );
    if !job.ps_shards.is_empty() {
        let shards: Vec<Vec<String>> = job
            .ps_shards
            .iter()
            .map(|s| vec![s.shard.to_string(), escape(&s.node_id), escape(&s.hostname), escape(&s.addr)])
            .collect();
        out.push_str("<h3>Parameter-server shards</h3>");
        out.push_str(&html::table("shards", &["Shard", "Server", "Host", "Address"], &shards, ""));
    }
    out
}

/// JSON inside a `<script type="application/json">`: no `</` can close the element early.
pub fn embedded_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into()).replace("</", "<\\/")
}

/// What the page opens with and each update carries.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub state: &'static str,
    pub terminal: bool,
    /// The newest event's sequence number: the next update asks for what came after it.
    pub last_seq: u64,
    pub curves: Curves,
    pub events: Vec<EventLine>,
    pub facts: String,
    pub ranks: String,
}

impl Snapshot {
    /// The job and its events after some point, with at most `max` points per series.
    pub fn of(job: &Job, events: &[JobEvent], after: u64, max: usize) -> Self {
        let state = job.state();
        Self {
            state: state.label(),
            terminal: state.is_terminal(),
            last_seq: events.last().map_or(after, |e| e.seq.max(after)),
            curves: curves::collect(events, max),
            events: event_lines(events),
            facts: facts(job),
            ranks: ranks(job),
        }
    }
}

/// The page of a job that is not a search.
pub fn page(job: &Job, events: &[JobEvent]) -> String {
    let mut snapshot = Snapshot::of(job, events, 0, OPEN_POINTS);
    // The page lists the events itself; the script only adds the ones that come later.
    let lines = &std::mem::take(&mut snapshot.events);
    let name = job.spec.as_ref().map_or("", |s| s.name.as_str());
    let cancel = html::cancel_button(job, "Cancel job");
    let charts = [
        ("loss", "Loss (train and validation)"),
        ("accuracy", "Accuracy"),
        ("lr", "Learning rate"),
        ("samples_per_s", "Samples per second"),
        ("comm_share", "Share of step time in communication (%)"),
    ]
    .iter()
    .map(|(key, title)| {
        format!("<figure class=\"chart\" data-chart=\"{key}\"><figcaption>{title}</figcaption><div class=\"plot\"></div></figure>")
    })
    .collect::<String>();
    let events_html = lines
        .iter()
        .rev()
        .take(EVENTS)
        .map(|l| format!("<li class=\"ev-{}\"><time>{}</time> {}</li>", l.level, escape(&l.time), escape(&l.text)))
        .collect::<String>();
    let body = format!(
        "<h1>{title} <small class=\"muted\">{id}</small> {cancel}</h1>\
         <section id=\"facts\">{facts}</section>\
         <h2>Curves <small id=\"points\" class=\"muted\"></small></h2><div class=\"charts\">{charts}</div>\
         <h2>Ranks</h2><section id=\"ranks\">{ranks}</section>\
         <h2>Checkpoints</h2>{checkpoints}\
         <h2>Events</h2><ol id=\"events\" class=\"events\">{events_html}</ol>\
         <script type=\"application/json\" id=\"snapshot\">{json}</script>",
        title = escape(if name.is_empty() { &job.job_id } else { name }),
        id = escape(&job.job_id),
        facts = snapshot.facts,
        ranks = snapshot.ranks,
        checkpoints =
            html::table("checkpoints", &["Step", "Path", "Written"], &checkpoints(lines), "No checkpoint yet."),
        json = embedded_json(&snapshot),
    );
    html::page(
        if name.is_empty() { &job.job_id } else { name },
        Nav::Jobs,
        &[("page", "job"), ("job", &job.job_id)],
        &body,
    )
}
