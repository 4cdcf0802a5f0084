"""Local SMTP capture server (aiosmtpd): every message the email channel sends becomes a readable .eml file.

    python -m engage_assets.demo.smtp_capture [--host 127.0.0.1] [--port 2525] [--root $ENGAGE_HOME/mail]

A message is written to `<root>/<program>/<idempotency key>.eml` (program and key from the `X-Engage-Program` and
`X-Engage-Idempotency-Key` headers the channel sets), by writing a temporary file and hard-linking it into place:
the link fails if the file exists, so a re-sent message with the same key is accepted (250) and dropped, and no
reader ever sees half a file.  That de-duplication is what makes the engine's recovery rule ("re-send an in-doubt
touch with the same key") exactly-once end to end.  Every DATA received, duplicate or not, is also counted in
`<root>/received.log` (one line: key and `new`/`dup`; no addresses), so tests can count what really arrived.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engage_assets.settings import get_settings
from resources.channels.base import IDEMPOTENCY_HEADER, PROGRAM_HEADER, capture_path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2525
_HEADER_RE = {
    name: re.compile(rb"^" + name.encode() + rb":[ \t]*([A-Za-z0-9._-]{1,128})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
    for name in (IDEMPOTENCY_HEADER, PROGRAM_HEADER)
}


def _header(data: bytes, name: str) -> str | None:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    m = _HEADER_RE[name].search(data[: end if end >= 0 else len(data)])
    return m.group(1).decode() if m else None


class CaptureHandler:
    """aiosmtpd handler: file each message once per idempotency key (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.received = 0
        self.duplicates = 0
        self._log = os.open(self.root / "received.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def store(self, data: bytes) -> bool:
        """File one message; False if a message with its idempotency key was filed before."""
        import hashlib

        key = _header(data, IDEMPOTENCY_HEADER) or "nokey-" + hashlib.sha256(data).hexdigest()[:40]
        path = capture_path(self.root, _header(data, PROGRAM_HEADER) or "unknown", key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)
            new = True
        except FileExistsError:
            new = False
        finally:
            os.unlink(tmp)
        with self._lock:
            self.received += 1
            self.duplicates += not new
            os.write(self._log, f"{key} {'new' if new else 'dup'}\n".encode())
        return new

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.store(data)
        return "250 OK: captured"

    def close(self) -> None:
        os.close(self._log)


def _controller(handler: CaptureHandler, host: str, port: int, reuse_port: bool = False):
    from aiosmtpd.controller import Controller

    class ReusePortController(Controller):
        def _create_server(self):  # the documented override point; SO_REUSEPORT lets N processes share the port
            return self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context, reuse_port=True
            )

    return (ReusePortController if reuse_port else Controller)(handler, hostname=host, port=port, ready_timeout=10)


@contextmanager
def running_capture(
    root: str | os.PathLike[str], host: str = DEFAULT_HOST, port: int = 0
) -> Iterator[tuple[CaptureHandler, int]]:
    """A capture server in a background thread of this process (tests, demos); yields (handler, port)."""
    if port == 0:
        port = free_port(host)
    handler = CaptureHandler(root)
    controller = _controller(handler, host, port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
        handler.close()


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn_capture(
    root: str | os.PathLike[str], port: int, host: str = DEFAULT_HOST, workers: int = 1, wait_s: float = 20.0
) -> subprocess.Popen:
    """Start the capture server as its own process(es) (benchmarks: they get their own cores); wait until it
    listens.  Terminate the returned process to stop every worker."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engage_assets.demo.smtp_capture",
            "--host",
            host,
            "--port",
            str(port),
            "--root",
            str(root),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"smtp capture exited: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
        if port_open(host, port, 0.2):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("smtp capture did not start listening")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); `--reuse-port` is internal: `serve` passes it to its workers."""
    ap = argparse.ArgumentParser(description="Local SMTP capture server: messages become .eml files")
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--root", default=None, help="where .eml files go (default: $ENGAGE_HOME/mail)")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT): one aiosmtpd process takes ~1,000 msg/s",
    )
    ap.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def spawn_workers(host: str, port: int, root: Path, count: int) -> list[subprocess.Popen]:
    """`count` more capture processes sharing `port` (SO_REUSEPORT), filing under the same `root`."""
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engage_assets.demo.smtp_capture",
                "--host",
                host,
                "--port",
                str(port),
                "--root",
                str(root),
                "--workers",
                "1",
                "--reuse-port",
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def wait_for_stop() -> None:
    """Block until SIGTERM or SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM/SIGINT: this process, plus `--workers - 1` more on the same port, stopped with it.
    A `--reuse-port` worker prints nothing (its parent speaks for all of them)."""
    root = Path(args.root) if args.root else get_settings().home / "mail"
    handler = CaptureHandler(root)
    reuse = args.reuse_port or args.workers > 1
    controller = _controller(handler, args.host, args.port, reuse_port=reuse)
    controller.start()
    children = spawn_workers(args.host, args.port, root, args.workers - 1)
    if not args.reuse_port:
        print(
            f"smtp capture listening on {args.host}:{args.port} ({args.workers} process(es)), "
            f"filing messages under {root}",
            flush=True,
        )
    wait_for_stop()
    for child in children:
        child.terminate()
    for child in children:
        child.wait()
    controller.stop()
    handler.close()
    if not args.reuse_port:
        print(
            f"smtp capture stopped: {handler.received} received, {handler.duplicates} duplicates dropped "
            "(this process)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    """`python -m engage_assets.demo.smtp_capture`: parse the command line, then serve."""
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
