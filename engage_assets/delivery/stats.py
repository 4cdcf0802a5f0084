"""What a delivery run did, as counts (never an address or a name)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass
class DeliveryStats:
    """Counts of what a run did: {(channel, outcome, reason): n}; outcome ∈ sent, suppressed, failed, retry,
    deferred, stale.  Reasons are codes (never an address or a name).  `reopened`: stale touches planned again
    by a run told to send them."""

    counts: Counter = field(default_factory=Counter)
    # (programId, partitionKey) of every touch the run marked sent: whose contact history is written again.
    sent_in: set[tuple[str, str]] = field(default_factory=set)
    recovered: int = 0
    reopened: int = 0
    seconds: float = 0.0

    def add(self, channel: str, outcome: str, reason: str | None = None, n: int = 1) -> None:
        """Count `n` touches of the channel with this outcome and reason."""
        self.counts[(channel, outcome, reason or "")] += n

    def total(self, outcome: str | None = None) -> int:
        """Touches with this outcome (every outcome when None)."""
        return sum(n for (_, o, _r), n in self.counts.items() if outcome is None or o == outcome)

    def by_channel(self) -> dict[str, dict[str, int]]:
        """{channel: {outcome: n}}."""
        out: dict[str, dict[str, int]] = {}
        for (ch, outcome, _), n in sorted(self.counts.items()):
            out.setdefault(ch, {}).setdefault(outcome, 0)
            out[ch][outcome] += n
        return out

    def by_reason(self) -> dict[str, int]:
        """{"channel/outcome/reason": n} of everything but plain sends."""
        out: Counter = Counter()
        for (ch, outcome, reason), n in self.counts.items():
            if outcome != "sent" or reason:
                out[f"{ch}/{outcome}/{reason or '-'}"] += n
        return dict(sorted(out.items()))


def touches_by_channel(plan: pa.Table) -> dict[str, int]:
    """`touches/<channel>` → planned touches of that channel (sorted by channel), for a touch_plan partition."""
    by_channel: dict[str, int] = {}
    if plan.num_rows:
        for row in plan.group_by("channel").aggregate([("channel", "count")]).to_pylist():
            by_channel[row["channel"]] = row["channel_count"]
    return {f"touches/{k}": v for k, v in sorted(by_channel.items())}
