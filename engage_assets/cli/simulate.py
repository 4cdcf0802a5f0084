"""`engage simulate carts`: the shop's cart events, simulated (`engage_assets.demo.cart_simulator`), published at a
rate into the environment's event queue through the ingest path, or to a running API's `POST /v1/events`.

    engage simulate carts [--rate 100] [--duration 10 | --count N] [--seed S] [--start ISO8601]
                          [--purchased 0.15] [--inventory 0.02] [--duplicates 0.1] [--shuffle-window K]
                          [--customers 100000] [--api URL --key KEY]

Prints a JSON summary (published, by type, duplicates, failed, achieved rate).  Exit status: 0 when every entry was
accepted, 1 when any failed or the API gave up, 2 on bad options or without a readable warehouse.

`engage simulate responses [--seed S] [--until ISO8601 | --all]`: the customer-response SIMULATOR (local only,
`engage_assets.demo.response_runner`): provider events for every sent touch through the outcome webhooks' path, and
conversions as the business source's files, everything `simulated=true`; prints a JSON summary with the true lift.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engage_assets.cli.events import event_queue
from engage_assets.settings import get_settings

if TYPE_CHECKING:
    from engage_assets.demo.event_publisher import Plan

# The simulator (the generator's tables, DuckDB, httpx) is imported when the command runs, so `engage` starts light.


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, or None."""
    shares = {"--purchased": args.purchased, "--inventory": args.inventory, "--duplicates": args.duplicates}
    if args.rate <= 0 or (args.duration is not None and args.duration <= 0):
        return "--rate and --duration must be positive"
    if args.count is not None and args.count < 1:
        return "--count must be at least 1"
    if any(not 0 <= v <= 1 for v in shares.values()) or args.purchased + args.inventory > 1:
        return "--purchased, --inventory and --duplicates are shares in [0, 1]; purchased + inventory at most 1"
    if args.shuffle_window < 0 or args.customers < 1:
        return "--shuffle-window must be at least 0, --customers at least 1"
    if bool(args.api) != bool(args.key):
        return "--api and --key go together"
    return None


def plan_of(args: argparse.Namespace) -> Plan:
    """`--count N` (no deadline) or `--duration D` (rate × D events, stopped at D seconds; default 10)."""
    from engage_assets.demo.event_publisher import Plan

    if args.count is not None:
        return Plan(rate=args.rate, total=args.count)
    duration = args.duration or 10.0
    return Plan(rate=args.rate, total=max(1, math.ceil(args.rate * duration)), deadline_s=duration)


def cmd_carts(args: argparse.Namespace) -> int:
    """`engage simulate carts`: publish simulated cart events at a rate; print the summary."""
    from engage_assets.demo.cart_simulator import CartStream, Mix, WarehouseUnavailable, load_shop, summary
    from engage_assets.demo.event_publisher import ApiSink, QueueSink, Sink, simulate

    if reason := problem(args):
        print(f"engage simulate carts: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    try:
        shop = load_shop(get_settings().warehouse_path, seed, args.customers)
    except WarehouseUnavailable as e:
        print(f"engage simulate carts: {e}", file=sys.stderr)
        return 2
    mix = Mix(args.purchased, args.inventory, args.duplicates, args.shuffle_window)
    stream = CartStream(shop, mix, seed, args.start or datetime.now(UTC), args.rate)
    sink: Sink = ApiSink(args.api, args.key) if args.api else QueueSink(event_queue())
    plan = plan_of(args)
    try:
        tally = simulate(stream, sink, plan)
    finally:
        if isinstance(sink, ApiSink):
            sink.close()
    result = summary(tally, plan, stream, sink, seed)
    print(json.dumps(result, indent=2))
    if tally.error:
        print(f"engage simulate carts: stopped: {tally.error}", file=sys.stderr)
    return 1 if result["failed"] or tally.error else 0


def cmd_responses(args: argparse.Namespace) -> int:
    """`engage simulate responses`: simulate the customers' responses to every touch sent so far; print the summary."""
    settings = get_settings()
    if settings.env != "local":
        print("engage simulate responses: the response simulator runs only locally (ENGAGE_ENV=local)", file=sys.stderr)
        return 2
    summary = simulate_local_responses(args.seed, None if args.all else args.until or datetime.now(UTC))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def simulate_local_responses(seed: int, until: datetime | None) -> dict[str, Any]:
    """Run the response simulator on the local state (history, outcome store, delivery ledger, warehouse contacts):
    what `engage simulate responses` and `engage run` call.  `until`: only what occurred by then (None: all)."""
    import dagster as dg

    from engage_assets.demo.response_runner import run_simulator
    from resources.by_env import build_resources
    from resources.delivery_ledger.sqlite import DeliveryLedger

    settings = get_settings()
    resources = build_resources(settings)
    keys = ("platform_history", "outcomes", "customer_state")
    ledger = DeliveryLedger(settings.ledger_path)
    try:
        with dg.build_resources({k: resources[k] for k in keys}) as built:
            return run_simulator(
                built.platform_history,
                built.outcomes,
                ledger,
                seed,
                until,
                contacts_of=built.customer_state.contacts,
                query=built.customer_state.warehouse.query_arrow,
            )
    finally:
        ledger.close()


def print_simulated_responses(seed: int) -> None:
    """`engage run`'s step after its deliveries (local only): the response SIMULATOR over the whole response window
    (its future included, so the metric models have every conversion to count), and what it wrote."""
    print("\nSimulating customer responses (SIMULATOR, local only, simulated=true on every row) ...")
    s = simulate_local_responses(seed, None)
    print(
        f"   provider events recorded {s['recorded']:,} (already recorded {s['duplicates']:,}), "
        f"conversions {s['conversions']:,} over {s['conversion_days']} days"
    )
    for program, t in sorted(s["true_lift"].items()):
        print(
            f"   {program:<26} treated {t['treated_n']:>7,}  control {t['control_n']:>6,}  "
            f"true rates {t['treated_rate']:.3f} vs {t['control_rate']:.3f}  true lift {t['true_lift']:+.3f}"
        )


def timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp for `--start` (UTC when it names no zone)."""
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `engage simulate carts` on the `engage` command's subparsers."""
    simulate_parser = sub.add_parser("simulate", help="simulated event traffic (demo and load tests)")
    commands = simulate_parser.add_subparsers(dest="simulate_cmd", required=True)
    carts = commands.add_parser("carts", help="cart events from the warehouse's customers and products, at a rate")
    carts.add_argument("--rate", type=float, default=100.0, help="events a second (default 100)")
    amount = carts.add_mutually_exclusive_group()
    amount.add_argument("--duration", type=float, default=None, help="seconds to run (default 10)")
    amount.add_argument("--count", type=int, default=None, help="publish exactly N entries instead")
    carts.add_argument("--seed", type=int, default=None, help="the same seed and --start give the same entries")
    carts.add_argument("--start", type=timestamp, default=None, help="simulated clock start (default: now)")
    carts.add_argument("--purchased", type=float, default=0.15, help="share of CartPurchased (default 0.15)")
    carts.add_argument("--inventory", type=float, default=0.02, help="share of InventoryChanged (default 0.02)")
    carts.add_argument("--duplicates", type=float, default=0.0, help="share of entries published twice")
    carts.add_argument("--shuffle-window", type=int, default=0, help="shuffle within windows of K events")
    carts.add_argument("--customers", type=int, default=100_000, help="customers sampled from the warehouse")
    carts.add_argument("--api", default=None, help="POST to this API's /v1/events instead of the local queue")
    carts.add_argument("--key", default=None, help="an API key with the `ingest` scope (with --api)")
    carts.set_defaults(fn=cmd_carts)
    responses = commands.add_parser(
        "responses",
        help="SIMULATOR (local only): provider events and conversions for the touches sent, from a known process",
    )
    responses.add_argument("--seed", type=int, default=11, help="the same seed gives the same responses (default 11)")
    when = responses.add_mutually_exclusive_group()
    when.add_argument("--until", type=timestamp, default=None, help="only what occurred by then (default: now)")
    when.add_argument("--all", action="store_true", help="the whole response window, future events included")
    responses.set_defaults(fn=cmd_responses)
