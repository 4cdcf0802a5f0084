"""Running the customer-response SIMULATOR (`engage_assets.demo.response_simulator`) against the embedded demo's
state: what `engage simulate responses` and `engage run` (after its deliveries) call.  Local only.

1. reads the platform's history the warehouse reads (`platform_history`: every `assignments_*` and `contacts_*`
   file), and gives each customer a hidden propensity per program (`generator_truth`): the generator's own process
   for that program (`engage_assets.demo.datagen.outcomes`: 1 − P(churn) of an at-risk customer for churn
   prevention, P(return) of a churned one for win-back, 1 − P(churn) of a refund customer for proactive refunds)
   over the features the warehouse holds for the customer; for a customer without them, or the abandoned-cart
   program, `hidden_truth` (a hash of the customer id: the same in every run); never shown to the platform;
2. draws the responses (`simulate_responses`, seeded);
3. applies every provider event that occurred by `until` through the SAME path the outcome webhooks use
   (`engage_assets.serving.webhooks.apply_outcome`: the touch looked up in the delivery ledger by its provider
   message id, permanent bounces, complaints and failed numbers to the suppression list with the customer's address
   from the warehouse, unsubscribes to opt-outs, recorded once under a stable event id: a second run records
   nothing new; an event whose touch the ledger does not know is kept aside with the reason), provider `simulator`;
4. writes the conversions that occurred by `until` as the `business` source's files
   (`<history>/conversions/partition_key=<day>/candidates.parquet`, one per day, rewritten: the draws are stable,
   so a later run only adds), which `marts.conversions` (the send-time "only if not converted" check) reads;
5. exports the outcome days it touched (`outcomes_export`'s `export_outcomes_day`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.assets.outcomes_export import export_outcomes_day
from engage_assets.demo.datagen import outcomes as truth
from engage_assets.demo.response_simulator import ResponseParams, Responses, simulate_responses, uniform
from engage_assets.domain.history import ASSIGNMENT_SCHEMA, ASSIGNMENTS, CONTACT_SCHEMA, CONTACTS
from engage_assets.domain.loop_tables import CONVERSIONS, EVENT_TYPES, SIMULATOR
from engage_assets.domain.outcomes import Outcome
from engage_assets.serving.webhooks import Webhooks, apply_outcome
from resources.delivery_ledger.base import DeliveryLedgerBackend
from resources.exports.base import ExportResource
from resources.outcomes.base import OutcomeStore

TRUTH_SALT = 20_261_109  # the hidden propensities' own seed: the same customers are the same in every run
KINDS = {v: k for k, v in EVENT_TYPES.items() if k != "rejected"}  # event_type -> the outcome store's kind
ADDRESS = {"email": "email", "sms": "phone", "push": None}  # the contact column a suppression names


def read_history(history: ExportResource, kind: str, schema: pa.Schema) -> pa.Table:
    """Every file of one kind of the platform's history (`<kind>_<group>`), as one table of `schema`."""
    parts = [
        history.read_partition(name, key).select(schema.names).cast(schema)
        for name in history.programs()
        if name.startswith(f"{kind}_")
        for key in history.partition_keys(name)
    ]
    return pa.concat_tables(parts) if parts else schema.empty_table()


def hidden_truth(customer_ids: list[str], sigma: float = 1.0) -> pa.Table:
    """Each customer's hidden propensity to convert without a touch: sigmoid(N(0, sigma)), drawn from a hash of
    the customer id (TRUTH_SALT), so it is the same in every run and independent of the platform's scores."""
    normal = NormalDist()
    ids = sorted(set(customer_ids))
    p = [1 / (1 + math.exp(-sigma * normal.inv_cdf(min(max(uniform(TRUTH_SALT, c), 1e-9), 1 - 1e-9)))) for c in ids]
    return pa.table({"customer_id": pa.array(ids, pa.string()), "true_p": pa.array(p, pa.float64())})


# The generator's hidden processes (engage_assets.demo.datagen.outcomes) over the features the warehouse holds for
# today's customers, oriented as a propensity to convert: (query of the features, true_p of their columns).
TRUTH_QUERIES: dict[str, tuple[str, Callable[[pa.Table], np.ndarray]]] = {
    "churn-prevention": (
        "SELECT CAST(customer_id AS VARCHAR) AS customer_id, engagement_score, login_frequency, purchase_frequency, "
        "support_tickets FROM marts.customer_analytics WHERE CAST(customer_id AS VARCHAR) IN (:ids) "
        "QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY snapshot_date DESC) = 1",
        lambda t: (
            1
            - truth.at_risk_p_churn(
                *_floats(t, "engagement_score", "login_frequency", "purchase_frequency", "support_tickets")
            )
        ),
    ),
    "win-back-campaigns": (
        "SELECT CAST(customer_id AS VARCHAR) AS customer_id, churn_reason, lifetime_value_usd, "
        "subscription_tenure_months, engagement_history FROM marts.churned_customers "
        "WHERE CAST(customer_id AS VARCHAR) IN (:ids) "
        "QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY churn_date DESC) = 1",
        lambda t: truth.winback_p_returned(
            np.array([truth.REASON_EFFECT.get(r, 0.0) for r in t.column("churn_reason").to_pylist()]),
            *_floats(t, "lifetime_value_usd", "subscription_tenure_months", "engagement_history"),
        ),
    ),
    "proactive-refunds": (
        "SELECT CAST(customer_id AS VARCHAR) AS customer_id, complaint_history, satisfaction_history, "
        "order_frequency FROM marts.customers WHERE CAST(customer_id AS VARCHAR) IN (:ids)",
        lambda t: 1 - truth.refund_p_churn(*_floats(t, "complaint_history", "satisfaction_history", "order_frequency")),
    ),
}


def _floats(table: pa.Table, *names: str) -> list[np.ndarray]:
    return [np.nan_to_num(table.column(n).cast(pa.float64()).to_numpy(zero_copy_only=False)) for n in names]


def generator_truth(query: Callable[[str, dict[str, Any]], pa.Table], assignments: pa.Table) -> pa.Table:
    """Each assigned customer's hidden propensity per program (`program_id`, `customer_id`, `true_p`), from the
    generator's own process for that program (TRUTH_QUERIES); a customer the warehouse has no features for, or a
    program without a process (abandoned carts), gets `hidden_truth`'s."""
    parts = []
    for program in sorted(set(assignments.column("program_id").to_pylist())):
        ids = sorted(
            set(
                assignments.filter(pc.equal(assignments.column("program_id"), program))
                .column("customer_id")
                .to_pylist()
            )
        )
        known: dict[str, float] = {}
        if program in TRUTH_QUERIES:
            sql, p_of = TRUTH_QUERIES[program]
            for i in range(0, len(ids), 5_000):
                rows = query(sql, {"ids": ids[i : i + 5_000]})
                if rows.num_rows:
                    known.update(zip(rows.column("customer_id").to_pylist(), p_of(rows).tolist(), strict=True))
        fallback = hidden_truth([c for c in ids if c not in known])
        known.update(
            zip(fallback.column("customer_id").to_pylist(), fallback.column("true_p").to_pylist(), strict=True)
        )
        parts.append(
            pa.table({"program_id": [program] * len(ids), "customer_id": ids, "true_p": [known[c] for c in ids]})
        )
    return pa.concat_tables(parts) if parts else pa.table({"program_id": [], "customer_id": [], "true_p": []})


def as_outcome(row: Mapping[str, Any], addresses: tuple[str, ...] = ()) -> Outcome:
    """One simulated event row as the Outcome a provider's report would be (provider `simulator`)."""
    kind = KINDS[row["event_type"]]
    permanent = bool(row["permanent"])
    detail = ("Permanent:General" if permanent else "Transient:General") if kind == "bounced" else None
    occurred = int(row["occurred_at"].replace(tzinfo=UTC).timestamp())
    suppress = permanent or kind == "unsubscribed"
    return Outcome(
        row["event_id"],
        SIMULATOR,
        row["provider_id"],
        row["channel"],
        kind,
        occurred,
        detail,
        permanent,
        addresses=addresses if suppress else (),
    )


def apply_events(
    hooks: Webhooks, outcomes: pa.Table, contacts_of: Callable[[list[str]], Mapping[str, Mapping[str, Any]]] | None
) -> Counter[str]:
    """Apply simulated events through the webhook path; counts of `recorded`, `duplicate` and `unmatched`."""
    rows = outcomes.to_pylist()
    needs = sorted({r["customer_id"] for r in rows if r["permanent"] or r["event_type"] == "unsubscribe"})
    contacts = contacts_of(needs) if contacts_of and needs else {}
    counts: Counter[str] = Counter()
    for r in rows:
        column = ADDRESS.get(r["channel"])
        address = (contacts.get(r["customer_id"]) or {}).get(column) if column else None
        new = apply_outcome(hooks, as_outcome(r, (address,) if address else ()))
        counts["recorded" if new else "duplicate"] += 1
        if new and hooks.ledger.find_sent(r["provider_id"]) is None:
            counts["unmatched"] += 1
    return counts


def write_conversions(history: ExportResource, conversions: pa.Table) -> dict[str, int]:
    """Write the conversions, one file per UTC day of `occurred_at` (replacing it); {day: rows}."""
    if not conversions.num_rows:
        return {}
    days = pc.strftime(conversions.column("occurred_at"), format="%Y-%m-%d")
    out = {}
    for day in sorted(set(days.to_pylist())):
        part = conversions.filter(pc.equal(days, day))
        history.write_partition(CONVERSIONS, day, part)
        out[day] = part.num_rows
    return out


def _until(table: pa.Table, until: datetime | None) -> pa.Table:
    if until is None or not table.num_rows:
        return table
    naive = until.astimezone(UTC).replace(tzinfo=None) if until.tzinfo else until
    return table.filter(pc.less_equal(table.column("occurred_at"), pa.scalar(naive, pa.timestamp("us"))))


def run_simulator(
    history: ExportResource,
    outcomes: OutcomeStore,
    ledger: DeliveryLedgerBackend,
    seed: int,
    until: datetime | None = None,
    params: ResponseParams | None = None,
    contacts_of: Callable[[list[str]], Mapping[str, Mapping[str, Any]]] | None = None,
    query: Callable[[str, dict[str, Any]], pa.Table] | None = None,
) -> dict[str, Any]:
    """Simulate the responses to every touch in the history (module docstring); a summary with the true lift.
    `query`: the warehouse's (`query_arrow`), for the generator's truth; None: every customer's `hidden_truth`."""
    assignments = read_history(history, ASSIGNMENTS, ASSIGNMENT_SCHEMA)
    contacts = read_history(history, CONTACTS, CONTACT_SCHEMA)
    if query is not None:
        known = pa.concat_tables(
            [assignments.select(["program_id", "customer_id"]), contacts.select(["program_id", "customer_id"])]
        )
        hidden = generator_truth(query, known)
    else:
        hidden = hidden_truth(
            assignments.column("customer_id").to_pylist() + contacts.column("customer_id").to_pylist()
        )
    now = datetime.now(UTC)
    result: Responses = simulate_responses(assignments, contacts, hidden, seed, params, now)
    events = _until(result.outcomes, until)
    hooks = Webhooks(outcomes=outcomes, ledger=ledger)
    counts = apply_events(hooks, events, contacts_of)
    written = write_conversions(history, _until(result.conversions, until))
    days = sorted(set(pc.strftime(events.column("occurred_at"), format="%Y-%m-%d").to_pylist())) if events else []
    for day in days:
        export_outcomes_day(outcomes, history, day)
    return {
        "assignments": assignments.num_rows,
        "touches": contacts.num_rows,
        "events": dict(Counter(events.column("event_type").to_pylist())),
        "recorded": counts["recorded"],
        "duplicates": counts["duplicate"],
        "unmatched": counts["unmatched"],
        "conversions": sum(written.values()),
        "conversion_days": len(written),
        "outcome_days_exported": len(days),
        "true_lift": {p: t._asdict() for p, t in result.true_lift.items()},
    }
