"""The DynamoDB ledger's suppression list (a base of `resources.delivery_ledger.dynamodb.DynamoDbDeliveryLedger`).

Items: pk = S#<channel>#k:<HMAC-SHA256 of the address under the deployment's key>, sk = S; reason, createdAt.
Version-1 items (pk = S#<channel>#<plain SHA-256>) are read only to migrate them: a lookup that finds no keyed item
for an address reads its plain one, answers with its reason, writes the keyed item (same reason and time) and
deletes the plain one (`resources.delivery_ledger.suppression`, MIGRATION).  A table has no schema version: the
`k:` prefix tells the two apart, so a table of either version (or both, during a rollout) is read correctly.
The key's check value is the item pk = META, sk = SUPPRESSION_KEY (`check`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engage_assets.domain.pressure import normalize_address
from resources.delivery_ledger.dynamodb_items import suppression_pk
from resources.delivery_ledger.suppression import SuppressionHashes
from resources.dynamodb import put_if_absent

KEYED = "k:"


class DynamoDbSuppressionList:
    """`add_suppression` and `suppressed_addresses` on the ledger's table (the ledger provides the client, the
    table's name, `get_items` and `hashes`)."""

    table_name: str
    hashes: SuppressionHashes
    client: Callable[[], Any]
    get_items: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]

    _key_checked: bool = False

    def _checked(self) -> SuppressionHashes:
        """`hashes`, once the table's recorded key check is this key's (recorded on first use)."""
        if not self._key_checked:
            key = {"pk": {"S": "META"}, "sk": {"S": "SUPPRESSION_KEY"}}
            put_if_absent(self.client(), self.table_name, {**key, "check": {"S": self.hashes.check_value()}})
            item = self.client().get_item(TableName=self.table_name, Key=key, ConsistentRead=True)["Item"]
            self.hashes.verify(item["check"]["S"])
            self._key_checked = True
        return self.hashes

    def add_suppression(self, channel: str, address: str, reason: str, now: int) -> None:
        """Put an address on the suppression list (bounce, complaint, invalid address); first reason wins."""
        item = {**suppression_pk(channel, KEYED + self._checked().of(address)), "reason": {"S": reason}}
        put_if_absent(self.client(), self.table_name, {**item, "createdAt": {"N": str(int(now))}})

    def suppressed_addresses(self, conn: Any, channel: str, addresses: Iterable[str]) -> dict[str, str]:
        """{normalized address: reason} of the given addresses on the channel's suppression list; a version-1 item
        found for one of them is re-keyed on the way."""
        addresses = list(addresses)
        found = self._lookup(channel, {KEYED + h: a for h, a in self._checked().keyed(addresses).items()})
        missing = [a for a in addresses if normalize_address(a) not in found]
        if not missing:
            return found
        legacy = self._lookup(channel, self.hashes.legacy(missing), raw=True)
        for address, item in legacy.items():
            moved = {**item, **suppression_pk(channel, KEYED + self.hashes.of(address))}
            put_if_absent(self.client(), self.table_name, moved)
            self.client().delete_item(TableName=self.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
        return found | {address: item["reason"]["S"] for address, item in legacy.items()}

    def _lookup(self, channel: str, by_hash: dict[str, str], raw: bool = False) -> dict[str, Any]:
        """{address: reason (or the raw item)} of the hashes (`by_hash`: hash as in the key → address) listed."""
        prefix = f"S#{channel}#"
        items = self.get_items([suppression_pk(channel, h) for h in by_hash])
        return {by_hash[i["pk"]["S"][len(prefix) :]]: i if raw else i["reason"]["S"] for i in items}
