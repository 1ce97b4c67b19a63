"""Errors of the Shoal client: one exception class per gRPC status the coordinator answers with.

Every failed call raises a :class:`ShoalError`; the subclasses let callers catch the cases they can
act on (``except shoal.NotFound``). An invalid job spec raises :class:`InvalidSpec`, which carries
every bad field the coordinator named, as it sends them in a ``google.rpc.BadRequest``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Type, cast

import grpc

__all__ = [
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
    "from_rpc_error",
]


class ShoalError(Exception):
    """A request failed. ``code`` is the gRPC status code, ``message`` what the coordinator said."""

    #: The code a subclass stands for (``None`` on the base class).
    status_code: Optional[grpc.StatusCode] = None

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later (the coordinator was unreachable, slow,
        overloaded, or aborted the request)."""
        return self.code in _RETRYABLE

    def __str__(self) -> str:
        name = self.code.name.lower().replace("_", " ") if self.code else "error"
        return f"{self.message} ({name})" if self.message else f"request failed ({name})"


class InvalidSpec(ShoalError):
    """The coordinator (or this client, while reading a job file) refused the request's fields:
    ``INVALID_ARGUMENT``. ``field_errors`` lists every bad field as ``(path, reason)``, the path as
    the coordinator writes it (``"optimizer.lr"``, ``"model.layers[2].width"``)."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_errors: Optional[List[Tuple[str, str]]] = None,
    ) -> None:
        super().__init__(code, message)
        self.field_errors: List[Tuple[str, str]] = list(field_errors or [])

    @property
    def fields(self) -> List[str]:
        """The paths of the bad fields."""
        return [path for path, _ in self.field_errors]

    def __str__(self) -> str:
        if not self.field_errors:
            return super().__str__()
        lines = [f"  {path}: {reason}" if path else f"  {reason}" for path, reason in self.field_errors]
        # The coordinator's message opens with what was refused ("invalid job spec: ...").
        head = self.message.split(":", 1)[0].strip() if ":" in self.message else "invalid request"
        return f"{head}:\n" + "\n".join(lines)


class NotFound(ShoalError):
    """No such job, search or worker."""

    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ShoalError):
    """What the request would create exists already."""

    status_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ShoalError):
    """The request does not fit the job's state (cancelling a finished job, the best trial of a
    search that has none)."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ShoalError):
    """The coordinator wants a client token and got none, or a wrong one."""

    status_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ShoalError):
    """The token is valid but not allowed to make this request."""

    status_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ShoalError):
    """A quota was exceeded, or a message was too large."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ShoalError):
    """The coordinator could not be reached (or is shutting down)."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ShoalError):
    """The coordinator did not answer within the client's timeout."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ShoalError):
    """The call was cancelled on this side."""

    status_code = grpc.StatusCode.CANCELLED


class Internal(ShoalError):
    """The coordinator failed internally."""

    status_code = grpc.StatusCode.INTERNAL


_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}

_BY_CODE: Dict[grpc.StatusCode, Type[ShoalError]] = {
    cls.status_code: cls
    for cls in (
        InvalidSpec,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Internal,
    )
    if cls.status_code is not None
}


def _field_violations(error: grpc.RpcError) -> List[Tuple[str, str]]:
    """The ``google.rpc.BadRequest`` field violations in a failed call's status details."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(cast(grpc.Call, error))
    except (ValueError, AttributeError):
        # Details that disagree with the status line, or an error that is not a call.
        return []
    if status is None:
        return []
    violations: List[Tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    return violations


def from_rpc_error(error: grpc.RpcError) -> ShoalError:
    """The :class:`ShoalError` (subclass) for a failed gRPC call."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else None) or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidSpec(code, message, _field_violations(error))
    cls = _BY_CODE.get(code, ShoalError)
    return cls(code, message)
