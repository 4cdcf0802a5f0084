"""Building many small Python objects at once (a partition's candidate records, the store's rows of them).

CPython's cyclic garbage collector runs a generation-0 pass every 700 container allocations and, as the young objects
survive, full passes over every tracked object: building 25,000 records (about ten dicts and lists each) spent two
thirds of its time in those passes (issue 14: 0.21 s with the collector, 0.085 s without, for 15,000 churn records).
The records hold no reference cycles, so the collector can wait until they are built.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (reference counting still frees everything acyclic); it is
    enabled again after the block only if it was enabled before it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
