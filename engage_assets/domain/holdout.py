"""The holdout (control group): which candidates a program measures its lift against and never contacts.

Deterministic per customer, the same on the batch and the event path: md5(salt|program|customer), its first 4 bytes
as a number, modulo 10,000, below the program's percent × 100.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from engage_assets.domain import duck

# From this many ids the holdout's hashes are computed by DuckDB in one vectorized statement (0.3 s of Python md5 calls
# for the 10M bench's 465,000 candidates); fewer (the event path's one cart) are hashed here, with no statement to plan.
HOLDOUT_VECTOR_MIN = 2_000


def holdout_mask(customer_ids: Sequence[str] | pa.Array, program_id: str, percent: float, salt: str) -> np.ndarray:
    """Deterministic control group: md5(salt|program|customer) → bucket in [0, 10000) (the digest's first 4 bytes).
    `customer_ids`: text, a list or an Arrow string array (the batch stage's, hashed without leaving Arrow)."""
    threshold = int(round(percent * 100))
    if len(customer_ids) >= HOLDOUT_VECTOR_MIN:
        ids = pa.table({"customer_id": pa.array(customer_ids, pa.string())})
        con = duck.cursor()
        try:
            con.register("ids", ids)
            buckets = con.execute(
                "SELECT CAST('0x' || substr(md5($prefix || customer_id), 1, 8) AS UBIGINT) % 10000 AS b FROM ids",
                {"prefix": f"{salt}|{program_id}|"},
            ).fetchnumpy()["b"]
        finally:
            con.close()
        return np.asarray(buckets < threshold, dtype=bool)
    if isinstance(customer_ids, pa.Array):
        customer_ids = customer_ids.to_pylist()
    out = np.empty(len(customer_ids), dtype=bool)
    prefix = f"{salt}|{program_id}|".encode()
    for i, cid in enumerate(customer_ids):
        out[i] = int.from_bytes(hashlib.md5(prefix + cid.encode()).digest()[:4], "big") % 10_000 < threshold
    return out
