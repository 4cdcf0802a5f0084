"""Where the reports' HTML files go: a folder (ENGAGE_HOME/reports), written whole (a temporary file renamed over
the old one), so a reader never sees half a report."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from resources.file_mode import publish


class ReportFolder(dg.ConfigurableResource):
    """The folder the reports are written to."""

    root: str = Field(description="The reports' folder (ENGAGE_HOME/reports).")

    def write(self, relative: str, text: str) -> Path:
        """Write `text` to `root/relative` atomically; its path."""
        path = Path(self.root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            publish(tmp)  # readable like any file written in place (mkstemp makes it 0600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
