//! A search's page (`/jobs/ID` of a search job): its leaderboard, a parallel-coordinates plot of
//! every trial's parameters against the metric, the metric of each trial over the search's time,
//! and every trial's validation curve against its budget with the ASHA rungs and where each
//! stopped trial stopped. The leaderboard and the plot are drawn here; the two time charts by the
//! page's script from the same data, which `/api/jobs/ID/search` sends again every few seconds.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;
use shoal_common::proto::{Job, ListTrialsResponse};
use shoal_search::Trial;

use super::html::{self, Nav, escape};
use super::job::embedded_json;
use crate::state::SearchCurves;

/// One trial as the script draws it.
#[derive(Debug, Serialize)]
struct TrialLine {
    index: usize,
    job_id: String,
    state: &'static str,
    value: Option<f64>,
    started_s: f64,
    finished_s: Option<f64>,
    /// (budget used, metric) of each validation.
    curve: Vec<(f64, f64)>,
}

/// What the search's charts draw.
#[derive(Debug, Serialize)]
pub struct SearchData {
    metric: String,
    maximize: bool,
    budget_unit: String,
    rungs: Vec<f64>,
    trials: Vec<TrialLine>,
}

/// What the page opens with and each refresh carries.
#[derive(Debug, Serialize)]
pub struct SearchSnapshot {
    pub terminal: bool,
    pub facts: String,
    pub leaderboard: String,
    pub parallel: String,
    pub data: SearchData,
}

impl SearchSnapshot {
    pub fn of(job: &Job, trials: &ListTrialsResponse, curves: &SearchCurves) -> Self {
        let data = SearchData {
            metric: trials.metric.clone(),
            maximize: trials.maximize,
            budget_unit: trials.budget_unit.clone(),
            rungs: curves.rungs.clone(),
            trials: curves
                .trials
                .iter()
                .map(|t| TrialLine {
                    index: t.index,
                    job_id: t.job_id.clone(),
                    state: t.state.name(),
                    value: t.value,
                    started_s: t.started_s,
                    finished_s: t.finished_s,
                    curve: t.curve.clone(),
                })
                .collect(),
        };
        Self {
            terminal: job.state().is_terminal(),
            facts: super::job::facts(job),
            leaderboard: leaderboard(trials),
            parallel: parallel(&curves.trials, &trials.metric, trials.maximize),
            data,
        }
    }
}

fn leaderboard(t: &ListTrialsResponse) -> String {
    let rows: Vec<Vec<String>> = t
        .trials
        .iter()
        .enumerate()
        .map(|(place, trial)| {
            let best = t.best == Some(trial.index);
            let job = if trial.job_id.is_empty() {
                "-".into()
            } else {
                format!("<a href=\"/jobs/{0}\">{0}</a>", escape(&trial.job_id))
            };
            vec![
                format!("{}{}", place + 1, if best { " ★" } else { "" }),
                trial.index.to_string(),
                job,
                format!("<span class=\"state {0}\">{0}</span>", escape(&trial.state)),
                trial.value.map_or("-".into(), html::number),
                format!(
                    "{} of {} {}",
                    html::number(trial.budget_used),
                    html::number(trial.budget),
                    escape(&t.budget_unit)
                ),
                escape(&trial.description),
                escape(&trial.reason),
                html::duration(trial.elapsed_s),
            ]
        })
        .collect();
    let direction = if t.maximize { "higher is better" } else { "lower is better" };
    format!(
        "<p class=\"muted\">{} · {} of at most {} trials · metric <b>{}</b> ({direction})</p>{}",
        escape(&t.strategy),
        t.trials.len(),
        t.max_trials,
        escape(&t.metric),
        html::table(
            "leaderboard",
            &["#", "Trial", "Job", "State", "Value", "Budget used", "Parameters", "Why it ended", "Time"],
            &rows,
            "No trial has started."
        )
    )
}

/// One axis of the parallel-coordinates plot.
enum Axis {
    /// Numbers, on a log scale when `log`.
    Numeric { name: String, low: f64, high: f64, log: bool },
    /// Anything else, one evenly spaced position per distinct value.
    Choice { name: String, values: Vec<String> },
}

fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Axis {
    fn of(name: &str, values: &[&Value]) -> Self {
        let numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).filter(|x| x.is_finite()).collect();
        if !numbers.is_empty() && numbers.len() == values.len() {
            let low = numbers.iter().copied().fold(f64::INFINITY, f64::min);
            let high = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log = low > 0.0 && high / low >= 100.0;
            return Axis::Numeric { name: name.to_owned(), low, high, log };
        }
        let mut seen: Vec<String> = values.iter().map(|v| label(v)).collect();
        seen.sort();
        seen.dedup();
        Axis::Choice { name: name.to_owned(), values: seen }
    }

    fn name(&self) -> &str {
        match self {
            Axis::Numeric { name, .. } | Axis::Choice { name, .. } => name,
        }
    }

    /// Where `v` sits, 0 (bottom) to 1 (top).
    fn at(&self, v: &Value) -> Option<f64> {
        match self {
            Axis::Numeric { low, high, log, .. } => {
                let x = v.as_f64()?;
                let (a, b, x) = if *log { (low.ln(), high.ln(), x.ln()) } else { (*low, *high, x) };
                Some(if b > a { (x - a) / (b - a) } else { 0.5 })
            }
            Axis::Choice { values, .. } => {
                let i = values.iter().position(|s| *s == label(v))?;
                Some(if values.len() > 1 { i as f64 / (values.len() - 1) as f64 } else { 0.5 })
            }
        }
    }

    fn ends(&self) -> (String, String) {
        match self {
            Axis::Numeric { low, high, .. } => (html::number(*low), html::number(*high)),
            Axis::Choice { values, .. } => {
                (values.first().cloned().unwrap_or_default(), values.last().cloned().unwrap_or_default())
            }
        }
    }
}

/// Parallel coordinates: one axis per parameter and a last one for the metric; one line per
/// trial with a value, darker the better it scored (trials without one are left out).
fn parallel(trials: &[Trial], metric: &str, maximize: bool) -> String {
    let scored: Vec<&Trial> = trials.iter().filter(|t| t.value.is_some_and(f64::is_finite)).collect();
    if scored.is_empty() {
        return "<p class=\"muted\">No trial has a value yet.</p>".into();
    }
    let mut names: Vec<&String> = scored.iter().flat_map(|t| t.config.keys()).collect();
    names.sort();
    names.dedup();
    let metric_values: Vec<Value> = scored.iter().map(|t| Value::from(t.value.unwrap_or_default())).collect();
    let mut axes: Vec<Axis> = names
        .iter()
        .map(|n| {
            let values: Vec<&Value> = scored.iter().filter_map(|t| t.config.get(*n)).collect();
            Axis::of(n, &values)
        })
        .collect();
    axes.push(Axis::of(metric, &metric_values.iter().collect::<Vec<_>>()));
    let (height, top, bottom, side) = (320.0, 44.0, 40.0, 60.0);
    let width = (110.0 * axes.len() as f64).max(720.0);
    let span = (width - 2.0 * side) / (axes.len().max(2) - 1) as f64;
    let x = |i: usize| side + i as f64 * span;
    let y = |f: f64| top + (1.0 - f) * (height - top - bottom);
    let mut order: Vec<(usize, f64)> =
        scored.iter().enumerate().map(|(i, t)| (i, t.value.unwrap_or_default())).collect();
    order.sort_by(|a, b| if maximize { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) });
    let mut svg = format!(
        "<svg class=\"parallel\" data-chart=\"parallel\" data-lines=\"{}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"parameters against {}\">",
        scored.len(),
        escape(metric)
    );
    // Worst first, so the best lines end on top.
    for (place, (i, _)) in order.iter().enumerate() {
        let t = scored[*i];
        let shade = 0.25 + 0.75 * (place + 1) as f64 / order.len() as f64;
        let mut points = String::new();
        for (a, axis) in axes.iter().enumerate() {
            let value = if a + 1 == axes.len() { metric_values.get(*i) } else { t.config.get(axis.name()) };
            if let Some(f) = value.and_then(|v| axis.at(v)) {
                let _ = write!(points, "{:.1},{:.1} ", x(a), y(f));
            }
        }
        let _ = write!(
            svg,
            "<polyline class=\"mark\" points=\"{}\" stroke-opacity=\"{shade:.2}\"><title>trial {} · {} {}</title></polyline>",
            points.trim_end(),
            t.index,
            escape(metric),
            html::number(t.value.unwrap_or_default())
        );
    }
    for (a, axis) in axes.iter().enumerate() {
        let (low, high) = axis.ends();
        // Names alternate between two rows so that neighbours do not overlap.
        let name_y = if a % 2 == 0 { top - 30.0 } else { top - 16.0 };
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\"/>\
             <text x=\"{0:.1}\" y=\"{3:.1}\" class=\"name\"><title>{4}</title>{9}</text>\
             <text x=\"{0:.1}\" y=\"{5:.1}\">{6}</text><text x=\"{0:.1}\" y=\"{7:.1}\">{8}</text>",
            x(a),
            y(1.0),
            y(0.0),
            name_y,
            escape(axis.name()),
            y(0.0) + 16.0,
            escape(&low),
            top - 2.0,
            escape(&high),
            escape(&short(axis.name())),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A parameter's name cut to fit above its axis: its last 20 characters.
fn short(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= 20 {
        name.to_owned()
    } else {
        format!("…{}", chars[chars.len() - 19..].iter().collect::<String>())
    }
}

/// The page of a search job.
pub fn page(job: &Job, snapshot: &SearchSnapshot) -> String {
    let name = job.spec.as_ref().map_or("", |s| s.name.as_str());
    let cancel = html::cancel_button(job, "Cancel search");
    let body = format!(
        "<h1>{title} <small class=\"muted\">{id} · search</small> {cancel}</h1>\
         <section id=\"facts\">{facts}</section>\
         <h2>Leaderboard</h2><section id=\"leaderboard\">{leaderboard}</section>\
         <h2>Parameters against the metric</h2><section id=\"parallel\">{parallel}</section>\
         <div class=\"charts\">\
         <figure class=\"chart\" data-chart=\"over_time\"><figcaption>Metric of each trial over the search's time</figcaption><div class=\"plot\"></div></figure>\
         <figure class=\"chart\" data-chart=\"trial_curves\"><figcaption>Every trial's curve (dashed lines: ASHA rungs; ✕: stopped)</figcaption><div class=\"plot\"></div></figure>\
         </div>\
         <script type=\"application/json\" id=\"search\">{json}</script>",
        title = escape(if name.is_empty() { &job.job_id } else { name }),
        id = escape(&job.job_id),
        facts = snapshot.facts,
        leaderboard = snapshot.leaderboard,
        parallel = snapshot.parallel,
        json = embedded_json(&snapshot.data),
    );
    html::page(name, Nav::Jobs, &[("page", "search"), ("job", &job.job_id)], &body)
}
