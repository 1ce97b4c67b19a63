//! Architecture and hyperparameter searches through the real binaries: trials as cluster jobs on
//! the digits data, the leaderboard and the best configuration from the CLI, external-command
//! trials, weight inheritance, a coordinator restart in the middle of a search, and bad spaces.

use std::time::Duration;

use shoal_common::proto::{Job, JobState, ListTrialsRequest, SubmitJobRequest, job_event};
use shoal_tests::{
    Coordinator, code, get, job_file, shoal, start_worker, state_of, stderr, stdout, wait_terminal, watch_until,
};

const SEARCH: &str = r#"
name = "digits-search"
[search]
strategy = "tpe"
max_trials = 8
max_concurrent = 2
seed = 5
params = [
  { name = "optimizer.lr", type = "float", low = 0.005, high = 0.2, log = true },
  { name = "optimizer.kind", values = ["sgd", "adamw"] },
  { name = "model.dropout", type = "float", low = 0.0, high = 0.2 },
]
arch = { min_depth = 1, max_depth = 2, widths = [32, 64], activations = ["relu", "tanh"] }
asha = { eta = 3, min_budget = 100 }
[model]
kind = "mlp"
layers = [{ width = 64 }]
[dataset]
kind = "digits"
validation_split = 0.2
[optimizer]
kind = "sgd"
lr = 0.05
[training]
batch_size = 32
steps = 900
eval_every = 100
log_every = 100
seed = 3
"#;

/// A coordinator and two single-CPU workers in a fresh folder.
fn cluster() -> anyhow::Result<(tempfile::TempDir, Coordinator, Vec<shoal_tests::Proc>)> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let workers =
        (0..2).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    Ok((dir, coordinator, workers))
}

fn overlapping(jobs: &[Job]) -> bool {
    let span = |j: &Job| {
        let ms = |t: &Option<prost_types::Timestamp>| t.as_ref().map_or(0, shoal_common::time::timestamp_to_ms);
        (ms(&j.started_at), ms(&j.finished_at))
    };
    jobs.iter().enumerate().any(|(i, a)| {
        jobs[i + 1..].iter().any(|b| {
            let ((a0, a1), (b0, b1)) = (span(a), span(b));
            a0 < b1 && b0 < a1
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digits_search_runs_trials_side_by_side_and_its_best_config_trains_again() -> anyhow::Result<()> {
    let (dir, coordinator, _workers) = cluster()?;
    let mut client = coordinator.client().await?;
    let file = job_file(dir.path(), "search", SEARCH);
    let submitted = shoal(&coordinator.url(), &["submit", file.to_str().unwrap_or_default()]);
    assert_eq!(code(&submitted), 0, "{}", stderr(&submitted));
    let job = stdout(&submitted).trim().to_owned();
    let done = wait_terminal(&mut client, &job, Duration::from_secs(300)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.90, "best accuracy {accuracy}");

    let trials = client.list_trials(ListTrialsRequest { job_id: job.clone() }).await?.into_inner();
    assert_eq!(trials.trials.len(), 8);
    assert!(trials.trials.iter().all(|t| t.state != "running" && !t.job_id.is_empty()));
    assert_eq!(trials.trials[0].state, "completed");
    assert_eq!(trials.trials[0].value, Some(accuracy), "the leaderboard leads with the search's result");
    let mut jobs = Vec::new();
    for t in &trials.trials {
        jobs.push(get(&mut client, &t.job_id).await?);
        if t.state == "stopped" {
            assert!(t.reason.contains("ASHA"), "{}", t.reason);
            assert!(t.budget_used < t.budget && t.points > 0, "a stopped trial keeps its curve");
        }
    }
    assert!(overlapping(&jobs), "at least two trials ran at once");

    // The leaderboard and the best configuration from the CLI.
    let board = shoal(&coordinator.url(), &["trials", &job]);
    assert_eq!(code(&board), 0, "{}", stderr(&board));
    assert!(stdout(&board).contains("RANK") && stdout(&board).contains("completed"), "{}", stdout(&board));
    let best_file = dir.path().join("best.toml");
    let best = shoal(&coordinator.url(), &["best", &job, "-o", best_file.to_str().unwrap_or_default()]);
    assert_eq!(code(&best), 0, "{}", stderr(&best));
    let text = std::fs::read_to_string(&best_file)?;
    assert!(text.contains(&trials.trials[0].checkpoint), "names the checkpoint:\n{text}");
    assert!(!text.contains("[search]"), "a plain training job:\n{text}");
    let again = shoal(&coordinator.url(), &["submit", best_file.to_str().unwrap_or_default(), "--watch"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(stdout(&again).contains("final validation accuracy"), "{}", stdout(&again));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_command_search_finishes_and_stops_bad_trials_early() -> anyhow::Result<()> {
    let (_dir, coordinator, _workers) = cluster()?;
    let mut client = coordinator.client().await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/external/quadratic-trial.sh");
    let text = format!(
        r#"
name = "external"
[command]
argv = ["{}"]
[search]
strategy = "random"
max_trials = 8
max_concurrent = 2
seed = 1
params = [
  {{ name = "trial.x", type = "float", low = -1.0, high = 1.0 }},
  {{ name = "trial.y", type = "float", low = -1.0, high = 1.0 }},
]
curve_stopping = {{ min_points = 3, min_fraction = 0.3 }}
[training]
steps = 8
"#,
        std::path::absolute(&script)?.display()
    );
    let spec = shoal_common::spec::parse_toml(&text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(120)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let trials = client.list_trials(ListTrialsRequest { job_id: job.clone() }).await?.into_inner();
    assert_eq!(trials.trials.len(), 8);
    let best = &trials.trials[0];
    let params: serde_json::Value = serde_json::from_str(&best.params)?;
    let (x, y) = (params["trial.x"].as_f64().unwrap_or(9.0), params["trial.y"].as_f64().unwrap_or(9.0));
    let expected = 1.0 - (x - 0.3f64).powi(2) - (y + 0.2f64).powi(2);
    let value = best.value.unwrap_or(0.0);
    // The script's last point: final - (final - 0.1) e^{-4.8}.
    assert!((value - (expected - (expected - 0.1) * (-4.8f64).exp())).abs() < 1e-3, "{value} vs {expected}");
    assert!(best.points >= 8, "every metric line arrived: {}", best.points);
    for t in &trials.trials {
        if t.state == "stopped" {
            assert!(t.reason.contains("learning curve"), "{}", t.reason);
            assert!(t.points < 8);
        }
    }
    // A worker ran the program with the parameters on stdin: its output line reached the log.
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolution_children_inherit_their_parents_weights() -> anyhow::Result<()> {
    let (_dir, coordinator, _workers) = cluster()?;
    let mut client = coordinator.client().await?;
    let text = SEARCH
        .replace("strategy = \"tpe\"", "strategy = \"evolution\"\ninherit = true\npopulation = 3\ntournament = 2")
        .replace("asha = { eta = 3, min_budget = 100 }\n", "")
        .replace("activations = [\"relu\", \"tanh\"]", "activations = [\"relu\"]")
        .replace("max_depth = 2, widths = [32, 64]", "max_depth = 3, widths = [16, 32, 64]")
        .replace("steps = 900", "steps = 300");
    // Architecture only: every child is a morph of its parent.
    let start = text.find("params = [").unwrap_or(0);
    let end = text[start..].find("]\n").map_or(start, |i| start + i + 2);
    let text = format!("{}{}", &text[..start], &text[end..]);
    let spec = shoal_common::spec::parse_toml(&text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(300)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let trials = client.list_trials(ListTrialsRequest { job_id: job.clone() }).await?.into_inner();
    let children: Vec<_> = trials.trials.iter().filter(|t| t.parent.is_some()).collect();
    assert!(!children.is_empty(), "evolution made children after its first population");
    let mut inherited = 0;
    for child in children {
        let events = watch_until(
            &mut client,
            &child.job_id,
            Duration::from_secs(10),
            |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if JobState::try_from(s.state).is_ok_and(JobState::is_terminal)),
        )
        .await?;
        let notice = events.iter().find_map(|e| match &e.kind {
            Some(job_event::Kind::Notice(n)) if n.message.contains("inherited from") => Some(n.message.clone()),
            _ => None,
        });
        if let Some(n) = notice {
            let parent = trials.trials.iter().find(|t| Some(t.index) == child.parent).expect("parent");
            if parent.params != child.params {
                assert!(n.contains("widen") || n.contains("insert identity"), "{n}");
            }
            inherited += 1;
        }
    }
    assert!(inherited > 0, "some child started from its parent's checkpoint");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_resumes_the_search_where_it_was() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("c.db");
    let mut first = Coordinator::start(dir.path(), &db, &["--reconnect-grace-ms", "20000"])?;
    let addr = first.addr.to_string();
    let mut client = first.client().await?;
    let _workers: Vec<_> =
        (0..2).map(|i| start_worker(dir.path(), &first.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let text = SEARCH
        .replace("max_trials = 8", "max_trials = 6")
        .replace("strategy = \"tpe\"", "strategy = \"random\"")
        .replace("asha = { eta = 3, min_budget = 100 }\n", "")
        .replace("steps = 900", "steps = 2500");
    let spec = shoal_common::spec::parse_toml(&text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    // Wait until two trials ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let before = loop {
        let t = client.list_trials(ListTrialsRequest { job_id: job.clone() }).await?.into_inner();
        if t.trials.iter().filter(|t| t.state != "running").count() >= 2 {
            break t;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no two trials ended in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let running: Vec<String> =
        before.trials.iter().filter(|t| t.state == "running").map(|t| t.job_id.clone()).collect();
    assert!(!running.is_empty(), "trials were running at the crash");
    first.proc.sigkill();
    // Down for a while: the running trials train on without a coordinator.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let second = Coordinator::start(dir.path(), &db, &["--listen", &addr, "--reconnect-grace-ms", "20000"])?;
    let mut client = second.client().await?;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(300)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let after = client.list_trials(ListTrialsRequest { job_id: job.clone() }).await?.into_inner();
    assert_eq!(after.trials.len(), 6, "the trial budget holds across the restart");
    let mut indices: Vec<u32> = after.trials.iter().map(|t| t.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..6).collect::<Vec<_>>());
    for id in &running {
        let trial = get(&mut client, id).await?;
        assert_eq!(state_of(&trial), JobState::Succeeded, "{}", trial.reason);
        assert_eq!((trial.attempt, trial.retries), (1, 0), "trial {id} ran through the outage");
    }
    for t in before.trials.iter().filter(|t| t.state != "running") {
        let same = after.trials.iter().find(|a| a.index == t.index).expect("trial kept");
        assert_eq!((&same.params, &same.state, same.value), (&t.params, &t.state, t.value), "trial {}", t.index);
    }
    let events = watch_until(
        &mut client,
        &job,
        Duration::from_secs(10),
        |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
    )
    .await?;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, Some(job_event::Kind::Notice(n)) if n.message.contains("search resumed")))
    );
    Ok(())
}

#[test]
fn invalid_search_spaces_are_refused_with_their_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = SEARCH.replace(
        "  { name = \"model.dropout\", type = \"float\", low = 0.0, high = 0.2 },",
        "  { name = \"model.dropout\", type = \"float\", low = 0.5, high = 0.2 },\n  { name = \"optimizer.kind2\", values = [] },\n  { name = \"optimizer.weight_decay\", low = 0.0, high = 0.1, log = true },",
    );
    let file = job_file(dir.path(), "bad", &bad);
    let out = shoal("http://127.0.0.1:1", &["validate", file.to_str().unwrap_or_default()]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for want in [
        "search.params[2].low: must be <= high (0.5 > 0.2)",
        "search.params[3].name: the trial template has no field `optimizer.kind2`",
        "search.params[4].low: a log scale needs low > 0, got 0",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_search_trains_stacked_cells_on_digits() -> anyhow::Result<()> {
    let (_dir, coordinator, _workers) = cluster()?;
    let mut client = coordinator.client().await?;
    let text = SEARCH
        .replace("strategy = \"tpe\"", "strategy = \"reinforce\"")
        .replace("max_trials = 8", "max_trials = 6")
        .replace(
            "arch = { min_depth = 1, max_depth = 2, widths = [32, 64], activations = [\"relu\", \"tanh\"] }",
            "arch = { cell_nodes = 2, cell_ops = [\"zero\", \"identity\", \"linear\"], min_cells = 1, max_cells = 2, cell_width = 32 }",
        )
        .replace("asha = { eta = 3, min_budget = 100 }\n", "")
        .replace("steps = 900", "steps = 400");
    let spec = shoal_common::spec::parse_toml(&text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(300)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.85, "best accuracy {accuracy}");
    let trials = client.list_trials(ListTrialsRequest { job_id: job.clone() }).await?.into_inner();
    assert_eq!(trials.trials.len(), 6);
    assert!(trials.trials.iter().all(|t| t.description.starts_with("cell=[")), "{:?}", trials.trials[0].description);
    let best = trials.best_spec.expect("best spec");
    let layers = &best.model.expect("model").layers;
    assert_eq!(layers[0].r#type, "linear");
    assert!(layers[1..].iter().all(|l| l.r#type == "cell" && l.ops.len() == 3));
    Ok(())
}
