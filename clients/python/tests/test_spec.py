"""Reading jobs here, without a cluster: dicts and job files become the JobSpec `shoal submit`
sends (job-file spellings, strict keys and types, paths relative to the file's folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

import shoal

from cluster import DIGITS_JOB


def test_a_dict_becomes_the_spec_and_back() -> None:
    job = {
        **DIGITS_JOB,
        "parallelism": {"data": "1..4"},
        "search": {"params": [{"name": "optimizer.kind", "values": ["sgd", "adamw"]}, {"name": "x", "values": [1, 0.5]}]},
    }
    spec = shoal.spec_from_dict(job)
    assert (spec.parallelism.data_min, spec.parallelism.data) == (1, 4)
    assert list(spec.search.params[0].values) == ['"sgd"', '"adamw"'], "values are JSON literals on the wire"
    assert spec.training.batch_size == 32 and spec.optimizer.lr == pytest.approx(0.05)
    assert shoal.spec_to_dict(spec) == job
    assert shoal.spec_from_dict({"parallelism": {"data": 2}}).parallelism.data == 2


def test_wrong_keys_and_types_are_named() -> None:
    with pytest.raises(shoal.InvalidSpec) as raised:
        shoal.spec_from_dict(
            {
                "model": {"layers": [{"width": "wide"}]},
                "training": {"batch_size": 3.5, "shuffle_me": True},
                "optimizer": {"lr": True},
                "parallelism": {"data": "many"},
                "batchSize": 4,
            }
        )
    reasons = dict(raised.value.field_errors)
    assert set(reasons) == {
        "model.layers[0].width",
        "training.batch_size",
        "training.shuffle_me",
        "optimizer.lr",
        "parallelism.data",
        "batchSize",
    }, reasons
    assert reasons["model.layers[0].width"] == "expected an integer, found a string"
    assert reasons["optimizer.lr"] == "expected a number, found a boolean"
    assert reasons["training.shuffle_me"].startswith("unknown field")
    # A float field takes an integer, as TOML readers do.
    assert shoal.spec_from_dict({"optimizer": {"lr": 1}}).optimizer.lr == 1.0


def test_a_job_file_resolves_paths_against_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    path = folder / "rows.toml"
    path.write_text(
        '[dataset]\nkind = "csv"\npath = "data/train.csv"\nvalidation_path = "/abs/valid.csv"\n'
        '[evaluate]\nartifact = " ckpt/step-9 "\n'
    )
    monkeypatch.chdir(tmp_path)
    spec = shoal.load_job_file("jobs/rows.toml")
    assert spec.name == "rows", "named after the file"
    assert spec.dataset.path == str(folder / "data" / "train.csv")
    assert spec.dataset.validation_path == "/abs/valid.csv"
    assert spec.evaluate.artifact == str(folder / "ckpt" / "step-9")
    # A dict's relative paths are taken from base_dir (default: the working directory).
    from shoal import jobfile

    assert jobfile.from_dict({"dataset": {"path": "a.csv"}}).dataset.path == str(tmp_path / "a.csv")
    assert jobfile.from_dict({"dataset": {"path": "a.csv"}}, base_dir=folder).dataset.path == str(folder / "a.csv")


def test_a_named_job_file_keeps_its_name(tmp_path: Path) -> None:
    path = tmp_path / "file-name.toml"
    path.write_text('name = "own-name"\n[training]\nsteps = 3\n')
    assert shoal.load_job_file(path).name == "own-name"
