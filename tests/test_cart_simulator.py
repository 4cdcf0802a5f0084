"""`engage simulate carts` (`engage_assets.demo.cart_simulator`, `engage_assets.demo.event_publisher`): a tiny
hand-made warehouse in, a LocalEventQueue out; every body is an event `parse_event` accepts, the summary counts what
the queue holds, duplicates are the same entry again, a seed and a start repeat a run, and the pacing sleeps."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from engage_assets.cli import main
from engage_assets.demo.cart_simulator import CartStream, Mix, load_shop
from engage_assets.demo.event_publisher import ApiSink, Plan, Published, simulate
from engage_assets.domain.events import CartAbandoned, CartPurchased, InventoryChanged, ParsedEvent, parse_event
from resources.events.local import LocalEventQueue
from tests.test_event_ingest import build

START = "2026-01-18T16:45:00Z"
CUSTOMERS = [(f"C{n:08d}", mkt) for n, mkt in enumerate(["US", "UK", "DE", "JP", "US", "IN", "BR", "AU"] * 3)]
PRODUCTS = [(f"P{n:05d}", f"Product {n}", 4.0 + 3.5 * n, n % 9 != 4) for n in range(30)]


def make_warehouse(path: Path) -> Path:
    """Just what the simulator reads: `marts.customers` (a view here) and `raw.inventory` (two loads)."""
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA raw; CREATE SCHEMA marts")
        con.execute("CREATE TABLE raw.customers (customer_id VARCHAR, marketplace VARCHAR, account_status VARCHAR)")
        con.executemany("INSERT INTO raw.customers VALUES (?, ?, 'active')", CUSTOMERS)
        con.execute("CREATE VIEW marts.customers AS SELECT customer_id, marketplace FROM raw.customers")
        con.execute(
            "CREATE TABLE raw.inventory (product_id VARCHAR, name VARCHAR, category VARCHAR, price_usd DOUBLE, "
            "in_stock BOOLEAN, updated_at TIMESTAMP, loaded_at TIMESTAMP)"
        )
        rows = [(pid, name, "Home", price, stock, "2026-01-17", "2026-01-18") for pid, name, price, stock in PRODUCTS]
        con.executemany("INSERT INTO raw.inventory VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("INSERT INTO raw.inventory VALUES ('P00000', 'Old', 'Home', 999, true, '2026-01-01', '2026-01-02')")
    return path


@pytest.fixture
def warehouse(tmp_path) -> Path:
    return make_warehouse(tmp_path / "warehouse.duckdb")


def run_cli(monkeypatch, capsys, home: Path, warehouse: Path, *args: str) -> tuple[int, dict, str]:
    """`engage simulate carts ARGS` with ENGAGE_HOME=home; (exit status, the JSON summary or {}, stderr)."""
    monkeypatch.setenv("ENGAGE_HOME", str(home))
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.delenv("ENGAGE_ENV", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "carts", *args])
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), json.loads(out) if out.strip() else {}, err


def bodies(home: Path) -> list[str]:
    """The queue's bodies in the order they were sent (the local queue's file, read directly)."""
    with sqlite3.connect(home / "events.sqlite") as con:
        return [body for (body,) in con.execute("SELECT body FROM messages ORDER BY seq")]


def without_id(body: str) -> str:
    """The envelope less its `id` (ingest gives every accepted entry a new one)."""
    envelope = json.loads(body)
    del envelope["id"]
    return json.dumps(envelope, sort_keys=True)


RUN = ("--count", "300", "--rate", "1000", "--seed", "5", "--start", START, "--duplicates", "0.1")


def test_every_body_is_an_event_and_the_summary_counts_the_queue(tmp_path, warehouse, monkeypatch, capsys):
    code, summary, _ = run_cli(monkeypatch, capsys, tmp_path, warehouse, *RUN, "--shuffle-window", "8")
    assert code == 0 and summary["published"] == 300 and summary["failed"] == 0
    parsed = [parse_event(b) for b in bodies(tmp_path)]
    assert len(parsed) == 300 and all(isinstance(p, ParsedEvent) for p in parsed)
    events = [p for p in parsed if isinstance(p, ParsedEvent)]
    assert dict(Counter(e.detail_type for e in events)) == summary["byType"]
    assert set(summary["byType"]) == {"CartAbandoned", "CartPurchased", "InventoryChanged"}
    assert all(e.envelope.source == "ecommerce.cart" for e in events)
    carts = [e.detail for e in events if isinstance(e.detail, CartAbandoned)]
    assert {c.customerId for c in carts} <= {cid for cid, _ in CUSTOMERS}
    assert {i.id for c in carts for i in c.items} <= {pid for pid, *_ in PRODUCTS}
    assert all(1 <= c.itemCount == len(c.items) <= 5 for c in carts)
    assert {c.currency for c in carts} > {"USD", "JPY"}
    bought = {e.detail.cartId for e in events if isinstance(e.detail, CartPurchased)}
    assert bought and bought <= {c.cartId for c in carts}
    assert any(isinstance(e.detail, InventoryChanged) and not e.detail.inStock for e in events)
    assert 0.65 <= summary["cartsAtLeast50Usd"] <= 0.95


def test_duplicates_are_the_same_entry_published_again(tmp_path, warehouse, monkeypatch, capsys):
    _, summary, _ = run_cli(monkeypatch, capsys, tmp_path, warehouse, *RUN)
    copies = Counter(without_id(b) for b in bodies(tmp_path))
    assert summary["duplicates"] > 0
    assert sum(n - 1 for n in copies.values()) == summary["duplicates"]
    assert len({json.loads(b)["id"] for b in bodies(tmp_path)}) == 300  # each copy is an event of its own


def test_a_seed_and_a_start_repeat_a_run(tmp_path, warehouse, monkeypatch, capsys):
    runs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        args = ("--count", "120", "--rate", "1000", "--seed", seed, "--start", START, "--shuffle-window", "5")
        run_cli(monkeypatch, capsys, tmp_path / name, warehouse, *args, "--duplicates", "0.2")
        runs[name] = [without_id(b) for b in bodies(tmp_path / name)]
    assert runs["a"] == runs["b"] and len(runs["a"]) == 120
    assert runs["a"] != runs["c"]


def test_a_missing_warehouse_exits_2_and_says_so(tmp_path, monkeypatch, capsys):
    code, summary, err = run_cli(monkeypatch, capsys, tmp_path, tmp_path / "nope.duckdb", "--count", "5")
    assert code == 2 and not summary
    assert "no warehouse at" in err and "engage generate" in err
    assert not (tmp_path / "events.sqlite").exists()


def test_a_warehouse_without_the_tables_and_bad_options_exit_2(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    code, _, err = run_cli(monkeypatch, capsys, tmp_path, empty, "--count", "5")
    assert code == 2 and "raw.inventory" in err
    code, _, err = run_cli(monkeypatch, capsys, tmp_path, empty, "--duplicates", "2")
    assert code == 2 and "shares" in err


def test_the_api_sink_posts_put_events_requests(tmp_path, warehouse):
    queue = LocalEventQueue(path=str(tmp_path / "events.sqlite"))
    app, keys = build(tmp_path, queue)
    shop = load_shop(warehouse, seed=1)
    with TestClient(app) as client:
        stream = CartStream(shop, Mix(), 1, datetime(2026, 1, 18, tzinfo=UTC), 1000.0)
        tally = simulate(stream, ApiSink("http://testserver", keys["ingest"], client=client), Plan(1e5, 25))
        assert tally.published == 25 and queue.approximate_depth() == 25
        refused = simulate(stream, ApiSink("http://testserver", keys["reader"], client=client), Plan(1e5, 5))
        assert refused.published == 0 and refused.error and "ingest" in refused.error


class FakeTime:
    """A clock that moves only when slept on (and by `cost` per publish): pacing without waiting."""

    name = "fake"

    def __init__(self, cost: float = 0.0) -> None:
        self.now, self.cost, self.sleeps, self.calls = 0.0, cost, [], 0

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def publish(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        self.calls += 1
        self.now += self.cost
        return [{"EventId": "x"}] * len(entries)


def stream_of(n: int) -> list[Published]:
    return [Published("CartAbandoned", {}) for _ in range(n)]


def test_pacing_sleeps_between_slices_and_stops_at_the_deadline():
    t = FakeTime()
    tally = simulate(stream_of(1000), t, Plan(rate=100, total=50), clock=lambda: t.now, sleep=t.sleep)
    assert tally.published == 50 and t.calls == 10  # 5 events a 50 ms slice
    assert tally.elapsed_s == pytest.approx(0.5) and len(t.sleeps) == 10
    slow = FakeTime(cost=0.2)  # each slice takes 200 ms: behind, it never sleeps and stops at the deadline
    tally = simulate(
        stream_of(1000), slow, Plan(rate=100, total=100, deadline_s=1.0), clock=lambda: slow.now, sleep=slow.sleep
    )
    assert tally.published == 25 and slow.sleeps == [] and tally.elapsed_s == pytest.approx(1.0)
