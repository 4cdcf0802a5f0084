"""The ledger's column-wise plan parameters (`plan_params_of`, #10 cart_events_per_s) are the per-row ones
(`plan_params`): the same tuples, the same payload bytes, the same refusal of another program's row."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_assets.domain.plan import PLAN_SCHEMA
from resources.delivery_ledger.sqlite_partitions import plan_params, plan_params_of

PROGRAM = "abandoned-cart-recovery"
text = st.text(max_size=8)
maybe_text = st.none() | text
row = st.fixed_dictionaries(
    {
        "touchKey": text,
        "programId": st.just(PROGRAM),
        "partitionKey": text,
        "customerId": text,
        "subjectId": text,
        "touchId": text,
        "channel": st.sampled_from(["email", "sms", "push"]),
        "channelId": text,
        "templateId": maybe_text,
        "dueAt": st.integers(0, 2**40),
        "expiresAt": st.none() | st.integers(0, 2**40),
        "conditions": maybe_text,
        "segment": maybe_text,
        "offerType": maybe_text,
        "offer": maybe_text,
        "holdout": st.booleans(),
        "marketplace": maybe_text,
        "timeZone": maybe_text,
        "currency": maybe_text,
        "score": st.none() | st.floats(allow_nan=False, allow_infinity=False),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.lists(row, max_size=30), st.integers(0, 2**40))
def test_the_column_wise_parameters_are_the_per_row_ones(rows, now):
    batch = pa.RecordBatch.from_pylist(rows, schema=PLAN_SCHEMA)
    assert plan_params_of(batch, PROGRAM, now) == [plan_params(r, PROGRAM, now) for r in batch.to_pylist()]


def test_a_row_of_another_program_is_refused():
    batch = pa.RecordBatch.from_pylist(
        [{"touchKey": "k", "programId": "other", "dueAt": 1, "holdout": False}], schema=PLAN_SCHEMA
    )
    with pytest.raises(ValueError, match="another program"):
        plan_params_of(batch, PROGRAM, 0)
    with pytest.raises(ValueError, match="another program"):
        plan_params(batch.to_pylist()[0], PROGRAM, 0)
