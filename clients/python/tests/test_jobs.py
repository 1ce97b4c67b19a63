"""Jobs end to end on a real coordinator and worker: submit (a TOML file, a dict), watch, get,
list, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import shoal
from shoal import job_pb2

from cluster import DIGITS_JOB, DIGITS_TOML, LONG_JOB, Cluster

WATCH_LIMIT_S = 120.0


def states(events: "list[job_pb2.JobEvent]") -> "list[int]":
    return [e.state.state for e in events if e.WhichOneof("kind") == "state"]


def test_a_job_file_trains_to_success_and_its_events_arrive(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "digits-file.toml"
    path.write_text(DIGITS_TOML)
    job_id = cluster.client.submit(path)

    events = list(cluster.client.watch(job_id, timeout=WATCH_LIMIT_S))

    assert events, "the watch yielded no event"
    assert [e.seq for e in events] == sorted(e.seq for e in events), "events arrive in order"
    assert any(e.WhichOneof("kind") == "metric" for e in events), "metric points arrive"
    seen = states(events)
    assert seen[-1] == job_pb2.JOB_STATE_SUCCEEDED, cluster.logs()
    assert job_pb2.JOB_STATE_RUNNING in seen
    job = cluster.client.get(job_id)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED
    assert job.spec.name == "digits-file", "a job file without a name is named after the file"
    assert job.result.steps > 0 and job.result.validation_accuracy > 0.8


def test_a_dict_trains_to_success(cluster: Cluster) -> None:
    job_id = cluster.client.submit(DIGITS_JOB)
    job = cluster.client.wait(job_id, timeout=WATCH_LIMIT_S)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, f"{job.reason}\n{cluster.logs()}"
    assert job.spec.name == "digits-e2e"
    assert job.spec.model.layers[0].width == 64
    assert shoal.to_dict(job)["state"] == "JOB_STATE_SUCCEEDED"


def test_list_filters_by_state_and_name(cluster: Cluster) -> None:
    job_id = cluster.client.submit(dict(DIGITS_JOB, name="listed-job"))
    cluster.client.wait(job_id, timeout=WATCH_LIMIT_S)

    everything = cluster.client.list()
    assert job_id in [j.job_id for j in everything]
    succeeded = cluster.client.list(state="succeeded")
    assert job_id in [j.job_id for j in succeeded]
    assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in succeeded)
    assert job_id not in [j.job_id for j in cluster.client.list(state=["queued", "running"])]
    assert [j.job_id for j in cluster.client.list(name="listed-*")] == [job_id]
    with pytest.raises(ValueError, match="not a job state"):
        cluster.client.list(state="sleeping")


def test_a_long_job_is_cancelled_while_it_runs(cluster: Cluster) -> None:
    job_id = cluster.client.submit(LONG_JOB)
    # Wait for it to run, reading its events.
    for event in cluster.client.watch(job_id, timeout=WATCH_LIMIT_S):
        if event.WhichOneof("kind") == "state" and event.state.state == job_pb2.JOB_STATE_RUNNING:
            break
    # A watch's own deadline ends it while the job goes on.
    with pytest.raises(shoal.DeadlineExceeded):
        for _ in cluster.client.watch(job_id, timeout=0.5):
            pass
    assert cluster.client.get(job_id).state == job_pb2.JOB_STATE_RUNNING

    cancelled = cluster.client.cancel(job_id, reason="test over")
    assert cancelled.job_id == job_id

    final = cluster.client.wait(job_id, timeout=WATCH_LIMIT_S)
    assert final.state == job_pb2.JOB_STATE_CANCELLED, cluster.logs()
    assert final.result.steps < LONG_JOB["training"]["steps"]
    with pytest.raises(shoal.FailedPrecondition, match="already cancelled"):
        cluster.client.cancel(job_id)


def test_an_unknown_job_is_not_found(cluster: Cluster) -> None:
    with pytest.raises(shoal.NotFound):
        cluster.client.get("job-doesnotexist")
    with pytest.raises(shoal.NotFound):
        cluster.client.watch("job-doesnotexist")


def test_every_request_has_a_deadline(tmp_path: Path) -> None:
    # A port that accepts connections but never answers: a listening socket nobody serves.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = shoal.Client(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises((shoal.DeadlineExceeded, shoal.Unavailable)):
            client.list()
        with pytest.raises((shoal.DeadlineExceeded, shoal.Unavailable)):
            client.workers(timeout=0.2)
        client.close()
    assert time.monotonic() - started < 5.0
