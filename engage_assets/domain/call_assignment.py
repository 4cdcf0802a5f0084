"""Call-task assignment: open call tasks to account managers, balancing their open load (pure).

Churn prevention's "Personal Call Campaign (Segment 1)", Monday 09:00: critical-risk customers' call tasks are
assigned to the account managers the program names (`callAssignment.accountManagers`).  Tasks are taken earliest due
first; each goes to the manager with the fewest open assigned tasks at that moment (ties: the name, so a run is
reproducible), counting what they already hold from earlier runs.  Loads then differ by at most one where they
can (a manager already holding more than the others gets nothing until the others catch up).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def balance_assignments(task_ids: Sequence[str], managers: Sequence[str], loads: Mapping[str, int]) -> dict[str, str]:
    """task id → manager, for every task in order; `loads`: each manager's open assigned tasks before the run
    (managers absent count 0; loads of people not in `managers` are ignored).  ValueError without a manager or on a
    repeated task id (a task is never assigned twice)."""
    if not managers:
        raise ValueError("no account managers to assign call tasks to")
    if len(set(task_ids)) != len(task_ids):
        raise ValueError("a task id repeats: a task is assigned once")
    heap = [(int(loads.get(m, 0)), m) for m in sorted(set(managers))]
    heapq.heapify(heap)
    out: dict[str, str] = {}
    for task_id in task_ids:
        load, manager = heapq.heappop(heap)
        out[task_id] = manager
        heapq.heappush(heap, (load + 1, manager))
    return out
