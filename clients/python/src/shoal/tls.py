"""TLS settings of a client, as the ``shoal`` CLI takes them (``--tls-ca``, ``--tls-cert``,
``--tls-key``, ``--tls-server-name``), and the gRPC channel credentials they make.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import grpc

__all__ = ["Tls", "TlsArg", "credentials"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Tls:
    """How to talk TLS to the coordinator.

    ``ca``: PEM CA to trust (None: the system's roots). ``cert`` and ``key``: a PEM client
    certificate and its key, for a coordinator that requires one (mutual TLS); give both or
    neither. ``server_name``: the name the coordinator's certificate carries, when it is not the
    host in the URL.
    """

    ca: Optional[PathLike] = None
    cert: Optional[PathLike] = None
    key: Optional[PathLike] = None
    server_name: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: cert and key go together (mutual TLS needs both)")


#: What ``Client(tls=...)`` takes: a CA file (str or path), a :class:`Tls`, a ``(ca, cert, key)``
#: tuple, True for TLS with the system's roots, or None/False for plain HTTP/2.
TlsArg = Union[None, bool, PathLike, Tls, Tuple[Optional[PathLike], PathLike, PathLike]]


def settings(tls: TlsArg) -> Optional[Tls]:
    """``tls`` as a :class:`Tls`, or None for no TLS."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return Tls()
    if isinstance(tls, Tls):
        return tls
    if isinstance(tls, tuple):
        if len(tls) != 3:
            raise ValueError("tls: expected a CA path, a Tls or a (ca, cert, key) tuple")
        ca, cert, key = tls
        return Tls(ca=ca, cert=cert, key=key)
    if isinstance(tls, (str, os.PathLike)):
        return Tls(ca=tls)
    raise TypeError(f"tls: expected a CA path, a Tls or a (ca, cert, key) tuple, not {type(tls).__name__}")


def _read(path: Optional[PathLike], what: str) -> Optional[bytes]:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"tls: cannot read the {what} {path}: {e}") from e


def credentials(tls: Tls) -> grpc.ChannelCredentials:
    """The channel credentials for ``tls`` (the files are read now)."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca, "CA"),
        private_key=_read(tls.key, "key"),
        certificate_chain=_read(tls.cert, "certificate"),
    )
