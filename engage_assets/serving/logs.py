"""Request logs without a write per request.

The serving API logs one line per request (route template, status, latency, key id: never a path or query value).
A plain StreamHandler formats and writes (a syscall, and a flush) inside every request: on the 2-core benchmark that
was a quarter of the API's throughput (one worker: 3,139 req/s with request logs, 4,210 without).
`BatchedStreamHandler` formats the record in the request (formatting a second's records at once would hold the GIL
for tens of milliseconds: a p99 spike) and a background thread writes the queued lines in one write every
`interval` seconds, at once for a warning or worse, and on close (graceful shutdown: `logging.shutdown` flushes).  A SIGKILL can lose the last `interval` of request lines, never an error line's
predecessors once the error is logged.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class BatchedStreamHandler(logging.Handler):
    """Formats each record at once, writes the queued lines from a background thread (see the module's docstring):
    every `interval` seconds, at once for a warning or worse or `capacity` pending lines, and on close."""

    def __init__(self, stream: TextIO, interval: float = 0.5, capacity: int = 2_000) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.capacity = capacity
        self._pending: list[str] = []
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:  # called under self.lock (Handler.handle)
        """Queue the formatted record; wake the writer for a warning or worse, or a full queue."""
        try:
            self._pending.append(self.format(record))  # formatted here: spread over requests, not in bursts
        except Exception:  # noqa: BLE001 - logging must never take the service down
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or len(self._pending) >= self.capacity:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write the pending lines in one write."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self.stream.write("\n".join(batch) + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging must never take the service down
            pass  # the stream is gone (closed pipe): nothing left to report it to

    def close(self) -> None:
        """Stop the writer thread and write what is pending."""
        # The writer thread ends after its next flush (no join: logging.shutdown calls close holding self.lock,
        # which that flush may be waiting for); what is pending is written here.
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """`logging.basicConfig` with the batched handler: a no-op when the root logger already has handlers."""
    root = logging.getLogger()
    if root.handlers:
        return
    # The logging HOWTO's "Optimization": the request line needs no caller frame, thread or process fields, and
    # computing them is most of a record's cost.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchedStreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
