"""DynamoDB cart state: production (ENGAGE_ENV=prod), in a pk-only table (the dedup store's may be shared).

Items (`pk` String HASH; Numbers in epoch seconds):
  cart#<cartId>         customer_id, order_id, purchased_at   a purchase; put only if absent (the first stands)
  buyer#<customerId>    purchased_at                          the customer's latest purchase (conditional update:
                                                              only a later time replaces it), for `purchasers_since`
  stock#<productId>     in_stock, changed_at                  put only if absent or not newer than this change
  expired#<programId>#<cartId>   customer_id, expired_at     a cart the program expired; put only if absent
Every write is conditional, so events applied in any order, and twice, leave the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resources.cart_state.base import CartPurchase, CartStateStore, StockChange
from resources.dynamodb import (
    DynamoDbTableResource,
    RetryPolicy,
    batch_get,
    conditional_write,
    create_table,
    deserialize,
    from_dynamo,
    number,
)


def _n(value: float) -> dict[str, str]:
    """A Number attribute value."""
    return {"N": number(float(value))}


class DynamoDbCartState(DynamoDbTableResource, CartStateStore):
    """Purchases and stock changes in one DynamoDB table (module docstring)."""

    def create_table(self) -> None:
        """Create the table (idempotent)."""
        create_table(self.client(), self.table_name, key_schema=[("pk", "HASH")], attributes={"pk": "S"})

    def _get(self, prefix: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{id: item (plain values)} of the items that exist."""
        keys = [{"pk": {"S": f"{prefix}#{i}"}} for i in dict.fromkeys(ids)]
        if not keys:
            return {}
        raw = batch_get(self.client(), self.table_name, keys, consistent=True, policy=RetryPolicy())
        items = [{k: from_dynamo(deserialize(v)) for k, v in item.items()} for item in raw]
        return {item["pk"].removeprefix(f"{prefix}#"): item for item in items}

    def _put(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None) -> bool:
        request: dict[str, Any] = {"TableName": self.table_name, "Item": item, "ConditionExpression": condition}
        if values:
            request["ExpressionAttributeValues"] = values
        return conditional_write(self.client().put_item, **request) is not None

    def record_purchases(self, purchases: Sequence[CartPurchase]) -> int:
        """Record purchases (the first per cart stands) and each buyer's latest purchase time."""
        new = 0
        for p in purchases:
            item = {
                "pk": {"S": f"cart#{p.cart_id}"},
                "customer_id": {"S": p.customer_id},
                "order_id": {"S": p.order_id},
                "purchased_at": _n(p.purchased_at),
            }
            new += self._put(item, "attribute_not_exists(pk)")
            conditional_write(
                self.client().update_item,
                TableName=self.table_name,
                Key={"pk": {"S": f"buyer#{p.customer_id}"}},
                UpdateExpression="SET purchased_at = :t",
                ConditionExpression="attribute_not_exists(purchased_at) OR purchased_at < :t",
                ExpressionAttributeValues={":t": _n(p.purchased_at)},
            )
        return new

    def purchased_carts(self, cart_ids: Sequence[str]) -> dict[str, float]:
        """{cart_id: purchased_at} of the purchased ones."""
        return {c: float(item["purchased_at"]) for c, item in self._get("cart", cart_ids).items()}

    def purchasers_since(self, customer_ids: Sequence[str], since: float) -> set[str]:
        """Customers whose latest purchase is at or after `since`."""
        return {c for c, item in self._get("buyer", customer_ids).items() if float(item["purchased_at"]) >= since}

    def record_stock(self, changes: Sequence[StockChange]) -> int:
        """Record stock changes, the newest per product winning."""
        written = 0
        for c in changes:
            item = {
                "pk": {"S": f"stock#{c.product_id}"},
                "in_stock": {"BOOL": c.in_stock},
                "changed_at": _n(c.changed_at),
            }
            written += self._put(item, "attribute_not_exists(pk) OR changed_at <= :t", {":t": _n(c.changed_at)})
        return written

    def stock(self, product_ids: Sequence[str]) -> dict[str, StockChange]:
        """The newest recorded change per product."""
        return {
            p: StockChange(p, bool(item["in_stock"]), float(item["changed_at"]))
            for p, item in self._get("stock", product_ids).items()
        }

    def expire_carts(self, program_id: str, carts: Sequence[tuple[str, str]], now: float) -> list[tuple[str, str]]:
        """Mark the carts expired, one conditional put each (the first mark stands)."""
        out = []
        for customer_id, cart_id in dict.fromkeys(carts):
            item = {
                "pk": {"S": f"expired#{program_id}#{cart_id}"},
                "customer_id": {"S": customer_id},
                "expired_at": _n(now),
            }
            if self._put(item, "attribute_not_exists(pk)"):
                out.append((customer_id, cart_id))
        return out

    def expired_carts(self, program_id: str, cart_ids: Sequence[str]) -> dict[str, float]:
        """{cart_id: expired_at} of the expired ones."""
        return {c: float(item["expired_at"]) for c, item in self._get(f"expired#{program_id}", cart_ids).items()}
