"""Local alerts: one JSON object per line in a file under ENGAGE_HOME (what `make dev` users tail)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from resources.alerts.base import AlertSink


class FileAlertSink(AlertSink):
    """Appends one JSON object per line to `path` (what `make dev` users tail)."""

    path: str

    def send(self, alert: dict[str, Any]) -> str:
        """Append the alert as one line; returns the file's path."""
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(alert, sort_keys=True) + "\n"
        # One write of a line shorter than PIPE_BUF with O_APPEND: concurrent sensors never interleave lines.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return str(target)
