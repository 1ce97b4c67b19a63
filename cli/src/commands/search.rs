//! `shoal trials`, `shoal best` and `shoal bench search`.

use std::path::Path;
use std::process::ExitCode;

use shoal_common::proto::ListTrialsRequest;
use shoal_search::StrategyKind;
use shoal_search::sim::{self, SimOptions, SimResult};

use crate::client::Target;
use crate::error::CliError;
use crate::render;

fn value(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.4}"))
}

/// The leaderboard of a search job.
pub async fn trials(target: &Target, job: &str, json: bool) -> Result<ExitCode, CliError> {
    let mut client = target.connect().await?;
    let r = client.list_trials(target.request(ListTrialsRequest { job_id: job.into() })).await?.into_inner();
    if json {
        let rows: Vec<serde_json::Value> = r
            .trials
            .iter()
            .enumerate()
            .map(|(rank, t)| {
                serde_json::json!({
                    "rank": rank + 1, "trial": t.index, "job_id": t.job_id, "state": t.state,
                    "params": serde_json::from_str::<serde_json::Value>(&t.params).unwrap_or_default(),
                    "value": t.value, "budget_used": t.budget_used, "budget": t.budget, "reason": t.reason,
                    "parent": t.parent, "checkpoint": t.checkpoint, "elapsed_s": t.elapsed_s,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "metric": r.metric, "maximize": r.maximize, "strategy": r.strategy, "best": r.best, "trials": rows,
            }))
            .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} trials of {} ({}, {} {})",
        r.trials.len(),
        r.max_trials,
        r.strategy,
        if r.maximize { "maximizing" } else { "minimizing" },
        r.metric
    );
    let rows: Vec<Vec<String>> = r
        .trials
        .iter()
        .enumerate()
        .map(|(rank, t)| {
            vec![
                (rank + 1).to_string(),
                t.index.to_string(),
                t.state.clone(),
                value(t.value),
                format!("{:.0}/{:.0} {}", t.budget_used, t.budget, r.budget_unit),
                render::duration(t.elapsed_s),
                t.description.clone(),
                t.parent.map_or_else(String::new, |p| format!("from {p}; ")) + &t.reason,
            ]
        })
        .collect();
    println!(
        "{}",
        render::table(
            &["RANK", "TRIAL", "STATE", &r.metric.to_uppercase(), "BUDGET", "TIME", "PARAMETERS", "NOTE"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// The best configuration as a job file (full fidelity), and where its checkpoint is.
pub async fn best(target: &Target, job: &str, output: Option<&Path>) -> Result<ExitCode, CliError> {
    let mut client = target.connect().await?;
    let r = client.list_trials(target.request(ListTrialsRequest { job_id: job.into() })).await?.into_inner();
    let (Some(best), Some(spec)) = (r.best, r.best_spec.as_ref()) else {
        return Err(CliError { code: 1, message: format!("search {job} has no completed trial yet") });
    };
    let trial = r.trials.iter().find(|t| t.index == best);
    let mut text = format!(
        "# Best configuration of search {job}: trial {best}, {} {}\n",
        r.metric,
        value(trial.and_then(|t| t.value))
    );
    if let Some(t) = trial.filter(|t| !t.checkpoint.is_empty()) {
        text.push_str(&format!("# Its checkpoint: {}\n", t.checkpoint));
    }
    text.push_str(&shoal_common::spec::to_toml(spec));
    match output {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| CliError::unavailable(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {} (trial {best})", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs every strategy with and without ASHA and curve stopping on the simulated objective.
pub fn bench(
    strategies: &[String],
    seeds: u64,
    workers: usize,
    trials: usize,
    budget: f64,
) -> Result<ExitCode, CliError> {
    let mut kinds = Vec::new();
    for s in strategies {
        kinds.push(StrategyKind::parse(s).ok_or_else(|| {
            CliError::usage(format!("--strategies `{s}`: expected grid, random, tpe, evolution or reinforce"))
        })?);
    }
    if seeds == 0 || workers == 0 || trials == 0 || budget.is_nan() || budget < 3.0 {
        return Err(CliError::usage("--seeds, --workers and --trials must be > 0 and --budget >= 3"));
    }
    let variants = [(false, false), (true, false), (false, true), (true, true)];
    let mut results: Vec<SimResult> = Vec::new();
    eprintln!(
        "simulating {} strategies x 4 variants x {seeds} seeds ({trials} trials, {workers} workers each)",
        kinds.len()
    );
    for &kind in &kinds {
        for (asha, curve) in variants {
            for seed in 0..seeds {
                let o = SimOptions { workers, max_trials: trials, max_budget: budget, asha, curve };
                results.push(sim::run(kind, seed, &o));
            }
        }
    }
    // "Within 1% of the best value": of the best any run found on the same seed's objective.
    let mut target = std::collections::HashMap::new();
    for r in &results {
        let t = target.entry(r.seed).or_insert(f64::NEG_INFINITY);
        *t = f64::max(*t, r.best);
    }
    for r in &mut results {
        let goal = 0.99 * target[&r.seed];
        let hit = r.trace.iter().find(|p| p.2 >= goal);
        r.trials_to_1pct = hit.map(|p| p.0);
        r.time_to_1pct_s = hit.map(|p| p.1);
        let mut line = serde_json::to_value(&*r).unwrap_or_default();
        if let Some(obj) = line.as_object_mut() {
            obj.insert("kind".into(), "run".into());
            obj.insert("target".into(), goal.into());
            // Best value after every ended trial, thinned to at most 40 points.
            let step = (r.trace.len() / 40).max(1);
            let trace: Vec<_> = r.trace.iter().step_by(step).collect();
            obj.insert("trace".into(), serde_json::json!(trace));
        }
        println!("{line}");
    }
    // Summaries: means over seeds, and ratios against random search without early stopping on the
    // same seeds (below 1 = fewer trials / less time to get within 1% of the optimum).
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    let pick = |k: &str, a: bool, c: bool| -> Vec<&SimResult> {
        results.iter().filter(|r| r.strategy == k && r.asha == a && r.curve_stopping == c).collect()
    };
    // A search that never got within 1% counts with its whole budget.
    let trials_to = |r: &SimResult| r.trials_to_1pct.map_or(r.trials as f64, |t| t as f64);
    let time_to = |r: &SimResult| r.time_to_1pct_s.unwrap_or(r.sim_time_s);
    let baseline = pick("random", false, false);
    let base_trials = mean(&baseline.iter().map(|r| trials_to(r)).collect::<Vec<_>>());
    let base_time = mean(&baseline.iter().map(|r| time_to(r)).collect::<Vec<_>>());
    for &kind in &kinds {
        for (asha, curve) in variants {
            let runs = pick(kind.name(), asha, curve);
            let t = mean(&runs.iter().map(|r| trials_to(r)).collect::<Vec<_>>());
            let s = mean(&runs.iter().map(|r| time_to(r)).collect::<Vec<_>>());
            let line = serde_json::json!({
                "kind": "summary",
                "strategy": kind.name(),
                "asha": asha,
                "curve_stopping": curve,
                "seeds": seeds,
                "workers": workers,
                "best_mean": mean(&runs.iter().map(|r| r.best).collect::<Vec<_>>()),
                "reached_1pct": runs.iter().filter(|r| r.trials_to_1pct.is_some()).count(),
                "trials_to_1pct_mean": t,
                "time_to_1pct_mean_s": s,
                "utilization_mean": mean(&runs.iter().map(|r| r.utilization).collect::<Vec<_>>()),
                "trials_vs_random": if baseline.is_empty() { f64::NAN } else { t / base_trials },
                "time_vs_random": if baseline.is_empty() { f64::NAN } else { s / base_time },
            });
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
