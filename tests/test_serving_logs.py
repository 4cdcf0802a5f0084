"""Batched request logs: every line arrives, in order, without a write per request."""

from __future__ import annotations

import io
import logging
import time

from engage_assets.serving.logs import FORMAT, BatchedStreamHandler


class CountingStream(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def _logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"test.batched.{id(handler)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    handler.setFormatter(logging.Formatter(FORMAT))
    return log


def test_lines_are_written_in_batches_in_order_and_on_close():
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=60)  # the timer never fires here: only close writes
    log = _logger(handler)
    for i in range(500):
        log.info("GET %s %d", "/v1/programs/{program}/candidates/by-score", i)
    assert stream.writes == 0  # nothing written inside the requests
    handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 500 and stream.writes == 1
    assert [int(line.rsplit(" ", 1)[1]) for line in lines] == list(range(500))
    assert " INFO test.batched." in lines[0]


def test_the_timer_and_a_warning_flush():
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=0.05)
    log = _logger(handler)
    log.info("one")
    deadline = time.monotonic() + 5
    while "one" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "one" in stream.getvalue()
    slow = BatchedStreamHandler(CountingStream(), interval=60)
    log2 = _logger(slow)
    log2.info("before")
    log2.warning("store unavailable")  # a warning wakes the writer at once, with what came before it
    deadline = time.monotonic() + 5
    while "store unavailable" not in slow.stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.stream.getvalue().splitlines()[0].endswith("before")
    handler.close()
    slow.close()


def test_close_ends_the_writer_thread():
    handler = BatchedStreamHandler(CountingStream(), interval=60)
    assert handler._thread.is_alive()
    _logger(handler).info("last")
    handler.close()
    handler._thread.join(timeout=5)
    assert not handler._thread.is_alive() and handler.stream.getvalue().endswith("last\n")
