"""The buckets a large source is joined in (`engage_assets.domain.join_buckets`): every customer id in exactly one
bucket, as DuckDB evaluates the buckets' predicates (ranges cut at a sample's quantiles, or hashes)."""

from __future__ import annotations

from collections import Counter

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_assets.domain.join_buckets import NULL_IDS, Bucket, range_bounds, range_buckets, split

ids = st.lists(st.text(alphabet="AC019'_ é", max_size=6), min_size=0, max_size=60)


def bucket_of_each(values: list[str | None], buckets: list[Bucket]) -> list[list[int]]:
    """For each id, the buckets whose predicate DuckDB finds true."""
    con = duckdb.connect()
    con.register("t", pa.table({"customer_id": pa.array(values, pa.string()), "i": list(range(len(values)))}))
    cases = ", ".join(f"({b.holds('t')}) AS b{k}" for k, b in enumerate(buckets))
    rows = con.execute(f"SELECT i, {cases} FROM t ORDER BY i").fetchall()
    return [[k for k, hit in enumerate(row[1:]) if hit] for row in rows]


@settings(max_examples=60, deadline=None)
@given(sample=ids, data=ids, k=st.integers(2, 9))
def test_range_buckets_hold_every_id_once(sample, data, k):
    bounds = range_bounds(sample, k)
    assert bounds == sorted(set(bounds)) and len(bounds) <= k - 1
    buckets = range_buckets(bounds)
    assert len(buckets) == len(bounds) + 1
    assert all(len(hits) == 1 for hits in bucket_of_each(data, buckets))


@settings(max_examples=30, deadline=None)
@given(data=st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=40), k=st.integers(2, 9))
def test_hash_buckets_hold_every_row_once_a_null_id_included(data, k):
    assert all(len(hits) == 1 for hits in bucket_of_each(data, [Bucket(i, k) for i in range(k)]))


def test_the_ranges_split_a_sample_evenly():
    sample = [f"C{n:010d}" for n in range(0, 40_000, 7)]  # 5,715 ids
    buckets = range_buckets(range_bounds(sample, 8))
    counts = Counter(hits[0] for hits in bucket_of_each(sample, buckets))
    assert len(counts) == 8 and max(counts.values()) - min(counts.values()) <= 1


def test_a_range_holds_no_null_id():
    """A NULL id is never a valid row (its customer is unknown), so no range needs it."""
    assert bucket_of_each([None], range_buckets(["M"])) == [[]]


@settings(max_examples=40, deadline=None)
@given(sample=ids, data=st.lists(st.one_of(st.none(), st.text(alphabet="AC019'_ é", max_size=6)), max_size=40))
def test_the_rejections_ranges_and_the_null_bucket_hold_every_row_once(sample, data):
    """The source stage's rejected rows are written in the ranges plus the NULL ids' bucket: a row without an id
    (rejected: its customer is unknown) is in that bucket only, every other row in one range."""
    bounds = range_bounds(["M", *sample], 4)  # at least one cut: ranges (without, `split` gives hash buckets)
    buckets = [b for b in split(4, bounds) if b is not None]
    assert all(b.ranged for b in buckets)
    hits = bucket_of_each(data, [*buckets, NULL_IDS])
    assert all(len(h) == 1 for h in hits)
    assert all((h == [len(buckets)]) == (v is None) for h, v in zip(hits, data, strict=True))


def test_one_bucket_is_one_statement():
    assert split(1, ["M"]) == [None] and split(1) == [None]
    assert [b.index for b in split(3) if b is not None] == [0, 1, 2]
