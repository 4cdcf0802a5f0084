"""The cart-event sensor of a reactive program: drains the event queue into durable hourly batches and launches one
`<group>_decide` run per batch.

Every tick (`drain_events`):
0. backpressure: while `MAX_RUNS_IN_FLIGHT` decision runs of the program are queued or running, the tick drains
   nothing (a `SkipReason` says so) and the events wait in the queue, untouched; the next tick then takes them all
   in larger batches.  A run costs seconds to launch (a new process imports the code location) and the events of one
   batch cost well under a millisecond each to decide, so under load fewer, larger runs keep up where one small
   run per tick would queue without end;
1. receive messages from the `events` resource (SQS semantics, `resources.events.base`), `max_messages` per
   receive, until the queue is empty or `MAX_PER_TICK` messages were received;
2. parse each body (`parse_event`); a body that does not parse, or whose time lies outside the program's hourly
   partitions, is quarantined in the dead-letter store with its reason code and never stops the sensor;
3. group the accepted messages by the hour (UTC) of the event's own time (`detail.timestamp`): that hour is the
   run's partition, so a backfill of an hour replays what arrived for it;
4. write each group durably (`resources.event_batches`) BEFORE deleting (acking) its messages: a crash in between
   redelivers them, and a redelivered batch has the same batch id, so the same run key;
5. one `RunRequest(partition_key=hour, run_key="<programId>:<batch_id>")` per batch: Dagster creates each run
   once (ARCHITECTURE §10), and `decide` is idempotent besides (dedup claims, replace-the-partition writes).

The cursor is JSON counts (received, batches, quarantined, last batch); an empty queue is a `SkipReason`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from engage_assets.domain.config import ReactiveProgram
from engage_assets.domain.events import Rejected, parse_event
from resources.event_batches import BatchLine, EventBatchStore
from resources.events.base import EventSource, Message

MAX_MESSAGES = 500  # per receive call (SQS allows 10 per call; the local queue any number)
MAX_PER_TICK = 5_000  # per tick: one hour's batch holds at most this many events
MAX_RUNS_IN_FLIGHT = 2  # decision runs queued or running before the sensor stops draining (backpressure)
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
HOUR_FORMAT = "%Y-%m-%d-%H:%M"  # dg.HourlyPartitionsDefinition's default key format
OUTSIDE_PARTITIONS = "outside_partitions"
DECISION_ASSET = "cart_decisions"


@dataclass(frozen=True)
class Batch:
    """One durable batch: its hour partition, id and number of messages."""

    partition: str
    batch_id: str
    size: int

    def run_key(self, program_id: str) -> str:
        """The batch's run key: the same for the same messages, however often they are delivered."""
        return f"{program_id}:{self.batch_id}"


@dataclass
class Drained:
    """What one drain did: messages received, batches written, quarantined messages by reason."""

    received: int = 0
    batches: list[Batch] = field(default_factory=list)
    quarantined: Counter[str] = field(default_factory=Counter)


def hour_partition(at: datetime) -> str:
    """The hourly partition key (UTC) of an instant: its hour's start."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0).strftime(HOUR_FORMAT)


def _partition_of(program: ReactiveProgram, body: str, now: float) -> str:
    """The message's hour partition, or a `Rejected`-style reason code (prefixed `!`) when it has none."""
    parsed = parse_event(body)
    if isinstance(parsed, Rejected):
        return "!" + parsed.reason
    at = parsed.detail.timestamp
    start = datetime.combine(program.partitionsStart, datetime.min.time(), tzinfo=UTC)
    # The partitions run up to the current hour (end_offset=1); an event from the future has no partition yet.
    if at < start or at.timestamp() >= now + 3600:
        return "!" + OUTSIDE_PARTITIONS
    return hour_partition(at)


def receive_backlog(events: EventSource, max_messages: int, max_per_tick: int) -> list[Message]:
    """Receive until the queue is empty, `max_per_tick` messages came, or a message came twice (its visibility
    timeout ran out during the tick: the queue has gone round); each message once, with its newest receipt."""
    by_id: dict[str, Message] = {}
    while len(by_id) < max_per_tick:
        got = events.receive(min(max_messages, max_per_tick - len(by_id)))
        again = any(m.message_id in by_id for m in got)
        by_id.update((m.message_id, m) for m in got)
        if again or len(got) < max_messages:
            break
    return list(by_id.values())


def drain_events(
    program: ReactiveProgram,
    events: EventSource,
    store: EventBatchStore,
    max_messages: int = MAX_MESSAGES,
    now: float | None = None,
    max_per_tick: int = MAX_PER_TICK,
) -> Drained:
    """Receive, parse, quarantine, write the batches durably, then delete their messages (module docstring)."""
    now = time.time() if now is None else now
    messages = receive_backlog(events, max_messages, max_per_tick)
    out = Drained(received=len(messages))
    groups: dict[str, list[Message]] = {}
    for message in messages:
        partition = _partition_of(program, message.body, now)
        if partition.startswith("!"):
            events.quarantine(message, partition[1:])
            out.quarantined[partition[1:]] += 1
            continue
        groups.setdefault(partition, []).append(message)
    for partition, group in sorted(groups.items()):
        lines = [BatchLine(m.message_id, m.body) for m in group]
        batch_id = store.write(program.programId, partition, lines)
        out.batches.append(Batch(partition, batch_id, len(group)))
    # Only now, every batch on disk: ack its messages.
    events.delete([m.receipt_handle for group in groups.values() for m in group])
    return out


def run_requests(program: ReactiveProgram, drained: Drained) -> list[dg.RunRequest]:
    """One run request per batch: its partition, its stable run key, its batch id in the run config."""
    return [
        dg.RunRequest(
            run_key=b.run_key(program.programId),
            partition_key=b.partition,
            run_config={"ops": {f"{program.group}__{DECISION_ASSET}": {"config": {"batch_ids": [b.batch_id]}}}},
            tags={"engage/program": program.programId, "engage/event_batch": b.batch_id, "engage/events": str(b.size)},
        )
        for b in drained.batches
    ]


def _cursor(previous: str | None, drained: Drained) -> str:
    counts = json.loads(previous) if previous else {}
    for name, n in (
        ("received", drained.received),
        ("batches", len(drained.batches)),
        ("quarantined", sum(drained.quarantined.values())),
    ):
        counts[name] = int(counts.get(name, 0)) + n
    if drained.batches:
        counts["last_batch"] = drained.batches[-1].batch_id
    return json.dumps(counts, sort_keys=True)


def runs_in_flight(instance: dg.DagsterInstance, job_name: str) -> int:
    """How many runs of the job are queued or running (at most `MAX_RUNS_IN_FLIGHT` are counted)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=MAX_RUNS_IN_FLIGHT
    )
    return len(records)


def build_cart_event_sensor(
    program: ReactiveProgram, job_name: str, max_messages: int = MAX_MESSAGES
) -> dg.SensorDefinition:
    """`<group>_cart_events`: drain the queue every 2 s into durable batches, one `job_name` run per batch."""

    @dg.sensor(
        name=f"{program.group}_cart_events",
        job_name=job_name,
        minimum_interval_seconds=2,  # the event path: a posted event waits at most ~2 s for the tick that reads it
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"{program.programName}: drain cart events into durable hourly batches; one decision run "
        "per batch (run key from the batch's message ids). Malformed events go to the dead-letter store.",
    )
    def cart_events(context: dg.SensorEvaluationContext, events: EventSource, event_batches: EventBatchStore):
        in_flight = runs_in_flight(context.instance, job_name)
        if in_flight >= MAX_RUNS_IN_FLIGHT:
            return dg.SkipReason(f"{in_flight} decision runs queued or running: the events wait in the queue")
        drained = drain_events(program, events, event_batches, max_messages)
        if drained.received:
            context.update_cursor(_cursor(context.cursor, drained))
        if drained.quarantined:
            context.log.warning(f"quarantined: {dict(drained.quarantined)}")
        if not drained.batches:
            return dg.SkipReason(
                "no events in the queue"
                if not drained.received
                else f"{drained.received} received, every one quarantined"
            )
        return run_requests(program, drained)

    return cart_events
