"""A coordinator that requires tokens: clients without the right one are refused; the client
token, sent as the CLI sends it, opens every call, the watch stream included."""

from __future__ import annotations

from pathlib import Path

import pytest

import shoal
from shoal import job_pb2

from cluster import DIGITS_JOB, start_coordinator, start_worker, wait_ready

CLIENT_TOKEN = "py-client-token-0123456789"
JOIN_TOKEN = "py-join-token-0123456789ab"


def test_a_wrong_token_is_refused_and_the_right_one_works(tmp_path: Path) -> None:
    tokens = {"SHOAL_CLIENT_TOKEN": CLIENT_TOKEN, "SHOAL_JOIN_TOKEN": JOIN_TOKEN}
    coordinator, url = start_coordinator(tmp_path, "auth", env=tokens)
    worker = start_worker(tmp_path, url, "auth-worker", cpus=1, env={"SHOAL_JOIN_TOKEN": JOIN_TOKEN})
    try:
        with shoal.Client(url) as anonymous:
            with pytest.raises(shoal.Unauthenticated, match="requires a client token"):
                anonymous.list()
        with shoal.Client(url, token="guess-guess-guess") as stranger:
            with pytest.raises(shoal.Unauthenticated, match="invalid client token"):
                stranger.workers()
            with pytest.raises(shoal.Unauthenticated):
                stranger.submit(DIGITS_JOB)
        with shoal.Client(url, token=JOIN_TOKEN) as worker_token:
            with pytest.raises(shoal.Unauthenticated, match="invalid client token"):
                worker_token.list()

        with shoal.Client(url, token=CLIENT_TOKEN) as member:
            wait_ready(member, "auth-worker", worker)
            job_id = member.submit(DIGITS_JOB)
            events = list(member.watch(job_id, timeout=120))
            assert events[-1].state.state == job_pb2.JOB_STATE_SUCCEEDED
            assert [j.job_id for j in member.list()] == [job_id]
    finally:
        worker.stop()
        coordinator.stop()
