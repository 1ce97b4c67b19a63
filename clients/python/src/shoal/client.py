"""The coordinator's client API (``shoal.v1.JobService``) from Python.

Calls return the protocol's own messages (``shoal.v1.Job``, ``JobEvent``, ``WorkerStatus``, ...;
their fields are documented in ``proto/job.proto``), lists of them, or a small tuple of them
(:class:`Best`); :func:`shoal.to_dict` turns any of them into plain data. Every request has a
deadline: the client's ``timeout`` unless the call names its own; a watch lasts as long as its job
unless given a ``timeout``, with HTTP/2 keep-alives to notice a dead connection. Failures raise
:class:`~shoal.errors.ShoalError` subclasses.
"""

from __future__ import annotations

import fnmatch
import os
import time
from typing import Any, Callable, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple, Union
from urllib.parse import urlsplit

import grpc

from . import jobfile
from .errors import ShoalError, from_rpc_error
from .tls import Tls, TlsArg, credentials, settings
from .v1 import job_pb2, job_pb2_grpc, spec_pb2

__all__ = ["Client", "Best", "DEFAULT_URL", "TERMINAL_STATES"]

#: Where ``shoal-coordinator`` listens by default (and the ``shoal`` CLI looks).
DEFAULT_URL = "http://127.0.0.1:7470"

#: States a job does not leave.
TERMINAL_STATES = frozenset(
    {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
)

#: The metadata key of the bearer token, as the CLI sends it.
_AUTH_HEADER = "authorization"

PathLike = Union[str, "os.PathLike[str]"]
StateArg = Union[str, int, Iterable[Union[str, int]], None]
JobArg = Union[PathLike, Mapping[str, Any], spec_pb2.JobSpec]


class Best(NamedTuple):
    """A search's best trial and its configuration at full fidelity, ready to submit."""

    trial: job_pb2.TrialStatus
    spec: spec_pb2.JobSpec


def _target(url: str, tls: bool) -> Tuple[str, bool]:
    """``(host:port, secure)`` for a URL or a bare ``host:port``; TLS turns ``http`` into ``https``
    as in the CLI."""
    if "://" not in url:
        url = ("https://" if tls else "http://") + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url: `{url}` is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"url: `{url}` names no host")
    secure = tls or parts.scheme == "https"
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"url: `{url}`: {e}") from None
    if port is None:
        host = f"{host}:{443 if secure else 80}"
    return host, secure


def _states(state: StateArg) -> List[Any]:
    """Job states by name (``\"running\"``, ``\"JOB_STATE_RUNNING\"``) or number, as ListJobs takes them."""
    if state is None:
        return []
    if isinstance(state, (str, int)):
        state = [state]
    out: List[Any] = []
    for s in state:
        if isinstance(s, str):
            name = s.strip().upper()
            name = name if name.startswith("JOB_STATE_") else f"JOB_STATE_{name}"
            try:
                out.append(job_pb2.JobState.Value(name))
            except ValueError:
                known = ", ".join(n[len("JOB_STATE_") :].lower() for n in job_pb2.JobState.keys()[1:])
                raise ValueError(f"state: `{s}` is not a job state ({known})") from None
        else:
            out.append(int(s))
    return out


def _positive(seconds: float) -> float:
    if not seconds or seconds <= 0:
        raise ValueError(f"timeout: must be > 0 seconds, got {seconds!r}")
    return float(seconds)


def _is_terminal(event: job_pb2.JobEvent) -> bool:
    return event.WhichOneof("kind") == "state" and event.state.state in TERMINAL_STATES


class Client:
    """A connection to a Shoal coordinator.

    ``url``: ``http://host:port``, ``https://host:port`` or a bare ``host:port``. ``token``: the
    client token, sent as ``authorization: Bearer TOKEN`` as ``shoal --token`` sends it. ``tls``:
    a CA certificate file to trust (the URL then talks TLS), a :class:`~shoal.Tls` (CA, client
    certificate and key for mutual TLS, server name), a ``(ca, cert, key)`` tuple, or True for the
    system's roots; ``https://`` URLs use TLS even without it. ``timeout``: the default deadline
    of every request, in seconds; each method takes its own ``timeout=`` too.

    Use it as a context manager, or call :meth:`close`::

        with shoal.Client("http://127.0.0.1:7470") as client:
            job_id = client.submit("examples/digits-mlp.toml")
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: Optional[str] = None,
        tls: TlsArg = None,
        timeout: float = 10.0,
    ) -> None:
        self.timeout = _positive(timeout)
        tls_settings = settings(tls)
        target, secure = _target(url, tls_settings is not None)
        if secure and tls_settings is None:
            tls_settings = Tls()
        options: List[Tuple[str, Any]] = [
            # Keep-alives notice a dead coordinator during long watches; pings continue while the
            # stream carries no data.
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if tls_settings is not None and tls_settings.server_name:
            options.append(("grpc.ssl_target_name_override", tls_settings.server_name))
        self.url = f"{'https' if secure else 'http'}://{target}"
        self._metadata: Tuple[Tuple[str, str], ...] = ((_AUTH_HEADER, f"Bearer {token}"),) if token else ()
        if tls_settings is not None:
            self._channel = grpc.secure_channel(target, credentials(tls_settings), options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._jobs = job_pb2_grpc.JobServiceStub(self._channel)

    @classmethod
    def from_env(cls, timeout: float = 10.0) -> "Client":
        """A client configured like the ``shoal`` CLI from ``SHOAL_COORDINATOR``, ``SHOAL_TOKEN``,
        ``SHOAL_TLS_CA``, ``SHOAL_TLS_CERT``, ``SHOAL_TLS_KEY`` and ``SHOAL_TLS_SERVER_NAME``."""
        env = os.environ
        ca, cert, key, name = (env.get(f"SHOAL_TLS_{k}") or None for k in ("CA", "CERT", "KEY", "SERVER_NAME"))
        tls = Tls(ca=ca, cert=cert, key=key, server_name=name) if (ca or cert or key) else None
        return cls(env.get("SHOAL_COORDINATOR") or DEFAULT_URL, token=env.get("SHOAL_TOKEN") or None, tls=tls, timeout=timeout)

    def close(self) -> None:
        """Closes the connection; calls after this fail."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"shoal.Client({self.url!r})"

    def _call(self, method: Callable[..., Any], request: Any, timeout: Optional[float]) -> Any:
        """One unary call with the deadline ``timeout`` (default: the client's) and the token."""
        deadline = self.timeout if timeout is None else _positive(timeout)
        try:
            return method(request, timeout=deadline, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    # Jobs.

    def submit(
        self,
        job: JobArg,
        priority: Optional[int] = None,
        *,
        base_dir: Optional[PathLike] = None,
        timeout: Optional[float] = None,
    ) -> str:
        """Submits a job and returns its id.

        ``job`` is the path of a TOML job file (read as ``shoal submit`` reads it: named after the
        file unless it names itself, relative paths taken from its folder, a teacher's or parent's
        checkpoint read when it is here), a dict of the same structure (relative paths taken from
        ``base_dir``, default the working directory; see :mod:`shoal.spec`), or a ``JobSpec``
        message (sent as it is). ``priority`` overrides the spec's.

        Raises :class:`~shoal.errors.InvalidSpec` with every bad field when this client or the
        coordinator refuses the spec.
        """
        if isinstance(job, spec_pb2.JobSpec):
            spec = spec_pb2.JobSpec()
            spec.CopyFrom(job)
        elif isinstance(job, Mapping):
            spec = jobfile.from_dict(job, base_dir)
        elif isinstance(job, (str, os.PathLike)):
            spec = jobfile.load(job)
        else:
            raise TypeError(f"job: expected a job file path, a dict or a JobSpec, not {type(job).__name__}")
        if priority is not None:
            spec.priority = int(priority)
        response = self._call(self._jobs.SubmitJob, job_pb2.SubmitJobRequest(spec=spec), timeout)
        return response.job_id

    def get(self, job_id: str, *, timeout: Optional[float] = None) -> job_pb2.Job:
        """The job: its state and why, spec, worker, newest metrics, result once it succeeded."""
        return self._call(self._jobs.GetJob, job_pb2.GetJobRequest(job_id=job_id), timeout)

    def list(
        self,
        state: StateArg = None,
        name: Optional[str] = None,
        limit: Optional[int] = None,
        *,
        timeout: Optional[float] = None,
    ) -> List[job_pb2.Job]:
        """Jobs, newest first.

        ``state``: only jobs in this state or these states (``"running"``, ``"JOB_STATE_RUNNING"``
        or ``shoal.job_pb2.JOB_STATE_RUNNING``). ``name``: only jobs whose name matches, a
        shell-style pattern (``"digits-*"``; a name without wildcards must match exactly), applied
        here to what the coordinator returns. ``limit``: how many jobs the coordinator returns
        before the name filter (its default when None).
        """
        request = job_pb2.ListJobsRequest(states=_states(state), limit=int(limit or 0))
        jobs = list(self._call(self._jobs.ListJobs, request, timeout).jobs)
        if name is not None:
            jobs = [j for j in jobs if fnmatch.fnmatchcase(j.spec.name, name)]
        return jobs

    def cancel(self, job_id: str, reason: str = "", *, timeout: Optional[float] = None) -> job_pb2.Job:
        """Cancels a queued or running job and returns it. A finished job raises
        :class:`~shoal.errors.FailedPrecondition`."""
        request = job_pb2.CancelJobRequest(job_id=job_id, reason=reason)
        return self._call(self._jobs.CancelJob, request, timeout)

    def watch(
        self,
        job_id: str,
        after_seq: int = 0,
        *,
        timeout: Optional[float] = None,
        reconnect_for: float = 120.0,
    ) -> Iterator[job_pb2.JobEvent]:
        """The job's events: its history first (state changes, metric points, notices), then live
        ones; the iterator ends after the event that makes the job terminal.

        ``after_seq`` skips the events up to that sequence number (resume a watch). ``timeout``:
        seconds the whole watch may last (None: as long as the job runs; the first request has
        the client's deadline either way), then :class:`~shoal.errors.DeadlineExceeded`. When the
        coordinator goes away mid-stream the watch reconnects and resumes after the last event
        seen, for up to ``reconnect_for`` seconds (0: raise at once). Leaving the loop early
        closes the stream.
        """
        end = None if timeout is None else time.monotonic() + _positive(timeout)
        # Fails fast, within the deadline, on an unknown job or an unreachable coordinator.
        self.get(job_id)
        return self._follow(job_id, after_seq, end, reconnect_for)

    def _follow(
        self, job_id: str, after: int, end: Optional[float], reconnect_for: float
    ) -> Iterator[job_pb2.JobEvent]:
        outage_since: Optional[float] = None
        pause = 0.25
        while True:
            left = None if end is None else max(end - time.monotonic(), 0.001)
            call = self._jobs.WatchJob(
                job_pb2.WatchJobRequest(job_id=job_id, after_seq=after), timeout=left, metadata=self._metadata
            )
            try:
                for event in call:
                    outage_since, pause = None, 0.25
                    after = event.seq
                    yield event
                    if _is_terminal(event):
                        return
            except grpc.RpcError as e:
                error = from_rpc_error(e)
                if error.code != grpc.StatusCode.UNAVAILABLE or reconnect_for <= 0:
                    raise error from None
                now = time.monotonic()
                outage_since = outage_since if outage_since is not None else now
                if now - outage_since > reconnect_for:
                    raise error from None
                pause = min(pause * 2, 5.0)
            else:
                # The stream closed without the job ending (a coordinator restart), or there was
                # nothing after `after_seq` to send.
                if self.get(job_id).state in TERMINAL_STATES:
                    return
            finally:
                call.cancel()
            time.sleep(pause)

    def wait(self, job_id: str, *, timeout: Optional[float] = None) -> job_pb2.Job:
        """Follows the job until it ends (see :meth:`watch`, whose ``timeout`` this is) and
        returns it as it ended."""
        for _ in self.watch(job_id, timeout=timeout):
            pass
        return self.get(job_id)

    # Searches.

    def trials(self, search_id: str, *, timeout: Optional[float] = None) -> job_pb2.ListTrialsResponse:
        """A search job's leaderboard: ``.trials`` best first (completed, then stopped, running
        and failed ones), ``.metric``, ``.maximize``, ``.best`` (index of the best trial) and
        ``.best_spec``. A job that is not a search raises :class:`~shoal.errors.InvalidSpec`."""
        return self._call(self._jobs.ListTrials, job_pb2.ListTrialsRequest(job_id=search_id), timeout)

    def best(self, search_id: str, *, timeout: Optional[float] = None) -> Optional[Best]:
        """The best trial so far and its configuration at full fidelity (``submit`` takes it as
        it is), or None while no trial has completed."""
        r = self.trials(search_id, timeout=timeout)
        if not r.HasField("best"):
            return None
        trial = next((t for t in r.trials if t.index == r.best), None)
        if trial is None:
            raise ShoalError(grpc.StatusCode.INTERNAL, f"search {search_id}: best trial {r.best} is not listed")
        return Best(trial, r.best_spec)

    # Workers.

    def workers(self, *, timeout: Optional[float] = None) -> List[job_pb2.WorkerStatus]:
        """The registered workers (and parameter servers): state, free resources, GPUs, jobs."""
        response = self._call(self._jobs.ListWorkers, job_pb2.ListWorkersRequest(), timeout)
        return list(response.workers)
