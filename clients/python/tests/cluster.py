"""A real cluster for the client's tests: `shoal-coordinator` and `shoal-worker` processes on
ephemeral loopback ports, started as the Rust harness (tests/src/lib.rs) starts them.

The binaries come from `SHOAL_BIN_DIR` (default: the repository's target/release). The
coordinator is ready when it prints `listening on ADDR`; the worker when the coordinator lists it
as ready.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

import shoal

REPO = Path(__file__).resolve().parents[3]
STARTUP_LIMIT_S = 30.0

# A digits MLP that reaches > 0.9 validation accuracy in well under a second of training (the
# Rust tests' DIGITS_JOB, as a dict).
DIGITS_JOB: Dict[str, Any] = {
    "name": "digits-e2e",
    "model": {"kind": "mlp", "layers": [{"width": 64}]},
    "dataset": {"kind": "digits", "validation_split": 0.2},
    "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
    "training": {"batch_size": 32, "epochs": 20, "seed": 3, "log_every": 10},
}

# The same job as a job file, without its name (the file names it).
DIGITS_TOML = """
[model]
kind = "mlp"
layers = [{ width = 64 }]
[dataset]
kind = "digits"
validation_split = 0.2
[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9
[training]
batch_size = 32
epochs = 20
seed = 3
log_every = 10
"""

# A job long enough (about a minute) to be cancelled mid-run (the Rust tests' LONG_JOB).
LONG_JOB: Dict[str, Any] = {
    "name": "long",
    "model": {"kind": "mlp", "layers": [{"width": 512}, {"width": 512}]},
    "dataset": {"kind": "synthetic_classification", "samples": 4096, "features": 784, "classes": 10},
    "optimizer": {"kind": "sgd", "lr": 0.05},
    "training": {"batch_size": 128, "steps": 8000, "log_every": 10, "checkpoint_every": 50},
}


def bin_dir() -> Path:
    named = os.environ.get("SHOAL_BIN_DIR")
    return Path(named).absolute() if named else REPO / "target" / "release"


def binary(name: str) -> Path:
    path = bin_dir() / name
    if not path.is_file():
        pytest.fail(
            f"{path} not found: build the binaries with `cargo build --release` "
            "or point SHOAL_BIN_DIR at the folder holding it",
            pytrace=False,
        )
    return path


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment without SHOAL_* settings (a developer's SHOAL_CLIENT_TOKEN or
    SHOAL_CONFIG must not leak into the test cluster), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(extra or {})
    return env


class Process:
    """A child process with its stderr in a log file; stopped (SIGTERM, then SIGKILL) by `stop`."""

    def __init__(self, args: Sequence[object], log: Path, env: Dict[str, str], stdout: int) -> None:
        self.log = log
        self._log_file = open(log, "wb")
        self.popen = subprocess.Popen(
            [str(a) for a in args], env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self._log_file
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log_file.close()


def start_coordinator(
    folder: Path, name: str, env: Optional[Dict[str, str]] = None, args: Sequence[object] = (), scheme: str = "http"
) -> Tuple[Process, str]:
    """Starts a coordinator with its database in `folder` and `args` after the usual flags;
    returns it and its URL once it listens. Short liveness timings, as in the Rust harness."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        binary("shoal-coordinator"),
        "--listen", "127.0.0.1:0",
        # Off: the default port (7473) would clash between tests.
        "--http-listen", "",
        "--heartbeat-interval-ms", "500",
        "--heartbeat-timeout-ms", "3000",
        "--reconnect-grace-ms", "1500",
        "--database", folder / f"{name}.db",
        *args,
    ]  # fmt: skip
    proc = Process(command, folder / f"{name}.log", clean_env(env), stdout=subprocess.PIPE)
    line = _first_line(proc)
    if not line.startswith("listening on "):
        proc.stop()
        raise RuntimeError(f"coordinator printed {line!r} instead of its address; log:\n{proc.log_text()}")
    return proc, f"{scheme}://" + line[len("listening on ") :].strip()


def _first_line(proc: Process) -> str:
    """The first line the process prints, waiting at most STARTUP_LIMIT_S."""
    assert proc.popen.stdout is not None
    fd = proc.popen.stdout.fileno()
    deadline = time.monotonic() + STARTUP_LIMIT_S
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.stop()
            raise RuntimeError(f"no output within {STARTUP_LIMIT_S} s; log:\n{proc.log_text()}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # the process exited
            data += chunk
    return data.decode(errors="replace").split("\n", 1)[0]


def start_worker(folder: Path, url: str, name: str, cpus: int, env: Optional[Dict[str, str]] = None) -> Process:
    """Starts a worker offering `cpus` cores, its checkpoints in `folder`/checkpoints, training on
    one thread (the CI machine has two cores)."""
    args = [
        binary("shoal-worker"),
        "--coordinator", url,
        "--cpus", cpus,
        "--hostname", name,
        "--checkpoint-dir", folder / "checkpoints",
    ]  # fmt: skip
    return Process(args, folder / f"{name}.log", clean_env({"RAYON_NUM_THREADS": "1", **(env or {})}), stdout=subprocess.DEVNULL)


def wait_ready(client: shoal.Client, hostname: str, worker: Process) -> None:
    """Waits until the coordinator lists the worker as ready."""
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while True:
        ready = [
            w for w in client.workers() if w.info.hostname == hostname and w.state == shoal.job_pb2.WORKER_STATE_READY
        ]
        if ready:
            return
        if worker.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {hostname} did not register; log:\n{worker.log_text()}")
        time.sleep(0.05)


class Cluster:
    """A running coordinator and worker, and a client for them."""

    def __init__(self, folder: Path, url: str, worker_name: str, processes: List[Process]) -> None:
        self.folder = folder
        self.url = url
        self.worker_name = worker_name
        self.processes = processes
        self.client = shoal.Client(url, timeout=10.0)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.log_text()[-4000:]}" for p in self.processes)
