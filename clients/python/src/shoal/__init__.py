"""Python client for Shoal, the distributed training cluster: submit, inspect, watch and cancel jobs,
read searches' trials and list workers through the coordinator's ``shoal.v1.JobService``.

::

    import shoal

    with shoal.Client("http://127.0.0.1:7470") as client:
        job_id = client.submit("examples/digits-mlp.toml")
        for event in client.watch(job_id):
            print(shoal.to_dict(event))

The protocol's messages are in :mod:`shoal.v1` (``job_pb2``, ``spec_pb2``), generated from the
repository's ``proto/`` folder when the package is built.
"""

from importlib import metadata as _metadata

from .client import DEFAULT_URL, TERMINAL_STATES, Best, Client
from .errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidSpec,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ShoalError,
    Unauthenticated,
    Unavailable,
)
from .jobfile import load as load_job_file
from .spec import spec_from_dict, spec_to_dict, to_dict
from .tls import Tls
from .v1 import job_pb2, spec_pb2

try:
    __version__ = _metadata.version("shoal-client")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Client",
    "Tls",
    "Best",
    "DEFAULT_URL",
    "TERMINAL_STATES",
    "ShoalError",
    "InvalidSpec",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "Unauthenticated",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
    "load_job_file",
    "spec_from_dict",
    "spec_to_dict",
    "to_dict",
    "job_pb2",
    "spec_pb2",
]
