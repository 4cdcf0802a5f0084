"""What the DynamoDB delivery ledger says about sent touches (a base of `DynamoDbDeliveryLedger`; the table's layout
is in `resources.delivery_ledger.dynamodb`'s docstring).

- `sent_touches`: a Query of the `prog` index over the partition-key range (it projects `state`), then the sent
  touches read whole (strongly consistent BatchGetItem): what the platform's contact history is written from.
- `find_sent`: the sparse index `prov` (`provPk` = the provider's message id, set by `mark_sent` when the provider
  returned one; KEYS_ONLY), then the touch read whole: how an outcome webhook finds the touch it is about.  A table
  created before the index existed needs it added (UpdateTable) before outcomes can be joined.
"""

from __future__ import annotations

from resources.delivery_ledger.base import LedgerRow
from resources.delivery_ledger.dynamodb_items import PROG, PROV, to_row, touch_pk
from resources.dynamodb import DynamoDbTable


class DynamoDbSentTouches(DynamoDbTable):
    """`sent_touches` and `find_sent` on the ledger's table."""

    def sent_touches(self, program_id: str, start: str, end: str) -> list[LedgerRow]:
        """The program's sent touches with start <= partition_key < end, by partition and touch key."""
        if start >= end:
            return []
        keys = [
            raw["pk"]["S"][2:]
            for raw in self.query_items(
                IndexName=PROG,
                KeyConditionExpression="progPk = :p AND progSk BETWEEN :start AND :end",
                FilterExpression="#s = :sent",
                ProjectionExpression="pk, partitionKey",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":p": {"S": program_id},
                    ":start": {"S": start},
                    ":end": {"S": end},
                    ":sent": {"S": "sent"},
                },
            )
            if start <= raw["partitionKey"]["S"] < end
        ]
        rows = [to_row(raw) for raw in self.get_items([touch_pk(k) for k in keys])]
        return sorted((r for r in rows if r.state == "sent"), key=lambda r: (r.partition_key, r.touch_key))

    def find_sent(self, provider_id: str) -> LedgerRow | None:
        """The sent touch whose provider message id is `provider_id`, or None."""
        if not provider_id:
            return None
        found = self.query_items(
            IndexName=PROV,
            KeyConditionExpression="provPk = :p",
            ExpressionAttributeValues={":p": {"S": provider_id}},
        )
        keys = sorted(raw["pk"]["S"][2:] for raw in found)
        rows = [to_row(raw) for raw in self.get_items([touch_pk(k) for k in keys[:1]])]
        return next((r for r in rows if r.state == "sent"), None)
