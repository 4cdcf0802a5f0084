"""Shared fixtures: a real moto server on loopback for the AWS adapters (wire protocol, not in-process mocks)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile

import pytest

# Tests never read nor write the developer's state.  `make test` inherits the Makefile's ENGAGE_HOME=data, where
# `make run` leaves a warehouse, the platform's history and keys; dbt's `platform` source reads $ENGAGE_HOME/history,
# so a test's own small warehouse would union the demo's offers (and fail its relationship tests).  A test that
# needs a particular home sets it with monkeypatch.
os.environ["ENGAGE_HOME"] = tempfile.mkdtemp(prefix="engage-test-home-")
# Each pytest process (xdist workers included) makes one; removed when that process exits so runs leave no trace.
atexit.register(shutil.rmtree, os.environ["ENGAGE_HOME"], ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """URL of a moto server (HTTP on 127.0.0.1) shared by the session; each test uses its own names."""
    from moto.server import ThreadedMotoServer

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(key, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fakesnow_server():
    """fakesnow's HTTP server (the real snowflake-connector and its Arrow fetch run against it), one per test process:
    `fakesnow.server()` works once per process (its first call imports the submodule `fakesnow.server` over the
    package's function of that name), so every module that talks to Snowflake shares this one."""
    fakesnow = pytest.importorskip("fakesnow")
    with fakesnow.server() as kwargs:
        yield kwargs
