"""The holdout's vectorized hash (DuckDB's md5, for a batch's thousands of candidates) assigns every customer exactly
as the per-id Python hash the event path uses: a customer is held out on both paths or on neither."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_assets.domain import holdout
from engage_assets.domain.holdout import HOLDOUT_VECTOR_MIN, holdout_mask


def per_id(ids: list[str], program: str, percent: float, salt: str) -> np.ndarray:
    """The Python path, whatever the number of ids."""
    saved = holdout.HOLDOUT_VECTOR_MIN
    holdout.HOLDOUT_VECTOR_MIN = len(ids) + 1
    try:
        return holdout_mask(ids, program, percent, salt)
    finally:
        holdout.HOLDOUT_VECTOR_MIN = saved


@settings(max_examples=25, deadline=None)
@given(
    ids=st.lists(st.text(max_size=12), min_size=1, max_size=50),
    program=st.text(max_size=10),
    salt=st.text(max_size=10),
    percent=st.floats(0, 100),
)
def test_the_vectorized_hash_assigns_as_the_per_id_hash(ids, program, salt, percent):
    many = (ids * (HOLDOUT_VECTOR_MIN // len(ids) + 1))[: HOLDOUT_VECTOR_MIN + 3]  # enough for the vectorized path
    assert np.array_equal(holdout_mask(many, program, percent, salt), per_id(many, program, percent, salt))


def test_a_large_batch_holds_out_about_its_percent():
    ids = [f"C{n:08d}" for n in range(20_000)]
    share = holdout_mask(ids, "churn-prevention", 10.0, "s").mean()
    assert 0.09 < share < 0.11
