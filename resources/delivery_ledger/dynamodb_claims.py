"""The DynamoDB delivery ledger's contact pressure, claims and transitions (the base of `DynamoDbDeliveryLedger`;
the table's layout is in `resources.delivery_ledger.dynamodb`'s docstring).

Every transition is a conditional UpdateItem (state, and the claim token after the claim) that also adds or removes
the touch's index attributes, so a process that lost its claim cannot overwrite a newer outcome.

CLAIM RULE (the cross-process race on caps).  SQLite checks pressure and claims a page in one BEGIN IMMEDIATE
transaction.  Here `transaction()` yields a `DynamoDbLedgerTransaction` that remembers, per customer, the contact
item it read (strongly consistent) when `contacts_since` loaded the pressure: its `version` and entries.  A claim
is one TransactWriteItems: touch planned → sending (condition state = planned) AND customer item
version = the version read → version + 1 with the new contact entry.  If another process claimed any touch of that
customer since the read, the version moved, the whole claim fails (`claim` returns False) and the touch stays
planned: the next delivery run re-evaluates it against the new contacts.  The same customer's later claims in the
same transaction fail without a call.  The claim of a touch from the page `due()` returned last needs no read (the
ledger keeps that page's customer/program/subject/channel); any other touch is read first.  Touches that leave
sending/sent (failed, retry, suppressed after the claim) drop their entry with a second conditional update after
the authoritative touch update, which does not bump the version (it only loosens a cap); a crash between the two
leaves an entry that over-counts: the safe direction.  Entries older than both CONTACT_RETENTION_S (a year and a
month) and the oldest `since` read in the transaction are pruned by the customer's next claim.  Not covered by the
version: an address put on the suppression list between the pressure read and the claim (a bounce of another
customer's message with the same address) — that one send still goes out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from resources.delivery_ledger.base import LedgerRow, key_hash
from resources.delivery_ledger.dynamodb_items import (
    CONTACT_RETENTION_S,
    PROG,
    PRUNE_PER_CLAIM,
    Contacts,
    DynamoDbLedgerTransaction,
    customer_pk,
    due_again,
    leave_planned,
    leave_sending,
    touch_pk,
)
from resources.dynamodb import DynamoDbTable, Update, plain_item, sortable_int

log = logging.getLogger("engage.delivery")


class DynamoDbLedgerClaims(DynamoDbTable):
    """Contact pressure, claims and every transition after them, on the ledger's table (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any):
        """`DynamoDbTable`'s arguments: table_name, client_factory, region_name, endpoint_url, max_attempts,
        write_concurrency, conflict_retries."""
        super().__init__(*args, **kwargs)
        # Identity (customer, program, subject, channel) of the rows `due()`/`in_doubt()` returned last: the claim
        # that follows needs it for the customer item and reads nothing.  One page, replaced per page.
        self._seen: dict[str, tuple[str, str, str, str]] = {}

    def _get(self, touch_key: str) -> dict[str, Any] | None:
        raw = self.client().get_item(TableName=self.table_name, Key=touch_pk(touch_key), ConsistentRead=True)
        return raw.get("Item")

    def _remember(self, page: list[LedgerRow]) -> list[LedgerRow]:
        self._seen = {r.touch_key: (r.customer_id, r.program_id, r.subject_id, r.channel) for r in page}
        return page

    # -- contact pressure ------------------------------------------------------------------------------------------
    def _load_contacts(self, txn: DynamoDbLedgerTransaction, customer_ids: Iterable[str]) -> None:
        wanted = [c for c in dict.fromkeys(customer_ids) if c not in txn.customers]
        for c in wanted:
            txn.customers[c] = Contacts(0, {})
        for raw in self.get_items([customer_pk(c) for c in wanted]):
            d = plain_item(raw)
            txn.customers[d["pk"][2:]] = Contacts(int(d.get("version", 0)), dict(d.get("contacts", {})))

    def contacts_since(
        self, conn: DynamoDbLedgerTransaction | None, customer_ids: Iterable[str], since: int
    ) -> list[tuple[str, str, str, str, int]]:
        """(customer_id, program_id, subject_id, channel, claimed_at) of touches claimed or sent since `since`,
        from the customers' contact items (strongly consistent), remembered in `conn` for the claims."""
        txn = conn if isinstance(conn, DynamoDbLedgerTransaction) else DynamoDbLedgerTransaction()
        ids = list(dict.fromkeys(customer_ids))
        self._load_contacts(txn, ids)
        txn.since = since if txn.since is None else min(txn.since, since)
        return [(c, p, s, ch, at) for c in ids for p, s, ch, at in txn.customers[c].entries.values() if at >= since]

    def _drop_contact(self, touch: dict[str, Any], claimed_at: int | None = None) -> None:
        """After a touch left sending for failed/planned/suppressed: remove its contact entry (or, with
        `claimed_at`, move it: a reclaim).  Only where the entry exists: an erased customer stays erased."""
        key = touch["touchKey"]
        u = Update(customer_pk(touch["customerId"])).where_exists("contacts", key)
        if claimed_at is None:
            u.remove_path(("contacts", key))
        else:
            u.set_path(("contacts", key), [touch["programId"], touch["subjectId"], touch["channel"], claimed_at])
        self.update_item(u)

    # -- transitions -----------------------------------------------------------------------------------------------
    def _sending(self, touch_key: str, token: str) -> Update:
        return Update(touch_pk(touch_key)).where(state="sending", claimToken=token)

    def _identity(self, touch_key: str) -> tuple[str, str, str, str] | None:
        """(customer, program, subject, channel) of a planned touch: from the last page, else read (None: the
        touch is gone or no longer planned)."""
        ident = self._seen.get(touch_key)
        if ident is None:
            raw = self._get(touch_key)
            if raw is None or (d := plain_item(raw))["state"] != "planned":
                return None
            ident = (d["customerId"], d["programId"], d["subjectId"], d["channel"])
        return ident

    def claim(self, conn: DynamoDbLedgerTransaction | None, touch_key: str, token: str, now: int) -> bool:
        """planned → sending with our token, and the customer's contact item version unchanged since `conn` read it
        (CLAIM RULE); False if another process claimed the touch, or any touch of the customer, first."""
        txn = conn if isinstance(conn, DynamoDbLedgerTransaction) else DynamoDbLedgerTransaction()
        ident = self._identity(touch_key)
        if ident is None:
            return False
        customer_id, program_id, subject_id, channel = ident
        self._load_contacts(txn, [customer_id])
        contacts = txn.customers[customer_id]
        if contacts.stale:
            return False
        entry = [program_id, subject_id, channel, now]
        touch = leave_planned(Update(touch_pk(touch_key)).where(state="planned", customerId=customer_id))
        touch.set(
            state="sending", claimToken=token, claimedAt=now, updatedAt=now, doubtSk=f"{sortable_int(now)}#{touch_key}"
        ).copy("doubtPk", "programId").increment("attempts")
        customer = Update(customer_pk(customer_id)).set(version=contacts.version + 1)
        horizon = min(txn.since if txn.since is not None else now, now - CONTACT_RETENTION_S)
        pruned = [k for k, e in contacts.entries.items() if e[3] < horizon and k != touch_key][:PRUNE_PER_CLAIM]
        if contacts.version == 0:
            customer.where(pk=None).set(contacts={touch_key: entry})
        else:
            customer.where(version=contacts.version).set_path(("contacts", touch_key), entry)
            for k in pruned:
                customer.remove_path(("contacts", k))
        codes = self.transact_updates([touch, customer])
        if codes is None:
            contacts.version += 1
            contacts.entries[touch_key] = entry
            for k in pruned:
                contacts.entries.pop(k, None)
            return True
        if codes[1] == "ConditionalCheckFailed":
            contacts.stale = True
            log.info(
                "touch %s left planned: another run claimed for the same customer since the pressure check",
                key_hash(touch_key),
            )
        return False

    def reclaim(self, touch_key: str, old_token: str | None, token: str, now: int) -> bool:
        """Take over an in-doubt claim (sending with `old_token`) for the recovery rule."""
        u = Update(touch_pk(touch_key)).where(state="sending", claimToken=old_token)
        u.set(claimToken=token, claimedAt=now, updatedAt=now, doubtSk=f"{sortable_int(now)}#{touch_key}")
        new = self.update_item(u, returns=True)
        if new is not None:
            self._drop_contact(new, claimed_at=now)
        return new is not None

    def suppress(self, conn: Any, touch_key: str, reason: str, now: int, token: str | None = None) -> bool:
        """planned (or our claimed touch) → suppressed with a reason."""
        if token is not None:
            return self._end_claim(
                self._sending(touch_key, token).set(state="suppressed", reason=reason, updatedAt=now)
            )
        u = leave_planned(Update(touch_pk(touch_key)).where(state="planned"))
        return self.update_item(u.set(state="suppressed", reason=reason, updatedAt=now)) is not None

    def defer(self, conn: Any, touch_key: str, until: int, reason: str, now: int) -> bool:
        """Keep a planned touch planned but not due before `until` (quiet hours, channel outage)."""
        u = due_again(Update(touch_pk(touch_key)).where(state="planned"), touch_key, until)
        return self.update_item(u.set(reason=reason, updatedAt=now)) is not None

    def mark_stale(self, conn: Any, touch_key: str, reason: str, now: int) -> bool:
        """planned → stale with a reason: its planned send time is too long past (never sent; out of `due`)."""
        u = leave_planned(Update(touch_pk(touch_key)).where(state="planned"))
        return self.update_item(u.set(state="stale", reason=reason, updatedAt=now)) is not None

    def reopen_stale(self, program_id: str, now: int) -> int:
        """Every `stale` touch of the program → planned, due at `now` (a Query of `prog` over the program's touches,
        then one conditional update each, `write_concurrency` at a time); how many."""
        stale = [
            item["pk"]["S"][2:]
            for item in self.query_items(
                IndexName=PROG,
                KeyConditionExpression="progPk = :p",
                FilterExpression="#s = :stale",
                ProjectionExpression="pk",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":p": {"S": program_id}, ":stale": {"S": "stale"}},
            )
        ]

        def reopen(touch_key: str) -> bool:
            u = due_again(Update(touch_pk(touch_key)).where(state="stale"), touch_key, now).copy("duePk", "programId")
            return self.update_item(u.set(state="planned", reason=None, updatedAt=now)) is not None

        return sum(self.parallel(reopen, stale))

    def mark_sent(self, touch_key: str, token: str, provider_id: str, now: int, reason: str | None = None) -> bool:
        """sending (with our token) → sent."""
        u = leave_sending(self._sending(touch_key, token))
        u.set(state="sent", providerId=provider_id, sentAt=now, reason=reason, updatedAt=now)
        u.set(provPk=provider_id or None)  # the sparse `prov` index: how an outcome webhook finds the touch
        return self.update_item(u) is not None

    def mark_sent_many(self, marks: Iterable[tuple[str, str, str | None]], token: str, now: int) -> int:
        """`mark_sent` for many (touch_key, provider_id, reason), `write_concurrency` at a time (no conditional
        batch write exists); returns how many were marked."""
        return sum(self.parallel(lambda m: self.mark_sent(m[0], token, m[1], now, reason=m[2]), list(marks)))

    def mark_failed(self, touch_key: str, token: str, reason: str, now: int) -> bool:
        """sending (with our token) → failed."""
        return self._end_claim(self._sending(touch_key, token).set(state="failed", reason=reason, updatedAt=now))

    def mark_retry(self, touch_key: str, token: str, reason: str, next_attempt_at: int, now: int) -> bool:
        """sending → planned, due again at `next_attempt_at` (transient error or outage; attempts stay counted)."""
        u = due_again(self._sending(touch_key, token), touch_key, next_attempt_at).copy("duePk", "programId")
        return self._end_claim(u.set(state="planned", reason=reason, claimToken=None, claimedAt=None, updatedAt=now))

    def _end_claim(self, u: Update) -> bool:
        """sending → failed / planned / suppressed: the touch no longer counts as a contact (as in SQLite, where
        only sending and sent count), so its entry leaves the customer item after the touch update."""
        new = self.update_item(leave_sending(u), returns=True)
        if new is not None:
            self._drop_contact(new)
        return new is not None
