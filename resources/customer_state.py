"""Send-time state (the resource): a customer's contact details and consent now, and whether a touch's conditions still hold.

The engine asks, per page of due touches, for `contacts(ids)` (one warehouse query for the page) and then
`recheck(touch, now)` for each touch. Reasons a touch is dropped at send time:

  offer_expired         the candidate's offer expired (`expiresAt`) before the touch went out
  account_closed        the account was closed (or suspended, or in fraud review) since planning
  marketing_opt_out     the customer opted out of marketing since planning
  opted_out:<channel>   the customer withdrew consent for that channel
  converted             an `onlyIfNotConverted` touch whose customer converted since the plan's as-of
  cart_not_abandoned    a cart touch whose cart was completed (the abandoned-cart program adds carts)
  erased                the customer was deleted (GDPR) since planning (`use_erasures`: the engagement store's
                        deletion records, one lookup per page); an erased customer's contact row is never returned

Conversion is read through one interface, the `ConversionSource` protocol; `WarehouseConversions` answers from the
warehouse's real conversions (`marts.conversions`: what the business's systems recorded — orders placed,
subscriptions reactivated, codes and credits redeemed, call-task outcomes, carts purchased — on or after the plan's
as-of day; locally the response simulator's).  The abandoned-cart program hands its cart purchases to
`CustomerState.use_conversions` instead.

Opt-outs the providers report (an e-mail unsubscribe, an SMS STOP: the outcome webhooks record them in the outcome
store) are applied over the warehouse's consent columns with `use_opt_outs`: a customer who unsubscribed is
`opted_out:<channel>` (or `marketing_opt_out`) at the next send, before the warehouse hears of it.

`recheck_many` costs one contacts query and one conversion lookup per distinct plan date per batch, whatever the
batch's size.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

import dagster as dg
from pydantic import PrivateAttr

from engage_assets.domain.conditions import announces_refund, consent_reason, epoch, plan_date
from engage_assets.domain.contacts import CHANNEL_CONSENT, CONTACT_COLUMNS
from engage_assets.domain.plan import MARKETPLACES
from resources.refund_ledger.base import RefundLedgerBackend
from resources.refund_ledger.resource import RefundLedgerResource
from resources.warehouse.base import WarehouseResource

PAGE = 2_000  # ids per IN list (bound parameters)


@runtime_checkable
class ConversionSource(Protocol):
    """Who converted after a date: the one place delivery learns about conversions (one call per batch)."""

    def converted_since(self, customer_ids: list[str], since: date) -> set[str]:
        """Which of these customers converted after `since`."""


class WarehouseConversions:
    """Conversions the business's systems recorded (`marts.conversions`, a view over the `business` source: orders
    placed, subscriptions reactivated, codes and credits redeemed, call-task outcomes, carts purchased; the response
    simulator's rows locally), on or after `since`."""

    def __init__(self, warehouse: WarehouseResource):
        self.warehouse = warehouse

    def converted_since(self, customer_ids: list[str], since: date) -> set[str]:
        """Which of these customers have a conversion on or after `since` (its day, from midnight UTC)."""
        out: set[str] = set()
        for chunk in _chunks(customer_ids):
            rows = self.warehouse.query_arrow(
                "SELECT DISTINCT CAST(customer_id AS VARCHAR) AS customer_id FROM marts.conversions "
                "WHERE CAST(customer_id AS VARCHAR) IN (:ids) AND CAST(occurred_at AS DATE) >= :since",
                {"ids": chunk, "since": since},
            )
            out.update(rows.column("customer_id").to_pylist())
        return out


class CustomerState(dg.ConfigurableResource):
    """Fresh contact and consent data (marts.customers) and conversion state, read at send time."""

    warehouse: WarehouseResource
    # Where refunds and credits are recorded (SQLite locally, the DynamoDB table every worker shares in production):
    # a refund program's message goes out only once its refund or credit was processed (it says so), waits while
    # it awaits approval, and is dropped if it was refused.  None: no refund checks.
    refund_ledger: RefundLedgerResource | None = None
    # The current page's contacts and conversions: one query per page of due touches, not one per touch.
    _page_contacts: dict = PrivateAttr(default_factory=dict)
    _page_converted: dict = PrivateAttr(default_factory=dict)
    _source: Any = PrivateAttr(default=None)
    _erasures: Any = PrivateAttr(default=None)
    _opt_outs: Any = PrivateAttr(default=None)
    _page_erased: set = PrivateAttr(default_factory=set)
    _refunds: RefundLedgerBackend | None = PrivateAttr(default=None)  # `refund_ledger` opened, once per resource

    def use_conversions(self, source: ConversionSource) -> CustomerState:
        """Read conversions from another source (e.g. outcome webhooks) instead of the warehouse."""
        if not isinstance(source, ConversionSource):
            raise TypeError("a conversion source needs converted_since(customer_ids, since)")
        self._source = source
        return self

    def use_erasures(self, store: Any) -> CustomerState:
        """Treat customers the store records as deleted (`deleted_among(ids)`: the EngagementStore) as erased."""
        if not callable(getattr(store, "deleted_among", None)):
            raise TypeError("an erasure source needs deleted_among(customer_ids)")
        self._erasures = store
        return self

    def use_opt_outs(self, store: Any) -> CustomerState:
        """Apply the opt-outs the store records (`opted_out(ids)`: the outcome store) over the contact rows."""
        if not callable(getattr(store, "opted_out", None)):
            raise TypeError("an opt-out source needs opted_out(customer_ids)")
        self._opt_outs = store
        return self

    def _apply_opt_outs(self, rows: dict[str, dict[str, Any]]) -> None:
        """Each recorded opt-out as the contact row's consent: `marketing` → marketing_opt_out, a channel → its
        opt-in column false."""
        if self._opt_outs is None or not rows:
            return
        for customer, channels in self._opt_outs.opted_out(sorted(rows)).items():
            row = rows.get(customer)
            if row is None:
                continue
            for channel in channels:
                if channel == "marketing":
                    row["marketing_opt_out"] = True
                elif channel in CHANNEL_CONSENT:
                    row[CHANNEL_CONSENT[channel]] = False

    def _erased(self, customer_ids: list[str]) -> set[str]:
        return self._erasures.deleted_among(customer_ids) if self._erasures is not None and customer_ids else set()

    def _conversions(self) -> ConversionSource:
        return self._source or WarehouseConversions(self.warehouse)

    def _load(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        cols = ", ".join(CONTACT_COLUMNS[1:])
        for chunk in _chunks(customer_ids):
            rows = self.warehouse.query_arrow(
                f"SELECT CAST(customer_id AS VARCHAR) AS customer_id, {cols} FROM marts.customers "
                "WHERE CAST(customer_id AS VARCHAR) IN (:ids)",
                {"ids": chunk},  # bound, never spliced into the SQL
            ).to_pylist()
            for r in rows:
                r["currency"] = MARKETPLACES.get(r.get("marketplace") or "", ("", "USD"))[1]
                out[r["customer_id"]] = r
        self._apply_opt_outs(out)
        return out

    def contacts(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Contact rows of these customers (customer_name, email, phone, marketplace, time_zone, currency,
        account_status, opt-ins); an unknown customer is absent (the engine suppresses it).  The rows become the
        current page that `recheck` reads."""
        out = self._load(customer_ids)
        self._page_erased = self._erased(sorted(out))
        for customer in self._page_erased:
            del out[customer]
        self._page_contacts = out
        self._page_converted = {}
        return out

    def _converted(self, touch: dict[str, Any]) -> bool:
        """Whether the touch's customer converted after the plan's as-of: one lookup per plan date for the whole
        page, another only for a customer the page did not hold."""
        customer, since = touch["customerId"], plan_date(touch)
        checked, converted = self._page_converted.setdefault(since, (set(), set()))
        if customer not in checked:
            ids = sorted(set(self._page_contacts) - checked | {customer})
            converted |= self._conversions().converted_since(ids, since)
            checked.update(ids)
        return customer in converted

    def recheck(self, touch: dict[str, Any], now: datetime) -> str | None:
        """None if the touch may still go out now, else the reason it may not (codes, never personal data)."""
        expires = touch.get("expiresAt")
        if expires is not None and int(expires) <= epoch(now):
            return "offer_expired"
        if touch["customerId"] in self._page_erased:
            return "erased"
        contact = self._page_contacts.get(touch["customerId"])
        if contact is None:
            contact = self._load([touch["customerId"]]).get(touch["customerId"])
            if contact is None:
                return "unknown_customer"
            if self._erased([touch["customerId"]]):
                self._page_erased.add(touch["customerId"])
                return "erased"
            self._page_contacts[touch["customerId"]] = contact
        reason = consent_reason(touch, contact)
        if reason:
            return reason
        conditions = touch.get("conditions") or "[]"
        conditions = json.loads(conditions) if isinstance(conditions, str) else list(conditions)
        if "not_converted" in conditions and self._converted(touch):
            return "converted"
        if "cart_abandoned" in conditions and self._converted(touch):
            return "cart_not_abandoned"
        if self.refund_ledger is not None and announces_refund(touch):
            state = self._refund_state(touch)
            if state == "pending_approval":
                return "wait:refund_pending_approval"
            if state != "processed":
                return "refund_not_issued"
        return None

    def _refund_state(self, touch: dict[str, Any]) -> str | None:
        assert self.refund_ledger is not None  # recheck asks only when there is a ledger
        if self._refunds is None:
            self._refunds = self.refund_ledger.ledger()
        ledger = self._refunds
        key = (str(touch["customerId"]), str(touch["subjectId"]))
        return ledger.states(touch["programId"], [key]).get(key)

    def recheck_many(self, touches: list[dict[str, Any]], now: datetime) -> list[str | None]:
        """`recheck` for a batch: the contacts in one query, conversions once per distinct plan date."""
        self.contacts(sorted({t["customerId"] for t in touches}))
        return [self.recheck(t, now) for t in touches]


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + PAGE] for i in range(0, len(ids), PAGE)]
