"""A small search job: its trials run as cluster jobs; trials() is the leaderboard and best() the
winning configuration, which trains again as a plain job."""

from __future__ import annotations

import pytest

import shoal
from shoal import job_pb2

from cluster import DIGITS_JOB, Cluster

# Three short digits trials over the learning rate and optimizer, two at a time.
SEARCH_JOB = {
    "name": "py-search",
    "search": {
        "strategy": "tpe",
        "max_trials": 3,
        "max_concurrent": 2,
        "seed": 5,
        "params": [
            {"name": "optimizer.lr", "type": "float", "low": 0.01, "high": 0.2, "log": True},
            {"name": "optimizer.kind", "values": ["sgd", "adamw"]},
        ],
    },
    "model": {"kind": "mlp", "layers": [{"width": 32}]},
    "dataset": {"kind": "digits", "validation_split": 0.2},
    "optimizer": {"kind": "sgd", "lr": 0.05},
    "training": {"batch_size": 32, "steps": 300, "eval_every": 100, "log_every": 100, "seed": 3},
}


def test_a_search_ranks_its_trials_and_names_the_best(cluster: Cluster) -> None:
    search_id = cluster.client.submit(SEARCH_JOB)
    done = cluster.client.wait(search_id, timeout=240)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, f"{done.reason}\n{cluster.logs()}"

    board = cluster.client.trials(search_id)
    assert len(board.trials) == 3
    assert board.metric and board.strategy == "tpe"
    assert all(t.job_id and t.state != "running" for t in board.trials)
    values = [t.value for t in board.trials if t.HasField("value")]
    assert values, "completed trials have a value"
    assert values == sorted(values, reverse=board.maximize), "best first"

    best = cluster.client.best(search_id)
    assert best is not None
    assert best.trial.index == board.best
    assert best.trial.value == values[0]
    assert not best.spec.HasField("search"), "the best configuration is a plain job"
    assert best.spec.optimizer.kind in ("sgd", "adamw")

    again = cluster.client.wait(cluster.client.submit(best.spec), timeout=120)
    assert again.state == job_pb2.JOB_STATE_SUCCEEDED, again.reason


def test_trials_of_a_plain_job_are_refused(cluster: Cluster) -> None:
    job_id = cluster.client.submit(dict(DIGITS_JOB, name="not-a-search"))
    try:
        with pytest.raises(shoal.InvalidSpec) as refused:
            cluster.client.trials(job_id)
        assert refused.value.fields == ["job_id"]
        assert "not a search job" in str(refused.value)
    finally:
        cluster.client.wait(job_id, timeout=120)
