"""The AWS Lambda entry point of the reactive programs: an EventBridge target (one event) or an SQS batch.

`handle(event, context)`:
- an EventBridge event (a mapping with `detail-type`, or its JSON text/bytes): parsed and decided; the answer
  summarises the decision.  A malformed event is answered `rejected` with its reason (retrying cannot fix it); an
  event whose key another consumer is deciding raises `RetryLater`, so Lambda's retry policy tries it again;
- an SQS batch (`{"Records": [...]}`, each `body` an EventBridge event as the rule's queue target delivers it):
  decided as ONE micro-batch; the answer's `batchItemFailures` lists the messages SQS must deliver again: bodies
  that do not parse (after `maxReceiveCount` receives the queue's redrive moves them to the dead-letter queue,
  where they can be read) and events whose key another consumer holds.  If deciding fails, every message fails
  and the batch comes back whole (every write of the decision path is idempotent).  Quarantined events (an
  unknown customer) are not failures.

Every enabled reactive program in the program folder decides every batch (their dedup keys hold their id).  The
parts come from the environment's resources (`resources.by_env.reactive_resources`), built once per process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from engage_assets.domain.config import ReactiveProgram, load_programs
from engage_assets.domain.events import ParsedEvent, Rejected, parse_event
from engage_assets.reactive.decision import DecisionParts, DecisionResult, decide
from engage_assets.reactive.training import current_intent_model
from engage_assets.settings import Settings, get_settings
from resources.by_env import reactive_resources


class RetryLater(RuntimeError):
    """The event's key is being decided by another consumer: deliver it again later."""


def summary(result: DecisionResult) -> dict[str, Any]:
    """A decision as JSON-ready counts (no customer data)."""
    return {
        "stages": dict(result.stages),
        "removed": dict(result.removed),
        "duplicates": result.duplicates,
        "in_flight": len(result.in_flight),
        "quarantined": [{"eventId": q.event_id, "reason": q.reason} for q in result.quarantined],
        "candidates": len(result.candidates),
        "touches": result.touches.num_rows,
    }


def _loaded(event: Mapping[str, Any] | str | bytes) -> Any:
    """The event as JSON values when it is text that parses, else as given (parse_event answers for bad input)."""
    if isinstance(event, str | bytes | bytearray):
        try:
            return json.loads(event)
        except ValueError:
            return event
    return event


class Handler:
    """Decides events for a set of reactive programs, each with its parts."""

    def __init__(
        self,
        deciders: Sequence[tuple[ReactiveProgram, DecisionParts]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        """`deciders`: each program with its parts; `clock`: the decisions' `now`."""
        self.deciders = list(deciders)
        self.clock = clock

    def decide_all(self, events: Sequence[ParsedEvent]) -> dict[str, DecisionResult]:
        """Every program's decision on the batch, by program id."""
        now = self.clock()
        return {program.programId: decide(program, events, parts, now) for program, parts in self.deciders}

    def handle(self, event: Mapping[str, Any] | str | bytes, context: object | None = None) -> dict[str, Any]:
        """One EventBridge event or one SQS batch (module docstring)."""
        loaded = _loaded(event)
        if isinstance(loaded, Mapping) and isinstance(loaded.get("Records"), list):
            return self.handle_sqs(loaded["Records"])
        parsed = parse_event(loaded if isinstance(loaded, Mapping) else event)
        if isinstance(parsed, Rejected):
            return {"status": "rejected", "reason": parsed.reason, "detail": parsed.detail}
        results = self.decide_all([parsed])
        if any(r.in_flight for r in results.values()):
            raise RetryLater("another consumer holds this event's key; retry later")
        return {"status": "decided", "programs": {pid: summary(r) for pid, r in results.items()}}

    def handle_sqs(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """An SQS batch: one decision, `batchItemFailures` for the messages to deliver again."""
        failures: list[str] = []
        events: list[ParsedEvent] = []
        messages_of: dict[str, list[str]] = {}
        for record in records:
            message_id = str(record.get("messageId", ""))
            parsed = parse_event(record.get("body", ""))
            if isinstance(parsed, Rejected):
                failures.append(message_id)
                continue
            events.append(parsed)
            messages_of.setdefault(parsed.envelope.id, []).append(message_id)
        try:
            results = self.decide_all(events) if events else {}
        except Exception:  # noqa: BLE001 - the batch comes back whole; the queue retries it
            failed = failures + [m for ms in messages_of.values() for m in ms]
            return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
        held = {e for r in results.values() for e in r.in_flight}
        failures += [m for e in sorted(held) for m in messages_of.get(e, [])]
        return {
            "batchItemFailures": [{"itemIdentifier": m} for m in dict.fromkeys(failures)],
            "programs": {pid: summary(r) for pid, r in results.items()},
        }


def handler_from_settings(settings: Settings) -> Handler:
    """A handler for every enabled reactive program in the settings' program folder, on the environment's parts."""
    res = reactive_resources(settings)
    programs = [p for p in load_programs(settings.program_configs) if isinstance(p, ReactiveProgram)]
    if not programs:
        raise LookupError(f"no enabled reactive program in {settings.program_configs}")
    registry = res["models"].registry()
    ledger = res["delivery_ledger"].ledger()
    return Handler(
        [
            (
                program,
                DecisionParts(
                    warehouse=res["warehouse"],
                    scoring=res["scoring"],
                    model=current_intent_model(program, registry),
                    store=res["store"],
                    ledger=ledger,
                    dedup=res["dedup"],
                    cart_state=res["cart_state"],
                ),
            )
            for program in programs
        ]
    )


@lru_cache(maxsize=1)
def default_handler() -> Handler:
    """The process's handler, built from the environment on first use (a Lambda container keeps it warm)."""
    return handler_from_settings(get_settings())


def handle(event: Mapping[str, Any] | str | bytes, context: object | None = None) -> dict[str, Any]:
    """The Lambda handler: see the module docstring."""
    return default_handler().handle(event, context)
