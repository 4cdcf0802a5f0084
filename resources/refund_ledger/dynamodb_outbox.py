"""Issuances processed before the refund ledger had an outbox, enrolled in it, so their events are published too.

A DynamoDB table written by a version without publishing (`resources.refund_events`) holds processed issuances
with neither `publishedAt` nor the sparse `outbox` index's keys: `unpublished` never lists them, so the order and
billing systems would never hear of those refunds.  `enroll_legacy_issuances` (run by `create_table`, i.e. by
`engage create-tables` on each deploy) scans for them and gives each its outbox keys, dated when it was processed,
so the next run publishes it under its issuance id like any other.  The SQLite ledger does the same in its schema
migration (version 2: a processed row without `published_at` is in the outbox).

Each enrolment is one conditional update (still processed, still unpublished, not enrolled), so it is idempotent
and never re-enrols an issuance a run published meanwhile.  The scan reads the whole table once per call (on-demand
read units for every item); an enrolled or published issuance is not written again.
"""

from __future__ import annotations

from resources.dynamodb import DynamoDbTable, Update, scan_items, sortable_int
from resources.refund_ledger.dynamodb_keys import KINDS, item_key, item_values

# Processed issuances that are neither published nor in the outbox: what a pre-outbox version left behind.
LEGACY_FILTER = (
    "#state = :processed AND sk IN (:kind0, :kind1) "
    "AND attribute_not_exists(publishedAt) AND attribute_not_exists(outboxPk)"
)


def enroll_legacy_issuances(table: DynamoDbTable) -> int:
    """Put every processed, unpublished issuance missing from the outbox into it; how many were enrolled."""
    raw_items = scan_items(
        table.client(),
        TableName=table.table_name,
        FilterExpression=LEGACY_FILTER,
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={
            ":processed": {"S": "processed"},
            **{f":kind{i}": {"S": k} for i, k in enumerate(KINDS)},
        },
    )
    enrolled = 0
    for raw in raw_items:
        d = item_values(raw)
        processed_at = int(d.get("decidedAt") or d["createdAt"])
        u = Update(item_key(d["pk"], d["sk"])).where(state="processed", publishedAt=None, outboxPk=None)
        u.set(outboxPk=d["programId"], outboxSk=f"{sortable_int(processed_at)}#{d['pk'][2:]}#{d['sk']}")
        enrolled += table.update_item(u) is not None
    return enrolled
