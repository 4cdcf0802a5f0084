"""A small HTTP server that speaks the SageMaker endpoint runtime protocol for models from the registry.

Why: `SageMakerScoringResource` must be exercised over the real wire protocol (boto3 `sagemaker-runtime`
`InvokeEndpoint`), and local/dev runs need something to point it at.  This serves the same trained artifacts
that `LocalScoringResource` loads, so the two paths can be compared number for number.

Protocol (what boto3 sends to `endpoint_url`):
    POST /endpoints/{EndpointName}/invocations   Content-Type: text/csv, Accept: application/json | text/csv
        200  {"predictions": [p, ...]}  or one probability per line; header
             X-Amzn-Invoked-Production-Variant: <model version>
        400  ModelError       the body cannot be scored (bad CSV, wrong column count, non-numeric value)
        404  ValidationError  unknown endpoint
        413  ValidationError  body over 6 MB (SageMaker's payload limit)
        415  ModelError       content type other than text/csv
    POST /invocations    the container-side path, accepted when exactly one model is served
    GET  /ping           200 (container health check)
    POST /  X-Amz-Target: SageMaker.DescribeEndpoint | DescribeEndpointConfig | ListTags   the control-plane calls
         scoring makes to check the served version: each endpoint serves config `<name>-<version>`, tagged
         `engage:model-version` = the version it was started with

Run:  python -m engage_assets.demo.sagemaker_endpoint --registry DIR --program P [--host H] [--port N]
Logs carry endpoint names, row counts and statuses only, never feature values.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd

from engage_assets.domain.models import ModelRef, ModelRegistry, load_pipeline

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_INVOKE = re.compile(r"^/endpoints/([^/]+)/invocations$")


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_csv_rows(body: bytes, n_features: int) -> list[list[str]]:
    """Header-less CSV -> rows of strings; every row must have exactly one field per feature."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRequest(400, "ModelError", "body is not UTF-8 text") from exc
    rows = []
    try:
        for i, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
            if not row:
                continue  # blank line (e.g. a trailing newline)
            if len(row) != n_features:
                raise _BadRequest(400, "ModelError", f"row {i} has {len(row)} fields, expected {n_features}")
            rows.append(row)
    except csv.Error as exc:
        raise _BadRequest(400, "ModelError", f"malformed CSV: {exc}") from exc
    if not rows:
        raise _BadRequest(400, "ModelError", "body has no rows")
    return rows


class _EndpointHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], models: Mapping[str, ModelRef]):
        super().__init__(address, _Handler)
        self.models = dict(models)
        self.lock = threading.Lock()
        self.invocations = 0  # POSTs to an invocations path, whatever their outcome
        self.rows_scored = 0
        self.faults: list[tuple[int, str]] = []

    def take_fault(self) -> tuple[int, str] | None:
        with self.lock:
            self.invocations += 1
            return self.faults.pop(0) if self.faults else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses connections
    server: _EndpointHTTPServer
    server_version = "EngageSageMakerStandIn/1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        # rest-json error shape: botocore reads the code from x-amzn-ErrorType and the message from the body.
        doc: dict[str, str | int] = {"__type": code, "message": message}
        if code == "ModelError":
            doc.update({"OriginalStatusCode": status, "OriginalMessage": message})
        self._send(status, json.dumps(doc).encode(), "application/json", {"x-amzn-ErrorType": code})

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if urlsplit(self.path).path == "/ping":
            self._send(200, b"{}", "application/json")
        else:
            self._error(404, "ValidationError", "unknown path")

    def _control(self, target: str, body: bytes) -> None:
        """The control-plane calls of the served-version check (module docstring), in the JSON 1.1 protocol."""
        args = json.loads(body or b"{}")
        configs = {f"{name}-{ref.version}": ref for name, ref in self.server.models.items()}
        arn = "arn:aws:sagemaker:us-east-1:000000000000:endpoint-config/"
        doc: dict[str, object] | None = None
        if target == "DescribeEndpoint" and args.get("EndpointName") in self.server.models:
            ref = self.server.models[args["EndpointName"]]
            doc = {"EndpointName": args["EndpointName"], "EndpointConfigName": f"{args['EndpointName']}-{ref.version}",
                   "EndpointStatus": "InService"}  # fmt: skip
        elif target == "DescribeEndpointConfig" and args.get("EndpointConfigName") in configs:
            name = args["EndpointConfigName"]
            doc = {"EndpointConfigName": name, "EndpointConfigArn": arn + name,
                   "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": name}]}  # fmt: skip
        elif target == "ListTags" and str(args.get("ResourceArn", "")).removeprefix(arn) in configs:
            ref = configs[str(args["ResourceArn"]).removeprefix(arn)]
            doc = {"Tags": [{"Key": "engage:model-version", "Value": ref.version}]}
        if doc is None:
            body_out = json.dumps({"__type": "ValidationException", "message": f"Could not find {target} resource"})
            self._send(400, body_out.encode(), "application/x-amz-json-1.1")
            return
        self._send(200, json.dumps(doc).encode(), "application/x-amz-json-1.1")

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""  # always drain, so keep-alive stays in sync
        target = self.headers.get("X-Amz-Target") or ""
        if path == "/" and target.startswith("SageMaker."):
            self._control(target.removeprefix("SageMaker."), body)
            return
        m = _INVOKE.match(path)
        if m:
            name = unquote(m.group(1))
        elif path == "/invocations" and len(self.server.models) == 1:
            name = next(iter(self.server.models))
        else:
            self._error(404, "ValidationError", "unknown path")
            return
        started = time.perf_counter()
        fault = self.server.take_fault()
        if fault is not None:
            status, code = fault
            self._error(status, code, "injected fault")
            return
        try:
            status, payload, ctype, headers, n = self._invoke(name, body)
        except _BadRequest as exc:
            log.info("endpoint=%s status=%d error=%s", name, exc.status, exc.code)
            self._error(exc.status, exc.code, exc.message)
            return
        with self.server.lock:
            self.server.rows_scored += n
        self._send(status, payload, ctype, headers)
        log.debug("endpoint=%s rows=%d ms=%.1f", name, n, (time.perf_counter() - started) * 1e3)

    def _invoke(self, name: str, body: bytes) -> tuple[int, bytes, str, dict[str, str], int]:
        ref = self.server.models.get(name)
        if ref is None:
            raise _BadRequest(404, "ValidationError", f"Endpoint {name} not found.")
        if len(body) > MAX_PAYLOAD_BYTES:
            raise _BadRequest(413, "ValidationError", f"payload over {MAX_PAYLOAD_BYTES} bytes")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "text/csv":
            raise _BadRequest(415, "ModelError", f"unsupported content type {ctype!r}; send text/csv")
        rows = parse_csv_rows(body, len(ref.features))
        rows_typed = [[v if v != "" else None for v in row] for row in rows]  # empty field = NULL
        frame = pd.DataFrame(rows_typed, columns=list(ref.features), dtype=object)
        try:
            p = load_pipeline(ref).predict_proba(frame)[:, 1]
        except (ValueError, KeyError) as exc:
            raise _BadRequest(400, "ModelError", str(exc)) from exc
        accept = (self.headers.get("Accept") or "application/json").lower()
        headers = {"X-Amzn-Invoked-Production-Variant": ref.version}
        if "text/csv" in accept and "json" not in accept:
            payload = "".join(f"{v!r}\n" for v in p.tolist()).encode()
            return 200, payload, "text/csv", headers, len(rows)
        return 200, json.dumps({"predictions": p.tolist()}).encode(), "application/json", headers, len(rows)


class EndpointServer:
    """A running stand-in endpoint: `.url` for boto3's endpoint_url, `.shutdown()` to stop it."""

    def __init__(self, httpd: _EndpointHTTPServer, thread: threading.Thread):
        self._httpd = httpd
        self._thread = thread
        host, port = httpd.server_address[:2]
        self.url = f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    @property
    def models(self) -> dict[str, ModelRef]:
        return self._httpd.models

    @property
    def invocations(self) -> int:
        return self._httpd.invocations

    @property
    def rows_scored(self) -> int:
        return self._httpd.rows_scored

    def fail_next(self, n: int = 1, status: int = 503, code: str = "ServiceUnavailable") -> None:
        """Answer the next `n` invocations with an error, to exercise the client's retry (e.g. 429 throttling)."""
        with self._httpd.lock:
            self._httpd.faults.extend([(status, code)] * n)

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EndpointServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(models: Mapping[str, ModelRef], host: str = "127.0.0.1", port: int = 0) -> EndpointServer:
    """Start serving `models` (EndpointName -> ModelRef) on a background thread; port 0 picks a free port.

    Artifacts are loaded up front so a bad one fails at start, not on the first request.
    """
    for ref in models.values():
        load_pipeline(ref)
    httpd = _EndpointHTTPServer((host, port), models)
    thread = threading.Thread(target=httpd.serve_forever, name="sagemaker-endpoint", daemon=True)
    thread.start()
    return EndpointServer(httpd, thread)


def main(argv: list[str] | None = None) -> None:
    from engage_assets.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=None, help="model registry root (default: ENGAGE_HOME/models)")
    parser.add_argument("--program", required=True, help="program id whose promoted models to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    registry = ModelRegistry(args.registry or get_settings().model_root)
    models = registry.current_models(args.program)
    if not models:
        parser.error(f"no promoted models for program {args.program!r} under {registry.root}")
    server = serve(models, args.host, args.port)
    for name, ref in models.items():
        log.info("serving endpoint %s -> %s@%s", name, ref.model_id, ref.version)
    log.info("listening on %s (POST /endpoints/<name>/invocations, GET /ping)", server.url)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    """SIGTERM (a container stop, `proc.terminate()`): leave the serve loop and shut the server down, exit 0."""
    raise SystemExit(0)


if __name__ == "__main__":
    main()
