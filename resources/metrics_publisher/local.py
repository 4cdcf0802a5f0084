"""The embedded default: the daily metrics in a SQLite file under ENGAGE_HOME (`daily_metrics.sqlite`), one row per
day, program and metric (re-running a day replaces its rows)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date

from resources.metrics_publisher.base import DailyMetric, MetricsPublisher
from resources.sqlite_wal import SqliteFileResource, write_transaction

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS daily_metrics (
    metric_date  TEXT NOT NULL,
    program_id   TEXT NOT NULL,
    metric       TEXT NOT NULL,
    value        REAL NOT NULL,
    published_at INTEGER NOT NULL,
    PRIMARY KEY (metric_date, program_id, metric)
);
"""


class LocalMetricsLog(SqliteFileResource, MetricsPublisher):
    """Daily metrics kept in a SQLite file (what CloudWatch holds in production)."""

    MIGRATIONS = (SCHEMA_V1,)

    def publish(self, metrics: Sequence[DailyMetric]) -> int:
        """Upsert every metric."""
        now = int(time.time())
        with write_transaction(self._conn()) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO daily_metrics (metric_date, program_id, metric, value, published_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(m.day.isoformat(), m.program_id, m.metric, m.value, now) for m in metrics],
            )
        return len(metrics)

    def read(self, day: date) -> dict[tuple[str, str], float]:
        """{(program_id, metric): value} of a day."""
        rows = self._conn().execute(
            "SELECT program_id, metric, value FROM daily_metrics WHERE metric_date = ?", (day.isoformat(),)
        )
        return {(p, m): v for p, m, v in rows}

    @property
    def destination(self) -> str:
        return self.path
