"""Fixtures: one coordinator and worker for the whole session (see cluster.py), and its client."""

from __future__ import annotations

from typing import Iterator

import pytest

from cluster import Cluster, start_coordinator, start_worker, wait_ready


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One coordinator and one two-core worker for the whole session."""
    folder = tmp_path_factory.mktemp("cluster")
    coordinator, url = start_coordinator(folder, "coordinator")
    worker = start_worker(folder, url, "py-worker", cpus=2)
    c = Cluster(folder, url, "py-worker", [coordinator, worker])
    try:
        wait_ready(c.client, "py-worker", worker)
        yield c
    finally:
        c.client.close()
        worker.stop()
        coordinator.stop()

