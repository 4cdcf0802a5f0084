"""Paced publishing of a simulated event stream (`engage simulate`, `engage_assets.demo.cart_simulator`): delivery
effects on the stream (duplicates, out-of-order windows), the sinks, and the rate control.

- `duplicated` re-publishes an entry a few events after its original (as a producer retrying a request would; the
  copy is the same entry, so its envelope differs only in the `id` ingest gives it); `shuffled` shuffles the stream
  within consecutive windows.
- `QueueSink` takes the ingest path `POST /v1/events` shares (`engage_assets.serving.ingest`): each PutEvents-sized
  request (10 entries, 256 KiB) checked and turned into envelopes, then every envelope of the call in one
  `EventSource.send`; `ApiSink` POSTs the requests to a running API (`ingest` scope).
- `simulate` paces in time slices (`SLICE_S`): a slice's events go out together, then the loop sleeps until they
  were due; a run that falls behind publishes a slice at a time without sleeping, until it catches up or its time
  is up.  No busy loop.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import NamedTuple, Protocol

import httpx

from engage_assets.domain.events import PutEventsRequestError, entry_size
from engage_assets.domain.events.envelope import MAX_ENTRIES, MAX_REQUEST_BYTES
from engage_assets.serving import ingest
from resources.events.base import EventSource
from resources.events.batching import pack

SLICE_S = 0.05
DUPLICATE_LAG = 50  # a duplicate is published again 1-50 events after its original


class SimulationAborted(Exception):
    """The sink cannot take events any more (the API is unreachable or refuses the key)."""


class Published(NamedTuple):
    """One entry of the stream: its detail-type, the PutEvents entry, and whether it re-publishes an earlier one."""

    detail_type: str
    entry: dict[str, str]
    duplicate: bool = False


def duplicated(events: Iterable[Published], share: float, rng: random.Random) -> Iterator[Published]:
    """The events, each published again 1-`DUPLICATE_LAG` events later with probability `share` (marked)."""
    pending: list[tuple[int, int, Published]] = []
    for n, event in enumerate(events):
        while pending and pending[0][0] <= n:
            yield heapq.heappop(pending)[2]
        yield event
        if share and rng.random() < share:
            heapq.heappush(pending, (n + rng.randint(1, DUPLICATE_LAG), n, event._replace(duplicate=True)))


def shuffled(events: Iterable[Published], window: int, rng: random.Random) -> Iterator[Published]:
    """The events shuffled within consecutive windows of `window` (as they come when `window` < 2)."""
    it = iter(events)
    if window < 2:
        yield from it
        return
    while chunk := list(islice(it, window)):
        rng.shuffle(chunk)
        yield from chunk


class Sink(Protocol):
    """Where the entries go: one PutEvents result per entry (`EventId`, or `ErrorCode` and `ErrorMessage`)."""

    name: str

    def publish(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """Publish the entries (any number); the results in order."""
        ...


class QueueSink:
    """The ingest path `POST /v1/events` takes, in process: PutEvents-sized requests checked and turned into
    envelopes (`ingest.prepare`), then all of them in one `EventSource.send` (`ingest.enqueue`)."""

    name = "queue"

    def __init__(self, source: EventSource) -> None:
        self.source = source

    def publish(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """Check every PutEvents-sized request, enqueue what passed in one send."""
        now = datetime.now(UTC)
        merged = ingest.Prepared(results=[])
        for batch in pack(entries, MAX_ENTRIES, MAX_REQUEST_BYTES, entry_size):
            chunk = [e for _, e in batch]
            try:
                prepared = ingest.prepare(chunk, now)
            except PutEventsRequestError as e:
                merged.results += [ingest.failure(e.code, str(e))] * len(chunk)
                continue
            offset = len(merged.results)
            merged.results += prepared.results
            merged.bodies += [(offset + i, body) for i, body in prepared.bodies]
        return list(ingest.enqueue(self.source, merged)["Entries"])


class ApiSink:
    """`POST /v1/events` of a running API, one PutEvents request of up to 10 entries at a time."""

    name = "api"

    def __init__(self, url: str, key: str, client: httpx.Client | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout_s)
        self.headers = {"X-API-Key": key}

    def publish(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """One request per PutEvents-sized batch; a request the API answers with an error fails its entries
        (`HTTP<status>`); SimulationAborted when the API is unreachable or refuses the key."""
        results: list[dict[str, str]] = []
        for batch in pack(entries, MAX_ENTRIES, MAX_REQUEST_BYTES, entry_size):
            chunk = [e for _, e in batch]
            try:
                r = self.client.post(f"{self.url}/v1/events", json={"Entries": chunk}, headers=self.headers)
            except httpx.TransportError as e:
                raise SimulationAborted(f"the API at {self.url} is unreachable ({type(e).__name__})") from None
            if r.status_code == 401:
                raise SimulationAborted("the API does not know the key (HTTP 401)")
            if r.status_code == 403:
                raise SimulationAborted("the key lacks the `ingest` scope (HTTP 403)")
            if r.status_code == 200:
                results += r.json()["Entries"]
            else:
                results += [ingest.failure(f"HTTP{r.status_code}", "The API refused the request.")] * len(chunk)
        return results

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


@dataclass(frozen=True)
class Plan:
    """How much to publish and how fast: `total` entries at `rate` a second; with `deadline_s`, the run stops when
    that many seconds have passed even if it is behind."""

    rate: float
    total: int
    deadline_s: float | None = None
    slice_s: float = SLICE_S


@dataclass
class Tally:
    """What a run published: accepted entries by type, the duplicates among them, failures by code."""

    published: int = 0
    attempted: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    failed_by_code: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    error: str | None = None

    def record(self, events: list[Published], results: list[dict[str, str]]) -> None:
        """Count one slice's results."""
        self.attempted += len(events)
        for event, result in zip(events, results, strict=True):
            if "EventId" in result:
                self.published += 1
                self.by_type[event.detail_type] += 1
                self.duplicates += event.duplicate
            else:
                self.failed_by_code[result.get("ErrorCode", "Unknown")] += 1


def simulate(
    events: Iterable[Published],
    sink: Sink,
    plan: Plan,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Tally:
    """Publish `plan.total` events in time slices: each slice's events at once, then sleep until they were due (a
    run behind publishes a slice at a time without sleeping).  Stops at the deadline, or when the sink gives up."""
    tally, it = Tally(), iter(events)
    per_slice = max(1, int(plan.rate * plan.slice_s))
    start = clock()
    while tally.attempted < plan.total:
        elapsed = clock() - start
        if plan.deadline_s is not None and elapsed >= plan.deadline_s:
            break
        due = min(plan.total, max(tally.attempted + 1, int(plan.rate * (elapsed + plan.slice_s))))
        batch = list(islice(it, min(due - tally.attempted, per_slice)))
        try:
            tally.record(batch, sink.publish([e.entry for e in batch]))
        except SimulationAborted as e:
            tally.error = str(e)
            break
        ahead = tally.attempted / plan.rate - (clock() - start)
        if ahead > 0:
            sleep(ahead)
    tally.elapsed_s = clock() - start
    return tally
