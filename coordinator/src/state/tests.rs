//! The coordinator state machine driven directly: no sockets, a paused clock for liveness.

use std::time::Duration;

use shoal_common::proto::{
    CoordinatorMessage, GpuInfo, GpuUsage, Heartbeat, Hello, JobFinished, JobMetric, JobResult, JobSpec, JobState,
    MetricPoint, Outcome, RegisterRequest, RunningJob, Split, WorkerInfo, WorkerMessage, WorkerState,
    coordinator_message, job_event, worker_message,
};
use shoal_common::{WorkerId, spec, version};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Coordinator, Liveness};
use crate::error::CoordinatorError;
use crate::store::Store;

fn liveness() -> Liveness {
    Liveness {
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_timeout: Duration::from_secs(5),
        reconnect_grace: Duration::from_secs(3),
        restart_grace: Duration::from_secs(3),
    }
}

/// A small job that fails for good on its first infrastructure failure (most tests look at the
/// failure itself; restarts have their own test).
fn job_spec(name: &str, cpus: i64) -> JobSpec {
    let mut spec = retrying_spec(name, cpus);
    if let Some(t) = spec.training.as_mut() {
        t.max_retries = Some(0);
    }
    spec
}

fn retrying_spec(name: &str, cpus: i64) -> JobSpec {
    spec::parse_toml(&format!(
        "name = \"{name}\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 8 }}]\n[dataset]\nkind = \"digits\"\n\
         [training]\nbatch_size = 16\nsteps = 10\n[resources]\ncpus = {cpus}\n"
    ))
    .expect("spec")
}

fn info(cpus: u32) -> WorkerInfo {
    WorkerInfo {
        hostname: "host-a".into(),
        cpu_cores: cpus,
        memory_bytes: 8 << 30,
        version: version::VERSION.into(),
        protocol: version::PROTOCOL,
        ..Default::default()
    }
}

type Rx = mpsc::UnboundedReceiver<Result<CoordinatorMessage, tonic::Status>>;

/// Registers a worker and opens its session.
fn connect(c: &Coordinator, cpus: u32, id: &str, running: Vec<RunningJob>) -> (WorkerId, u64, Rx) {
    let resp = c.lock().register(RegisterRequest { info: Some(info(cpus)), worker_id: id.into() }).expect("register");
    let (tx, rx) = mpsc::unbounded_channel();
    let (w, epoch) = c
        .lock()
        .open_session(Hello { worker_id: resp.worker_id, running, draining: false, boot_id: 7 }, tx)
        .expect("session");
    (w, epoch, rx)
}

/// The next message to the worker, acknowledgements aside.
fn next_kind(rx: &mut Rx) -> Option<coordinator_message::Kind> {
    loop {
        match rx.try_recv().ok().and_then(|m| m.ok()).and_then(|m| m.kind) {
            Some(coordinator_message::Kind::Ack(_)) => continue,
            other => return other,
        }
    }
}

/// Acknowledgements sent to the worker so far (seq of each).
fn acks(rx: &mut Rx) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while let Ok(Ok(m)) = rx.try_recv() {
        if let Some(coordinator_message::Kind::Ack(a)) = m.kind {
            out.push((a.boot_id, a.seq));
        }
    }
    out
}

fn assigned(rx: &mut Rx) -> (String, u32, String) {
    match next_kind(rx) {
        Some(coordinator_message::Kind::Assign(a)) => (a.job_id, a.attempt, a.resume_from),
        other => panic!("expected an assignment, got {other:?}"),
    }
}

fn send(c: &Coordinator, w: &WorkerId, epoch: u64, kind: worker_message::Kind) {
    c.lock().on_message(w, epoch, WorkerMessage { kind: Some(kind), seq: 0 });
}

fn metric_steps(c: &Coordinator, job: &str) -> Vec<u64> {
    let sub = c.lock().subscribe(job, 0).expect("subscribe");
    sub.history
        .iter()
        .filter_map(|e| match &e.kind {
            Some(job_event::Kind::Metric(m)) => Some(m.step),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn resent_reports_are_applied_once_per_worker_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let c = Coordinator::new(Store::open(&path).expect("store"), liveness()).expect("coordinator");
    let job = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
    let (w, epoch, mut rx) = connect(&c, 4, "", vec![]);
    assert_eq!(acks(&mut rx), vec![(7, 0)], "a new process starts from nothing");
    let report = |seq: u64, step: u64| WorkerMessage {
        kind: Some(worker_message::Kind::Metric(JobMetric {
            job_id: job.clone(),
            attempt: 1,
            point: Some(MetricPoint { step, split: Split::Train as i32, ..Default::default() }),
        })),
        seq,
    };
    c.lock().on_message(&w, epoch, report(1, 10));
    c.lock().on_message(&w, epoch, report(2, 20));
    c.lock().on_message(
        &w,
        epoch,
        WorkerMessage { kind: Some(worker_message::Kind::Heartbeat(Heartbeat::default())), seq: 0 },
    );
    assert_eq!(acks(&mut rx), vec![(7, 2)], "heartbeats are answered with what is stored");

    // The session broke; the worker did not see the acknowledgement and resends both, then more.
    let running = vec![RunningJob { job_id: job.clone(), attempt: 1 }];
    let (w, epoch, mut rx) = connect(&c, 4, w.as_str(), running.clone());
    assert_eq!(acks(&mut rx), vec![(7, 2)]);
    for (seq, step) in [(1, 10), (2, 20), (3, 30)] {
        c.lock().on_message(&w, epoch, report(seq, step));
    }
    assert_eq!(metric_steps(&c, &job), vec![10, 20, 30], "each report applied once");

    // What was applied survives a coordinator restart (stored with the report's effects).
    drop(c);
    let c = Coordinator::new(Store::open(&path).expect("store"), liveness()).expect("restarted");
    let (w, epoch, mut rx) = connect(&c, 4, w.as_str(), running.clone());
    assert_eq!(acks(&mut rx), vec![(7, 3)]);
    c.lock().on_message(&w, epoch, report(3, 30));
    assert_eq!(metric_steps(&c, &job), vec![10, 20, 30]);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (w, epoch) = c
        .lock()
        .open_session(Hello { worker_id: w.to_string(), running: running.clone(), draining: false, boot_id: 8 }, tx)
        .expect("session");
    assert_eq!(acks(&mut rx), vec![(8, 0)], "a restarted worker process counts from the start");
    c.lock().on_message(&w, epoch, report(1, 40));
    assert_eq!(metric_steps(&c, &job), vec![10, 20, 30, 40]);
}

fn finish(c: &Coordinator, w: &WorkerId, epoch: u64, job: &str, attempt: u32, outcome: Outcome, checkpoint: &str) {
    send(
        c,
        w,
        epoch,
        worker_message::Kind::Finished(JobFinished {
            job_id: job.into(),
            attempt,
            outcome: outcome as i32,
            error: if outcome == Outcome::Failed { "boom".into() } else { String::new() },
            result: Some(JobResult { validation_accuracy: Some(0.95), ..Default::default() }),
            checkpoint: checkpoint.into(),
            step: 7,
            retryable: false,
        }),
    );
}

fn state(c: &Coordinator, job: &str) -> JobState {
    JobState::try_from(c.lock().get(job).expect("job").state).expect("state")
}

fn coordinator() -> Coordinator {
    Coordinator::new(Store::in_memory().expect("store"), liveness()).expect("coordinator")
}

#[tokio::test(start_paused = true)]
async fn a_job_runs_to_success_with_its_history() {
    let c = coordinator();
    let job = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
    assert_eq!(state(&c, &job), JobState::Queued);
    assert!(c.lock().get(&job).expect("job").reason.contains("waiting for a worker"));
    let (w, epoch, mut rx) = connect(&c, 4, "", vec![]);
    let (assigned_job, attempt, _) = assigned(&mut rx);
    assert_eq!((assigned_job.as_str(), attempt), (job.as_str(), 1));
    assert_eq!(state(&c, &job), JobState::Running);

    let point = MetricPoint { step: 5, split: Split::Train as i32, loss: 1.5, ..Default::default() };
    send(
        &c,
        &w,
        epoch,
        worker_message::Kind::Metric(JobMetric { job_id: job.clone(), attempt: 1, point: Some(point) }),
    );
    finish(&c, &w, epoch, &job, 1, Outcome::Succeeded, "/ckpt");
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Succeeded as i32);
    assert_eq!(view.last_train.expect("metric").loss, 1.5);
    assert_eq!(view.result.expect("result").validation_accuracy, Some(0.95));

    let sub = c.lock().subscribe(&job, 0).expect("subscribe");
    assert!(sub.finished);
    let states: Vec<i32> = sub
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            Some(job_event::Kind::State(s)) => Some(s.state),
            _ => None,
        })
        .collect();
    assert_eq!(states, vec![JobState::Queued as i32, JobState::Running as i32, JobState::Succeeded as i32]);
    assert!(sub.history.iter().any(|e| matches!(&e.kind, Some(job_event::Kind::Metric(m)) if m.step == 5)));
    let seqs: Vec<u64> = sub.history.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gap-free sequence numbers");
}

#[tokio::test(start_paused = true)]
async fn invalid_specs_and_unknown_ids_are_refused() {
    let c = coordinator();
    let mut bad = job_spec("x", 1);
    bad.training.as_mut().expect("training").batch_size = -1;
    bad.model.as_mut().expect("model").layers[0].width = 0;
    match c.lock().submit(Some(bad)) {
        Err(CoordinatorError::InvalidSpec(fields)) => {
            let paths: Vec<&str> = fields.iter().map(|f| f.path.as_str()).collect();
            assert_eq!(paths, vec!["training.batch_size", "model.layers[0].width"]);
        }
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
    assert!(matches!(c.lock().submit(None), Err(CoordinatorError::InvalidRequest { .. })));
    assert!(matches!(c.lock().get("job-nope"), Err(CoordinatorError::JobNotFound { .. })));
    assert!(matches!(c.lock().cancel("job-nope", ""), Err(CoordinatorError::JobNotFound { .. })));
}

#[tokio::test(start_paused = true)]
async fn incompatible_workers_are_refused() {
    let c = coordinator();
    let mut old = info(2);
    old.version = "0.0.1".into();
    let err = c.lock().register(RegisterRequest { info: Some(old), worker_id: String::new() }).expect_err("refused");
    assert!(matches!(err, CoordinatorError::Incompatible { .. }));
    assert!(err.to_string().contains("version `0.0.1` is not compatible"), "{err}");
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = c
        .lock()
        .open_session(Hello { worker_id: "wrk-unknown".into(), ..Default::default() }, tx)
        .expect_err("unknown");
    assert!(matches!(err, CoordinatorError::WorkerNotFound { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_disconnected_worker_is_lost_after_the_grace_and_its_job_fails() {
    let c = coordinator();
    let job = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
    let (w, epoch, mut rx) = connect(&c, 2, "", vec![]);
    assigned(&mut rx);
    c.lock().close_session(&w, epoch, "the worker closed it");
    c.lock().tick(Instant::now());
    assert_eq!(state(&c, &job), JobState::Running, "still within the reconnect grace");
    tokio::time::advance(Duration::from_secs(4)).await;
    c.lock().tick(Instant::now());
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Failed as i32);
    assert!(view.reason.contains(&format!("worker {w} (host-a) lost")), "{}", view.reason);
    assert!(view.reason.contains("did not reconnect within 3s"), "{}", view.reason);
    let workers = c.lock().list_workers();
    assert_eq!(workers[0].state, WorkerState::Lost as i32);
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_is_lost_but_heartbeats_keep_it_alive() {
    let c = coordinator();
    let job = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
    let (w, epoch, mut rx) = connect(&c, 2, "", vec![]);
    assigned(&mut rx);
    for _ in 0..8 {
        tokio::time::advance(Duration::from_secs(1)).await;
        send(&c, &w, epoch, worker_message::Kind::Heartbeat(Heartbeat::default()));
        c.lock().tick(Instant::now());
    }
    assert_eq!(state(&c, &job), JobState::Running);
    tokio::time::advance(Duration::from_secs(6)).await;
    c.lock().tick(Instant::now());
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Failed as i32);
    assert!(view.reason.contains("no heartbeat for 6s"), "{}", view.reason);
    assert!(next_kind(&mut rx).is_none(), "the lost worker's session is closed");
}

#[tokio::test(start_paused = true)]
async fn the_newest_heartbeat_gpu_sample_is_listed_until_the_session_ends() {
    let c = coordinator();
    let gpu = |index| GpuInfo { index, name: "gpu".into(), memory_bytes: 80 << 30, ..Default::default() };
    let info = WorkerInfo { gpus: vec![gpu(0), gpu(1)], ..info(4) };
    let resp = c.lock().register(RegisterRequest { info: Some(info), worker_id: String::new() }).expect("register");
    let (tx, _rx) = mpsc::unbounded_channel();
    let hello = Hello { worker_id: resp.worker_id, running: vec![], draining: false, boot_id: 7 };
    let (w, epoch) = c.lock().open_session(hello, tx).expect("session");
    let usage = |index, used_gib: u64, busy| GpuUsage {
        index,
        memory_used_bytes: used_gib << 30,
        memory_total_bytes: 80 << 30,
        utilization_percent: busy,
    };
    let listed = |c: &Coordinator| c.lock().list_workers().remove(0).gpu_usage;
    assert!(listed(&c).is_empty(), "nothing sampled before the first heartbeat");

    let first = vec![usage(0, 10, Some(50)), usage(1, 1, None)];
    send(&c, &w, epoch, worker_message::Kind::Heartbeat(Heartbeat { gpus: first.clone(), ..Default::default() }));
    assert_eq!(listed(&c), first);
    // The next sample replaces the previous one; a GPU the worker never registered is dropped.
    let second = vec![usage(0, 30, Some(99)), usage(7, 1, Some(1))];
    send(&c, &w, epoch, worker_message::Kind::Heartbeat(Heartbeat { gpus: second, ..Default::default() }));
    assert_eq!(listed(&c), vec![usage(0, 30, Some(99))]);

    c.lock().close_session(&w, epoch, "test");
    assert!(listed(&c).is_empty(), "a disconnected worker's sample is stale");
}

#[tokio::test(start_paused = true)]
async fn cancelling_frees_the_worker_once_it_confirms() {
    let c = coordinator();
    let first = c.lock().submit(Some(job_spec("a", 2))).expect("submit").job_id;
    let second = c.lock().submit(Some(job_spec("b", 2))).expect("submit").job_id;
    let queued = c.lock().submit(Some(job_spec("c", 1))).expect("submit").job_id;
    let (w, epoch, mut rx) = connect(&c, 2, "", vec![]);
    assigned(&mut rx);
    assert_eq!(state(&c, &second), JobState::Queued);
    assert_eq!(c.lock().cancel(&queued, "no longer needed").expect("cancel").state, JobState::Cancelled as i32);
    let view = c.lock().cancel(&first, "").expect("cancel");
    assert_eq!(view.state, JobState::Cancelled as i32);
    assert!(matches!(next_kind(&mut rx), Some(coordinator_message::Kind::Cancel(k)) if k.job_id == first));
    assert_eq!(state(&c, &second), JobState::Queued, "the worker still holds the cancelled job");
    finish(&c, &w, epoch, &first, 1, Outcome::Cancelled, "");
    assert_eq!(state(&c, &first), JobState::Cancelled);
    assert_eq!(assigned(&mut rx).0, second);
    assert!(matches!(c.lock().cancel(&first, ""), Err(CoordinatorError::AlreadyFinished { .. })));
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_job_resumes_from_its_checkpoint() {
    let c = coordinator();
    let job = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
    let (w, epoch, mut rx) = connect(&c, 1, "", vec![]);
    assigned(&mut rx);
    send(&c, &w, epoch, worker_message::Kind::Heartbeat(Heartbeat { running: vec![], draining: true, gpus: vec![] }));
    finish(&c, &w, epoch, &job, 1, Outcome::Interrupted, "/ckpt/step-7");
    assert_eq!(state(&c, &job), JobState::Queued);
    assert!(next_kind(&mut rx).is_none(), "a draining worker gets nothing new");
    let (_, _, mut rx2) = connect(&c, 1, "", vec![]);
    let (id, attempt, resume) = assigned(&mut rx2);
    assert_eq!((id.as_str(), attempt, resume.as_str()), (job.as_str(), 2, "/ckpt/step-7"));
    // A late report from the first attempt is ignored.
    finish(&c, &w, epoch, &job, 1, Outcome::Failed, "");
    assert_eq!(state(&c, &job), JobState::Running);
}

#[tokio::test(start_paused = true)]
async fn failures_carry_the_workers_reason() {
    let c = coordinator();
    let job = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
    let (w, epoch, mut rx) = connect(&c, 1, "", vec![]);
    assigned(&mut rx);
    finish(&c, &w, epoch, &job, 1, Outcome::Failed, "");
    let view = c.lock().get(&job).expect("job");
    assert_eq!((view.state, view.reason.as_str()), (JobState::Failed as i32, "boom"));
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_jobs_and_reconnecting_workers_keep_their_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let (running, queued, worker) = {
        let c = Coordinator::new(Store::open(&path).expect("store"), liveness()).expect("coordinator");
        let running = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
        let (w, epoch, mut rx) = connect(&c, 1, "", vec![]);
        assigned(&mut rx);
        let point = MetricPoint { step: 3, split: Split::Train as i32, loss: 2.0, ..Default::default() };
        send(
            &c,
            &w,
            epoch,
            worker_message::Kind::Metric(JobMetric { job_id: running.clone(), attempt: 1, point: Some(point) }),
        );
        let queued = c.lock().submit(Some(job_spec("b", 1))).expect("submit").job_id;
        (running, queued, w)
    };
    let c = Coordinator::new(Store::open(&path).expect("store"), liveness()).expect("restarted");
    assert_eq!(state(&c, &running), JobState::Running);
    assert_eq!(state(&c, &queued), JobState::Queued);
    assert_eq!(c.lock().get(&running).expect("job").last_train.expect("metric").step, 3);
    let (_, epoch, mut rx) = connect(&c, 1, worker.as_str(), vec![RunningJob { job_id: running.clone(), attempt: 1 }]);
    assert!(next_kind(&mut rx).is_none(), "the worker is full with its surviving job");
    finish(&c, &worker, epoch, &running, 1, Outcome::Succeeded, "");
    assert_eq!(state(&c, &running), JobState::Succeeded);
    assert_eq!(assigned(&mut rx).0, queued, "the queued job runs after the restart");
    assert_eq!(c.integrity_check().expect("check"), "ok");
}

#[tokio::test(start_paused = true)]
async fn a_reconnecting_worker_is_fenced_from_jobs_it_lost() {
    let c = coordinator();
    let job = c.lock().submit(Some(job_spec("a", 1))).expect("submit").job_id;
    let (w, epoch, mut rx) = connect(&c, 1, "", vec![]);
    assigned(&mut rx);
    c.lock().close_session(&w, epoch, "network");
    tokio::time::advance(Duration::from_secs(4)).await;
    c.lock().tick(Instant::now());
    assert_eq!(state(&c, &job), JobState::Failed);
    let (_, _, mut rx) = connect(&c, 1, w.as_str(), vec![RunningJob { job_id: job.clone(), attempt: 1 }]);
    assert!(matches!(next_kind(&mut rx), Some(coordinator_message::Kind::Cancel(k)) if k.job_id == job));
}

fn gang_spec(ranks: i64) -> JobSpec {
    let mut s = job_spec("gang", 1);
    s.parallelism = Some(shoal_common::proto::ParallelismSpec { data: Some(ranks), ..Default::default() });
    s
}

fn assignment(rx: &mut Rx) -> shoal_common::proto::Assignment {
    match next_kind(rx) {
        Some(coordinator_message::Kind::Assign(a)) => a,
        other => panic!("expected an assignment, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_gang_starts_on_distinct_workers_with_its_peers_and_succeeds_when_every_rank_does() {
    let c = coordinator();
    let job = c.lock().submit(Some(gang_spec(2))).expect("submit").job_id;
    let (w0, e0, mut rx0) = connect(&c, 1, "", vec![]);
    assert!(next_kind(&mut rx0).is_none(), "one worker is not enough for two ranks");
    assert!(
        c.lock().get(&job).expect("job").reason.contains("2 workers"),
        "{}",
        c.lock().get(&job).expect("job").reason
    );
    let (w1, e1, mut rx1) = connect(&c, 1, "", vec![]);
    let (a0, a1) = (assignment(&mut rx0), assignment(&mut rx1));
    let mut ranks = [a0.rank, a1.rank];
    ranks.sort();
    assert_eq!(ranks, [0, 1]);
    assert_eq!((a0.world_size, a0.backend.as_str()), (2, "ring"));
    assert_eq!(a0.peers.len(), 2);
    assert_eq!(a0.peers, a1.peers, "every rank sees the same peer list");
    // This coordinator exports no spans: it keeps none and hands out no trace context.
    assert!(a0.trace_parent.is_empty() && a1.trace_parent.is_empty());
    assert_eq!(c.lock().traces.len(), 0);
    let (r0, r0e) = if a0.rank == 0 { (&w0, e0) } else { (&w1, e1) };
    let (r1, r1e) = if a0.rank == 0 { (&w1, e1) } else { (&w0, e0) };
    finish(&c, r1, r1e, &job, 1, Outcome::Succeeded, "");
    assert_eq!(state(&c, &job), JobState::Running, "rank 0 has not finished yet");
    finish(&c, r0, r0e, &job, 1, Outcome::Succeeded, "");
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Succeeded as i32);
    assert_eq!(view.ranks.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), vec!["succeeded", "succeeded"]);
}

#[tokio::test(start_paused = true)]
async fn one_failed_rank_fails_the_gang_and_stops_its_siblings() {
    let c = coordinator();
    let job = c.lock().submit(Some(gang_spec(2))).expect("submit").job_id;
    let (w0, e0, mut rx0) = connect(&c, 1, "", vec![]);
    let (w1, _, mut rx1) = connect(&c, 1, "", vec![]);
    let (a0, _) = (assignment(&mut rx0), assignment(&mut rx1));
    finish(&c, &w0, e0, &job, 1, Outcome::Failed, "");
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Failed as i32);
    assert!(view.reason.starts_with(&format!("rank {} on {w0}", a0.rank)), "{}", view.reason);
    assert!(matches!(next_kind(&mut rx1), Some(coordinator_message::Kind::Cancel(k)) if k.job_id == job));
    // The sibling's reservation holds until it confirms.
    let next = c.lock().submit(Some(job_spec("after", 1))).expect("submit").job_id;
    assert_eq!(state(&c, &next), JobState::Running, "w0 is free again");
    let _ = (w1, next);
}

#[tokio::test(start_paused = true)]
async fn rendezvous_values_reach_the_other_ranks() {
    let c = coordinator();
    let job = c.lock().submit(Some(gang_spec(3))).expect("submit").job_id;
    let mut conns: Vec<(WorkerId, u64, Rx)> = (0..3).map(|_| connect(&c, 1, "", vec![])).collect();
    let ranks: Vec<u32> = conns.iter_mut().map(|(_, _, rx)| assignment(rx).rank).collect();
    let zero = ranks.iter().position(|r| *r == 0).expect("rank 0");
    let (w, e) = (conns[zero].0.clone(), conns[zero].1);
    send(
        &c,
        &w,
        e,
        worker_message::Kind::Publish(shoal_common::proto::RendezvousPublish {
            job_id: job.clone(),
            attempt: 1,
            key: "nccl-unique-id".into(),
            value: vec![7; 128],
        }),
    );
    for (i, (_, _, rx)) in conns.iter_mut().enumerate() {
        let got = next_kind(rx);
        if i == zero {
            assert!(got.is_none(), "the publisher gets nothing back");
        } else {
            assert!(
                matches!(got, Some(coordinator_message::Kind::Rendezvous(v)) if v.value == vec![7; 128] && v.from_rank == 0)
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_worker_fails_its_gang_naming_the_rank() {
    let c = coordinator();
    let job = c.lock().submit(Some(gang_spec(2))).expect("submit").job_id;
    let (w0, e0, mut rx0) = connect(&c, 1, "", vec![]);
    let (_w1, _, mut rx1) = connect(&c, 1, "", vec![]);
    let a0 = assignment(&mut rx0);
    assignment(&mut rx1);
    c.lock().close_session(&w0, e0, "the worker closed it");
    tokio::time::advance(Duration::from_secs(4)).await;
    c.lock().tick(Instant::now());
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Failed as i32);
    assert!(view.reason.starts_with(&format!("rank {} on worker {w0} (host-a) lost", a0.rank)), "{}", view.reason);
    assert!(matches!(next_kind(&mut rx1), Some(coordinator_message::Kind::Cancel(_))));
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_gang_requeues_from_rank_zeros_checkpoint_once_every_rank_stopped() {
    let c = coordinator();
    let job = c.lock().submit(Some(gang_spec(2))).expect("submit").job_id;
    let (w0, e0, mut rx0) = connect(&c, 1, "", vec![]);
    let (w1, e1, mut rx1) = connect(&c, 1, "", vec![]);
    let a0 = assignment(&mut rx0);
    assignment(&mut rx1);
    let ((z, ze), (o, oe)) = if a0.rank == 0 { ((w0, e0), (w1, e1)) } else { ((w1, e1), (w0, e0)) };
    send(
        &c,
        &z,
        ze,
        worker_message::Kind::Checkpointed(shoal_common::proto::JobCheckpointed {
            job_id: job.clone(),
            attempt: 1,
            step: 50,
            path: "/ckpt/50".into(),
        }),
    );
    for (w, e) in [(&z, ze), (&o, oe)] {
        send(&c, w, e, worker_message::Kind::Heartbeat(Heartbeat { running: vec![], draining: true, gpus: vec![] }));
    }
    finish(&c, &o, oe, &job, 1, Outcome::Interrupted, "");
    assert_eq!(state(&c, &job), JobState::Running, "rank 0 has not stopped yet");
    finish(&c, &z, ze, &job, 1, Outcome::Interrupted, "/ckpt/60");
    assert_eq!(state(&c, &job), JobState::Queued);
    let (_, _, mut rx2) = connect(&c, 1, "", vec![]);
    let (_, _, mut rx3) = connect(&c, 1, "", vec![]);
    let (a2, a3) = (assignment(&mut rx2), assignment(&mut rx3));
    assert_eq!((a2.attempt, a2.resume_from.as_str()), (2, "/ckpt/60"));
    assert_eq!(a3.resume_from, "/ckpt/60");
}

#[tokio::test(start_paused = true)]
async fn a_job_on_a_lost_worker_restarts_from_its_checkpoint_after_a_backoff() {
    let c = coordinator();
    let job = c.lock().submit(Some(retrying_spec("a", 1))).expect("submit").job_id;
    let (w1, e1, mut rx1) = connect(&c, 2, "", vec![]);
    let (_, attempt, _) = assigned(&mut rx1);
    send(
        &c,
        &w1,
        e1,
        worker_message::Kind::Checkpointed(shoal_common::proto::JobCheckpointed {
            job_id: job.clone(),
            attempt,
            step: 5,
            path: "/ckpt/step-5".into(),
        }),
    );
    // The only worker goes silent and is lost: the job waits, queued, for its backoff.
    tokio::time::advance(Duration::from_secs(6)).await;
    c.lock().tick(Instant::now());
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Queued as i32, "{}", view.reason);
    assert_eq!(view.retries, 1);
    assert!(view.reason.contains("restarting from checkpoint /ckpt/step-5 in 1s (restart 1 of 3)"), "{}", view.reason);
    let (w2, _, mut rx2) = connect(&c, 2, "", vec![]);
    assert!(next_kind(&mut rx2).is_none(), "not before the backoff passed");
    tokio::time::advance(Duration::from_secs(1)).await;
    c.lock().tick(Instant::now());
    let (id, attempt, resume_from) = assigned(&mut rx2);
    assert_eq!((id.as_str(), attempt, resume_from.as_str()), (job.as_str(), 2, "/ckpt/step-5"));
    assert_eq!(c.lock().get(&job).expect("job").worker_id, w2.to_string());
    // Stale reports of the first attempt are fenced off.
    finish(&c, &w1, e1, &job, 1, Outcome::Succeeded, "");
    assert_eq!(state(&c, &job), JobState::Running);
}

#[tokio::test(start_paused = true)]
async fn restarts_stop_at_the_budget_and_job_errors_are_not_retried() {
    let c = coordinator();
    let mut spec = retrying_spec("a", 1);
    spec.training.as_mut().expect("training").max_retries = Some(1);
    let job = c.lock().submit(Some(spec)).expect("submit").job_id;
    let (w, e, mut rx) = connect(&c, 2, "", vec![]);
    let retryable = |c: &Coordinator, w: &WorkerId, e: u64, attempt: u32, retryable: bool| {
        send(
            c,
            w,
            e,
            worker_message::Kind::Finished(JobFinished {
                job_id: job.clone(),
                attempt,
                outcome: Outcome::Failed as i32,
                error: "rank 1 left the ring".into(),
                retryable,
                ..Default::default()
            }),
        );
    };
    let (_, attempt, _) = assigned(&mut rx);
    retryable(&c, &w, e, attempt, true);
    assert_eq!(state(&c, &job), JobState::Queued);
    tokio::time::advance(Duration::from_secs(1)).await;
    c.lock().tick(Instant::now());
    let (_, attempt, _) = assigned(&mut rx);
    assert_eq!(attempt, 2);
    retryable(&c, &w, e, attempt, true);
    let view = c.lock().get(&job).expect("job");
    assert_eq!(view.state, JobState::Failed as i32);
    assert!(view.reason.ends_with("(gave up after 1 restarts)"), "{}", view.reason);

    let other = c.lock().submit(Some(retrying_spec("b", 1))).expect("submit").job_id;
    let (_, attempt, _) = assigned(&mut rx);
    send(
        &c,
        &w,
        e,
        worker_message::Kind::Finished(JobFinished {
            job_id: other.clone(),
            attempt,
            outcome: Outcome::Failed as i32,
            error: "cannot load the dataset".into(),
            ..Default::default()
        }),
    );
    assert_eq!(state(&c, &other), JobState::Failed, "a job's own error is not retried");
}

#[tokio::test(start_paused = true)]
async fn operator_quotas_refuse_jobs_and_searches_that_ask_for_more() {
    let c = coordinator();
    c.set_limits(super::Limits { max_workers_per_job: 2, max_trials_per_search: 5 });
    let text = "name = \"wide\"\n[model]\nkind = \"mlp\"\nlayers = [{ width = 8 }]\n[dataset]\nkind = \"digits\"\n\
                [training]\nbatch_size = 16\nsteps = 10\n[parallelism]\ndata = 3\n";
    match c.lock().submit(Some(spec::parse_toml(text).expect("spec"))) {
        Err(CoordinatorError::InvalidRequest { field, reason }) => {
            assert_eq!(field, "parallelism");
            assert!(reason.contains("needs 3 workers") && reason.contains("max_workers_per_job"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let search = "name = \"s\"\n[search]\nstrategy = \"random\"\nmax_trials = 6\n\
                  params = [{ name = \"optimizer.lr\", type = \"float\", low = 0.01, high = 0.1 }]\n\
                  [model]\nkind = \"mlp\"\nlayers = [{ width = 8 }]\n[dataset]\nkind = \"digits\"\n\
                  [optimizer]\nkind = \"sgd\"\nlr = 0.05\n[training]\nbatch_size = 16\nsteps = 10\n";
    match c.lock().submit(Some(spec::parse_toml(search).expect("search"))) {
        Err(CoordinatorError::InvalidRequest { field, reason }) => {
            assert_eq!(field, "search.max_trials");
            assert!(reason.contains("at most 5"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Within the quotas both are fine.
    assert!(c.lock().submit(Some(spec::parse_toml(&text.replace("data = 3", "data = 2")).expect("spec"))).is_ok());
    assert!(
        c.lock()
            .submit(Some(spec::parse_toml(&search.replace("max_trials = 6", "max_trials = 5")).expect("spec")))
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn an_evaluation_job_schedules_its_ranks_and_cannot_be_a_search() {
    let c = coordinator();
    let text = "name = \"eval\"\n[evaluate]\nartifact = \"/ckpt/step-9\"\ndata = \"/rows.csv\"\n\
                [parallelism]\ndata = 2\n[resources]\ncpus = 2\n";
    let job = c.lock().submit(Some(spec::parse_toml(text).expect("spec"))).expect("submit").job_id;
    let (_, _, mut rx0) = connect(&c, 2, "", vec![]);
    assert!(next_kind(&mut rx0).is_none(), "one worker is not enough for two ranks");
    let (_, _, mut rx1) = connect(&c, 2, "", vec![]);
    let (a0, a1) = (assignment(&mut rx0), assignment(&mut rx1));
    assert_eq!((a0.world_size, a1.world_size), (2, 2));
    assert_eq!(state(&c, &job), JobState::Running);

    let search = spec::parse_toml(&format!("{text}[search]\nstrategy = \"random\"\n")).expect("spec");
    match c.lock().submit(Some(search)) {
        Err(CoordinatorError::InvalidSpec(fields)) => {
            assert!(fields.iter().any(|f| f.path == "search" && f.reason.contains("evaluation job")), "{fields:?}");
        }
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}
