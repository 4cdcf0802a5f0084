"""The daily GDPR sweep (`engage_assets.assets.gdpr`) on local parts: besides the exports of configured programs and
the ledger, it reaches the exports of a disabled (unconfigured) program, the candidate store, the stage and
rejection files, the SMS and push outboxes and the SMTP capture's `.eml` files; a second sweep finds nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engage_assets.assets.gdpr import ErasureTargets, erase_recorded_deletions
from resources.channels.base import OutboundMessage, capture_path, erase_captured_mail
from resources.channels.mime import mime_bytes
from resources.channels.outbox import OutboxPushChannel, OutboxSmsChannel
from resources.channels.smtp import SmtpEmailChannel
from resources.delivery_ledger.resource import SqliteDeliveryLedgerResource
from resources.engagement.sqlite import SqliteEngagementStore
from resources.exports.local import LocalParquetExports
from resources.staging import RejectionLogResource
from resources.store.sqlite import SqliteCandidateStore
from tests import test_exports

s3_exports = test_exports.s3_exports  # a fresh bucket on the moto server

GONE, KEPT = "C_GONE", "C_KEPT"
EMAIL = {GONE: "gone@example.com", KEPT: "kept@example.com"}
NOW = 1_800_000_000


def _message(customer: str, key: str) -> OutboundMessage:
    return OutboundMessage(
        idempotency_key=key,
        touch_key_hash=key[:12],
        program_id="win-back-campaigns",
        customer_id=customer,
        channel="email",
        to=EMAIL[customer],
        subject="We miss you",
        text="Come back",
        now=NOW,
    )


def _candidate(customer: str) -> dict:
    return {
        "customerId": customer,
        "programId": "win-back-campaigns",
        "partitionKey": "2026-11-02",
        "score": 0.5,
        "holdout": False,
        "channels": ["email"],
        "expiresAt": NOW + 86_400,
    }


@pytest.fixture
def home(tmp_path: Path):
    """Every local part holding both customers; GONE's deletion recorded."""
    warehouse = str(tmp_path / "warehouse.duckdb")
    duckdb.connect(warehouse).close()
    parts = {
        "engagement": SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite")),
        "exports": LocalParquetExports(root=str(tmp_path / "exports"), warehouse_path=warehouse),
        "ledger": SqliteDeliveryLedgerResource(path=str(tmp_path / "delivery.sqlite")),
        "store": SqliteCandidateStore(path=str(tmp_path / "store.sqlite")),
        "stages": RejectionLogResource(base_path=str(tmp_path / "stages")),
    }
    both = pa.table({"customer_id": [GONE, KEPT], "score": [0.5, 0.7]})
    # A disabled program (not among the configured groups) still has exports; a configured one too.
    parts["exports"].write_partition("old_program", "2026-01-05", both)
    parts["exports"].write_partition("win_back", "2026-11-02", both)
    parts["store"].replace_partition("win-back-campaigns", "2026-11-02", [_candidate(GONE), _candidate(KEPT)])
    stages = tmp_path / "stages" / "win_back"
    (stages / "offers").mkdir(parents=True)
    pq.write_table(both, stages / "offers" / "2026-11-02.parquet")
    pq.write_table(pa.table({"model": ["m"]}), stages / "offers" / "no_customers.parquet")
    parts["stages"].write("win_back", "eligible_candidates", "2026-11-02", both)
    # A source stage written in buckets: a folder named like a file, one file per bucket (one holds GONE).
    buckets = stages / "source_candidates" / "2026-11-02.parquet"
    buckets.mkdir(parents=True)
    pq.write_table(both, buckets / "bucket-0000.parquet")
    pq.write_table(pa.table({"customer_id": [KEPT], "score": [0.1]}), buckets / "bucket-0001.parquet")
    channels = {
        "sms_channel": OutboxSmsChannel(root=str(tmp_path / "outbox")),
        "push_channel": OutboxPushChannel(root=str(tmp_path / "outbox")),
        "email_channel": SmtpEmailChannel(capture_dir=str(tmp_path / "mail")),
    }
    for key in ("sms_channel", "push_channel"):
        session = channels[key].open()
        for customer in (GONE, KEPT):
            session.send(_message(customer, f"{key}-{customer}"))
        session.close()
    for customer in (GONE, KEPT):
        path = capture_path(tmp_path / "mail", "win-back-campaigns", f"key-{customer}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mime_bytes(_message(customer, f"key-{customer}"), "Engage <offers@engage.local>"))
    parts["engagement"].delete_customer(GONE, now=NOW)
    lookups: list[list[str]] = []

    def contacts(ids: list[str]) -> dict:
        lookups.append(ids)
        return {c: {"email": EMAIL[c]} for c in ids if c in EMAIL}

    targets = ErasureTargets(
        engagement=parts["engagement"],
        exports=parts["exports"],
        ledger=parts["ledger"],
        store=parts["store"],
        stages=parts["stages"],
        channels=channels,
        contacts=contacts,
    )
    return tmp_path, targets, lookups


def _outbox_customers(path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT customer_id FROM messages"))


def test_the_sweep_reaches_every_copy_and_keeps_everyone_else(home):
    tmp_path, targets, lookups = home
    counts = erase_recorded_deletions(targets, groups=["win_back"])
    assert counts["deleted_customers"] == 1
    assert counts["export_partitions_rewritten"] == 2 and counts["export_rows_removed"] == 2
    assert counts["store_candidates_removed"] == 1
    assert counts["stage_files_rewritten"] == 3 and counts["stage_rows_removed"] == 3
    assert counts["sms_messages_removed"] == counts["push_messages_removed"] == counts["email_messages_removed"] == 1
    assert lookups == [[GONE]]  # contact rows read once, for the e-mail captures

    for group, key in (("old_program", "2026-01-05"), ("win_back", "2026-11-02")):
        assert targets.exports.read_partition(group, key).column("customer_id").to_pylist() == [KEPT]
    assert targets.store is not None
    assert targets.store.customer_candidates(GONE, now=NOW) == []
    assert len(targets.store.customer_candidates(KEPT, now=NOW)) == 1
    for path in (tmp_path / "stages").rglob("*.parquet"):
        if path.is_dir():  # a bucketed stage: its files are listed on their own
            continue
        table = pq.read_table(path)
        if "customer_id" in table.column_names:
            assert table.column("customer_id").to_pylist() == [KEPT], path
        else:
            assert table.num_rows == 1  # a file without customers is left alone
    assert _outbox_customers(tmp_path / "outbox" / "sms.sqlite") == [KEPT]
    assert _outbox_customers(tmp_path / "outbox" / "push.sqlite") == [KEPT]
    assert [p.name for p in (tmp_path / "mail").rglob("*.eml")] == [f"key-{KEPT}.eml"]

    again = erase_recorded_deletions(targets, groups=["win_back"])
    assert again["deleted_customers"] == 1
    assert {k: v for k, v in again.items() if k != "deleted_customers"} == dict.fromkeys(
        again.keys() - {"deleted_customers"}, 0
    )


def test_nothing_to_erase_reads_nothing(home):
    tmp_path, targets, lookups = home
    targets.engagement = SqliteEngagementStore(path=str(tmp_path / "nobody.sqlite"))
    counts = erase_recorded_deletions(targets, groups=["win_back"])
    assert counts["deleted_customers"] == 0 and lookups == []
    assert len(list((tmp_path / "mail").rglob("*.eml"))) == 2


def test_captured_mail_is_matched_by_the_to_address_only(tmp_path):
    path = capture_path(tmp_path, "p", "k1")
    path.parent.mkdir(parents=True)
    message = _message(KEPT, "k1")
    message.text = f"Forwarded by {EMAIL[GONE]}"  # the body is not the recipient
    path.write_bytes(mime_bytes(message, "Engage <offers@engage.local>"))
    assert erase_captured_mail(tmp_path, [EMAIL[GONE].upper()]) == 0
    assert erase_captured_mail(tmp_path, [EMAIL[KEPT].upper()]) == 1
    assert not path.exists()


def test_local_and_s3_exports_list_every_program_with_exports(tmp_path, s3_exports):
    both = pa.table({"customer_id": [GONE, KEPT]})
    warehouse = str(tmp_path / "warehouse.duckdb")
    local = LocalParquetExports(root=str(tmp_path / "exports"), warehouse_path=warehouse)
    assert local.programs() == []
    local.write_partition("win_back", "2026-11-02", both)
    local.write_partition("old_program", "2026-01-05", both)
    (tmp_path / "exports" / "empty_dir").mkdir()
    assert local.programs() == ["old_program", "win_back"]

    s3 = s3_exports[0]
    assert s3.programs() == []
    s3.write_partition("win_back", "2026-11-02", both)
    s3.write_partition("old_program", "2026-01-05", both)
    assert s3.programs() == ["old_program", "win_back"]
