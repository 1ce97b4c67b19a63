"""Refused specs raise InvalidSpec carrying every bad field: from the coordinator (its
google.rpc.BadRequest details) and from this client's reading of a job (unknown keys, types)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import shoal

from cluster import DIGITS_JOB, Cluster


def test_the_coordinators_field_errors_are_raised(cluster: Cluster) -> None:
    bad = copy.deepcopy(DIGITS_JOB)
    bad["training"]["batch_size"] = 0
    bad["model"]["layers"][0]["width"] = -3
    with pytest.raises(shoal.InvalidSpec) as raised:
        cluster.client.submit(bad)
    error = raised.value
    assert error.code.name == "INVALID_ARGUMENT"
    assert "training.batch_size" in error.fields
    assert "model.layers[0].width" in error.fields
    reasons = dict(error.field_errors)
    assert "must be > 0" in reasons["training.batch_size"]
    assert "training.batch_size" in str(error)
    assert "invalid job spec" in error.message, "the coordinator's own message is kept"


def test_unknown_keys_are_refused_here_with_their_path(cluster: Cluster) -> None:
    bad = copy.deepcopy(DIGITS_JOB)
    bad["optimizer"]["learning_rate"] = 0.1
    bad["trainig"] = {}
    with pytest.raises(shoal.InvalidSpec) as raised:
        cluster.client.submit(bad)
    assert raised.value.fields == ["optimizer.learning_rate", "trainig"]
    assert "unknown field" in dict(raised.value.field_errors)["trainig"]


def test_a_broken_job_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[training\nbatch_size = 3\n")
    with pytest.raises(shoal.InvalidSpec, match="broken.toml"):
        shoal.load_job_file(path)
    with pytest.raises(shoal.InvalidSpec, match="cannot read job file"):
        shoal.load_job_file(tmp_path / "missing.toml")
