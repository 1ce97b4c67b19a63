"""Mutual TLS: a coordinator that requires client certificates from its CA (made by `shoal
certs`) answers a client holding one, given as the CLI's --tls-ca/--tls-cert/--tls-key, and
refuses clients without one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import shoal

from cluster import binary, clean_env, start_coordinator


def test_mutual_tls_lets_a_certified_client_in(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run(
        [str(binary("shoal")), "certs", "--dir", str(certs)], env=clean_env(), capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    tls_args = [
        "--tls-cert", certs / "node.pem",
        "--tls-key", certs / "node-key.pem",
        "--tls-client-ca", certs / "ca.pem",
    ]  # fmt: skip
    coordinator, url = start_coordinator(tmp_path, "tls", args=tls_args, scheme="https")
    address = url.split("://", 1)[1]
    try:
        certified = shoal.Tls(ca=certs / "ca.pem", cert=certs / "client.pem", key=certs / "client-key.pem")
        with shoal.Client(url, tls=certified, timeout=5) as client:
            assert client.workers() == []
            assert client.list() == []
        # A bare host:port with TLS settings talks TLS too; a (ca, cert, key) tuple does as well.
        mtls = (certs / "ca.pem", certs / "client.pem", certs / "client-key.pem")
        with shoal.Client(address, tls=mtls, timeout=5) as client:
            assert client.url.startswith("https://")
            assert client.list() == []
        # Trusting the CA is not enough without a client certificate, and plain HTTP/2 fails.
        with shoal.Client(address, tls=certs / "ca.pem", timeout=5) as client:
            with pytest.raises(shoal.ShoalError):
                client.list()
        with shoal.Client(f"http://{address}", timeout=5) as client:
            with pytest.raises(shoal.ShoalError):
                client.list()
    finally:
        coordinator.stop()


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="cert and key"):
        shoal.Tls(ca="ca.pem", cert="client.pem")
