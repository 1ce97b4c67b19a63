"""workers(): the registered worker, its devices and state."""

from __future__ import annotations

from shoal import job_pb2

from cluster import Cluster


def test_the_worker_is_listed_ready(cluster: Cluster) -> None:
    workers = cluster.client.workers()
    mine = [w for w in workers if w.info.hostname == cluster.worker_name]
    assert len(mine) == 1, workers
    worker = mine[0]
    assert worker.state == job_pb2.WORKER_STATE_READY
    assert worker.worker_id
    assert worker.info.cpu_cores >= 1
    assert worker.info.memory_bytes > 0
