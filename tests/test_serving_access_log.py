"""The API never logs a customer id, whatever command starts it: uvicorn started the plain way (its access log on,
no `--no-access-log`) logs route templates, never the path's values or the query."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engage_assets.serving.access_log import UVICORN_ACCESS, RouteTemplates
from engage_assets.serving.app import create_app
from engage_assets.serving.auth import create_api_key
from resources.engagement.sqlite import SqliteEngagementStore
from resources.store.sqlite import SqliteCandidateStore

CUSTOMER = "cust-8d1f00c4"  # a customer id that must appear in no log line
EMAIL = "jane.doe@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plain_uvicorn_access_log_carries_no_customer_id(tmp_path: Path):
    _, key = create_api_key(SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite")), ["read:*", "inapp"], "t")
    port = free_port()
    env = {**os.environ, "ENGAGE_ENV": "local", "ENGAGE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "uvicorn", "engage_assets.serving.server:app_from_settings", "--factory"]
    server = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        headers = {"X-API-Key": key}
        assert httpx.get(f"{base}/v1/customers/{CUSTOMER}/candidates", headers=headers).status_code == 200
        assert httpx.get(f"{base}/v1/customers/{CUSTOMER}/inbox?email={EMAIL}", headers=headers).status_code == 422
        assert httpx.get(f"{base}/v1/customers/{CUSTOMER}/inbox").status_code == 401
        assert httpx.get(f"{base}/v1/customer/{CUSTOMER}/{EMAIL}").status_code == 404  # matches no route
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    access = [line for line in log.splitlines() if " HTTP/1.1" in line]
    assert len(access) == 5, log  # uvicorn's access log is on, one line per request ...
    assert sum('"GET /v1/customers/{customerId}/candidates HTTP/1.1" 200' in line for line in access) == 1, log
    assert sum('"GET /v1/customers/{customerId}/inbox HTTP/1.1" 4' in line for line in access) == 2, log
    assert any('"GET <unmatched> HTTP/1.1" 404' in line for line in access), log
    assert CUSTOMER not in log and EMAIL not in log and "email" not in log  # ... and no value in any line


def test_the_filter_keeps_uvicorns_record_shape(tmp_path: Path):
    app = create_app(
        SqliteCandidateStore(path=str(tmp_path / "s.sqlite")), SqliteEngagementStore(path=str(tmp_path / "e.sqlite"))
    )
    filters = [f for f in logging.getLogger(UVICORN_ACCESS).filters if isinstance(f, RouteTemplates)]
    assert len(filters) == 1 and filters[0].routes == app.router.routes  # one app's filter at a time
    record = logging.LogRecord(
        UVICORN_ACCESS,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5", "POST", f"/v1/customers/{CUSTOMER}/inbox/m%201/seen?x={EMAIL}", "1.1", 200),
        None,
    )
    assert filters[0].filter(record)
    assert record.getMessage() == '10.0.0.1:5 - "POST /v1/customers/{customerId}/inbox/{messageId}/seen HTTP/1.1" 200'
