"""Refunds and credits reach the systems that pay them (`resources.refund_events`): each processed issuance is
published once, keyed by the ledger's id; a failed publication stays `issued` and the next run publishes it again
with the same idempotency key; re-running the issuing step never issues nor publishes twice."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest

from engage_assets.assets.delivery import plan_partition
from engage_assets.domain.sources import PartitionWindow
from resources.aws import AwsClientConfig
from resources.delivery_ledger.resource import SqliteDeliveryLedgerResource
from resources.engagement.sqlite import SqliteEngagementStore
from resources.events.eventbridge import provision_eventbridge_to_sqs
from resources.refund_events.base import SOURCE, RefundEvent, RefundEventPublisher, publish_issuances
from resources.refund_events.eventbridge import EventBridgeRefundPublisher
from resources.refund_events.local import LocalRefundEventLog
from resources.refund_ledger.dynamodb import DynamoDbRefundLedger
from resources.refund_ledger.resource import DynamoDbRefundLedgerResource, SqliteRefundLedgerResource
from resources.refund_ledger.sqlite import MIGRATIONS, RefundLedger
from resources.sqlite_migrations import schema_version
from tests.test_gdpr_midrun import Contacts
from tests.test_refunds import REFUNDS, refund_offers, refund_plan, with_budget

REGION = "us-east-1"
PARTITION = "2026-11-21"
PROGRAM = with_budget(REFUNDS, 10_000)


def issue_and_publish(ledger: Any, publisher: RefundEventPublisher, plan: Any) -> tuple[Any, Any]:
    """The touch plan's issuing step: issue the plan's candidates, then publish what is unacknowledged."""
    return ledger.issue(PROGRAM, plan, PARTITION), publish_issuances(ledger, publisher, PROGRAM.programId)


class Recording(RefundEventPublisher):
    """Acknowledges every event but those whose ids `refuse` names (consumed once each); records every offer."""

    def model_post_init(self, context: Any) -> None:
        self._offers: list[RefundEvent] = []
        self._refuse: set[str] = set()

    def publish(self, events: Sequence[RefundEvent]) -> set[str]:
        self._offers.extend(events)
        refused, self._refuse = self._refuse & {e.event_id for e in events}, set()
        return {e.event_id for e in events} - refused


def issuance_ids(ledger: RefundLedger) -> set[str]:
    return {r[0] for r in ledger.conn().execute("SELECT issuance_id FROM issuances WHERE state = 'processed'")}


def test_an_issuance_is_published_once_and_a_rerun_neither_issues_nor_publishes_again(tmp_path):
    ledger, log = RefundLedger(tmp_path / "refunds.sqlite"), LocalRefundEventLog(path=str(tmp_path / "events.sqlite"))
    issued, published = issue_and_publish(ledger, log, refund_plan(PROGRAM, 3))
    assert issued.processed == 3 and (published.published, published.failed) == (6, 0)  # full refund + credit each
    events = log.events()
    assert {e["event_id"] for e in events} == issuance_ids(ledger) and len(events) == 6
    assert all(e["detail"]["idempotencyKey"] == e["event_id"] == e["detail"]["issuanceId"] for e in events)
    assert {e["detail_type"] for e in events} == {"Refund Issued", "Credit Issued"}
    assert ledger.unpublished(PROGRAM.programId) == []

    again, republished = issue_and_publish(ledger, log, refund_plan(PROGRAM, 3))
    assert (again.processed, again.already_issued) == (0, 3) and (republished.published, republished.failed) == (0, 0)
    assert log.events() == events and len(issuance_ids(ledger)) == 6


def test_a_failed_publication_stays_issued_and_the_next_run_publishes_it_with_the_same_key(tmp_path):
    ledger, publisher = RefundLedger(tmp_path / "refunds.sqlite"), Recording()
    ledger.issue(PROGRAM, refund_plan(PROGRAM, 2), PARTITION)
    first = sorted(r["issuance_id"] for r in ledger.unpublished(PROGRAM.programId))
    publisher._refuse = {first[0]}
    published = publish_issuances(ledger, publisher, PROGRAM.programId)
    assert (published.published, published.failed) == (len(first) - 1, 1)
    assert [r["issuance_id"] for r in ledger.unpublished(PROGRAM.programId)] == [first[0]]  # still issued

    again, retried = issue_and_publish(ledger, publisher, refund_plan(PROGRAM, 2))  # the next run
    assert again.already_issued == 2 and (retried.published, retried.failed) == (1, 0)
    offered = [e.event_id for e in publisher._offers]
    assert sorted(offered) == sorted([*first, first[0]])  # the failed one offered twice, every other once
    twice = [e.detail for e in publisher._offers if e.event_id == first[0]]
    assert twice[0] == twice[1] and twice[0]["idempotencyKey"] == first[0]
    assert ledger.unpublished(PROGRAM.programId) == [] and len(issuance_ids(ledger)) == len(first)


def test_approved_issuances_are_published_by_the_next_run(tmp_path):
    ledger, publisher = RefundLedger(tmp_path / "refunds.sqlite"), Recording()
    program = with_budget(REFUNDS, 10_000, require_approval=True)
    ledger.issue(program, refund_plan(program, 1), PARTITION)
    assert publish_issuances(ledger, publisher, program.programId).published == 0  # waiting for approval
    ledger.approve([p["issuance_id"] for p in ledger.pending(program.programId)], "ops")
    assert publish_issuances(ledger, publisher, program.programId).published == 2


def test_a_ledger_file_from_before_publishing_migrates_and_publishes_its_issuances(tmp_path):
    path = tmp_path / "refunds.sqlite"
    old = RefundLedger(path)
    old.issue(PROGRAM, refund_plan(PROGRAM, 1), PARTITION)
    old.close()
    with sqlite3.connect(path) as conn:  # the file as the ledger before publishing left it
        conn.execute("DROP INDEX issuances_outbox")
        conn.execute("ALTER TABLE issuances DROP COLUMN published_at")
        conn.execute("PRAGMA user_version = 0")
    ledger = RefundLedger(path)
    assert publish_issuances(ledger, Recording(), PROGRAM.programId).published == 2
    assert schema_version(ledger.conn()) == len(MIGRATIONS) == 2


class FailingOnce:
    """An EventBridge client whose first PutEvents fails its first entry (FailedEntryCount 1)."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls.append(Entries)
        answers: list[dict[str, Any]] = [{"EventId": uuid.uuid4().hex} for _ in Entries]
        if len(self.calls) == 1:
            answers[0] = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
        return {"FailedEntryCount": int(len(self.calls) == 1), "Entries": answers}


def test_eventbridge_failed_entries_are_published_again_by_the_next_run_with_the_same_detail(tmp_path):
    ledger = RefundLedger(tmp_path / "refunds.sqlite")
    publisher = EventBridgeRefundPublisher(region_name=REGION, event_bus_name="billing")
    client = publisher._client = FailingOnce()
    _, first = issue_and_publish(ledger, publisher, refund_plan(PROGRAM, 6))  # 12 issuances: two PutEvents
    assert (first.published, first.failed) == (11, 1) and [len(c) for c in client.calls] == [10, 2]
    failed = client.calls[0][0]
    assert [r["issuance_id"] for r in ledger.unpublished(PROGRAM.programId)] == [
        json.loads(failed["Detail"])["issuanceId"]
    ]

    _, second = issue_and_publish(ledger, publisher, refund_plan(PROGRAM, 6))
    assert (second.published, second.failed) == (1, 0) and client.calls[2] == [failed]  # same entry, same key
    assert failed["Source"] == SOURCE and failed["EventBusName"] == "billing"
    _, third = issue_and_publish(ledger, publisher, refund_plan(PROGRAM, 6))
    assert (third.published, len(client.calls)) == (0, 3)


def test_on_moto_the_event_reaches_the_bus_and_its_rule_s_queue(tmp_path, moto_endpoint):
    suffix = uuid.uuid4().hex[:10]
    config = AwsClientConfig(region_name=REGION, endpoint_url=moto_endpoint)
    queue_url, _, _ = provision_eventbridge_to_sqs(
        config,
        event_bus_name=f"billing-{suffix}",
        rule_name=f"refunds-{suffix}",
        event_pattern={"source": [SOURCE]},
        queue_name=f"refunds-{suffix}",
        dlq_name=f"refunds-dlq-{suffix}",
        max_receive_count=3,
    )
    ledger = RefundLedger(tmp_path / "refunds.sqlite")
    publisher = EventBridgeRefundPublisher(
        region_name=REGION, endpoint_url=moto_endpoint, event_bus_name=f"billing-{suffix}"
    )
    _, published = issue_and_publish(ledger, publisher, refund_plan(PROGRAM, 1))
    assert published.published == 2
    sqs = config.aws_client("sqs")
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    ]
    assert {b["detail"]["idempotencyKey"] for b in bodies} == issuance_ids(ledger)
    assert len(bodies) == 2 and {b["source"] for b in bodies} == {SOURCE}
    assert {b["detail-type"] for b in bodies} == {"Refund Issued", "Credit Issued"}


@pytest.fixture
def dynamo_ledger(moto_endpoint) -> DynamoDbRefundLedger:
    resource = DynamoDbRefundLedgerResource(
        table_name=f"refunds-{uuid.uuid4().hex[:10]}", region_name=REGION, endpoint_url=moto_endpoint
    )
    resource.create_table()
    resource.create_table()  # idempotent: an existing table keeps (or gets) its indexes
    return resource.ledger()


def test_dynamodb_ledger_publishes_once_and_retries_what_failed(dynamo_ledger):
    publisher = Recording()
    issued, published = issue_and_publish(dynamo_ledger, publisher, refund_plan(PROGRAM, 2))
    assert issued.processed == 2 and (published.published, published.failed) == (4, 0)
    ids = sorted(e.event_id for e in publisher._offers)
    assert dynamo_ledger.unpublished(PROGRAM.programId) == []
    _, again = issue_and_publish(dynamo_ledger, publisher, refund_plan(PROGRAM, 2))
    assert again.published == 0 and sorted(e.event_id for e in publisher._offers) == ids
    assert dynamo_ledger.mark_published(ids) == 0  # already published: the first acknowledgement stands

    program = with_budget(REFUNDS, 10_000, require_approval=True)
    dynamo_ledger.issue(program, refund_plan(program, 1, start=10), PARTITION)
    dynamo_ledger.approve([p["issuance_id"] for p in dynamo_ledger.pending(program.programId)], "ops")
    publisher._refuse = {dynamo_ledger.unpublished(program.programId)[0]["issuance_id"]}
    assert (publish_issuances(dynamo_ledger, publisher, program.programId).failed) == 1
    assert publish_issuances(dynamo_ledger, publisher, program.programId).published == 1


def test_dynamodb_issuances_processed_before_the_outbox_are_enrolled_and_published_once(moto_endpoint):
    """A table written by a version without publishing: processed issuances without outbox keys.  create_table (what
    `engage create-tables` runs on a deploy) enrols them; a pending one is not enrolled; a published one never again."""
    resource = DynamoDbRefundLedgerResource(
        table_name=f"refunds-{uuid.uuid4().hex[:10]}", region_name=REGION, endpoint_url=moto_endpoint
    )
    resource.create_table()
    ledger = resource.ledger()
    ledger.issue(PROGRAM, refund_plan(PROGRAM, 2), PARTITION)
    queued = with_budget(REFUNDS, 10_000, require_approval=True)
    ledger.issue(queued, refund_plan(queued, 1, start=10), PARTITION)
    client = ledger.client()
    processed = [i for i in client.scan(TableName=resource.table_name)["Items"] if "outboxPk" in i]
    for item in processed:  # what the pre-outbox version wrote: no outbox keys
        key = {"pk": item["pk"], "sk": item["sk"]}
        client.update_item(TableName=resource.table_name, Key=key, UpdateExpression="REMOVE outboxPk, outboxSk")
    assert len(processed) == 4 and ledger.unpublished(PROGRAM.programId) == []

    resource.create_table()
    ids = {r["issuance_id"] for r in ledger.unpublished(PROGRAM.programId)}
    assert len(ids) == 4 and ledger.pending(queued.programId)  # the queued issuance stays queued, not enrolled
    publisher = Recording()
    assert publish_issuances(ledger, publisher, PROGRAM.programId).published == 4
    resource.create_table()  # published: never enrolled again
    assert ledger.unpublished(PROGRAM.programId) == []
    assert sorted(e.event_id for e in publisher._offers) == sorted(ids)


def test_the_touch_plan_issues_and_publishes_once_however_often_it_runs(tmp_path):
    offers = refund_offers(3)
    resources = SimpleNamespace(
        engagement=SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite")),
        delivery_ledger=SqliteDeliveryLedgerResource(path=str(tmp_path / "delivery.sqlite")),
        refund_ledger=SqliteRefundLedgerResource(path=str(tmp_path / "refunds.sqlite")),
        refund_events=LocalRefundEventLog(path=str(tmp_path / "refund_events.sqlite")),
        warehouse=Contacts(offers.column("customer_id").to_pylist()),
    )
    window = PartitionWindow(PARTITION, date(2026, 11, 21), date(2026, 11, 22))
    _, meta = plan_partition(PROGRAM, window, offers, resources)
    assert (meta["refunds/processed"], meta["refunds/events_published"], meta["refunds/events_failed"]) == (3, 6, 0)
    _, rerun = plan_partition(PROGRAM, window, offers, resources)
    assert (rerun["refunds/processed"], rerun["refunds/already_issued"], rerun["refunds/events_published"]) == (0, 3, 0)
    events = resources.refund_events.events()
    ledger = resources.refund_ledger.ledger()
    assert len(events) == 6 and {e["event_id"] for e in events} == issuance_ids(ledger)
