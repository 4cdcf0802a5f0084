"""The mode of the files the platform publishes for others to read (stage files, exports, reports): what a file
written in place would get, 0o666 less the process's umask.  Such files are written to a temporary file first
(`tempfile.mkstemp`, then renamed into place, so no reader sees half a file), and mkstemp makes it owner-only."""

from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import: reading the umask means setting it, process-wide (not while other threads create files).
PUBLISHED_MODE = 0o666 & ~_umask()


def publish(path: str | os.PathLike[str]) -> None:
    """Give a temporary file the mode a file written in place would have, before it is renamed into place."""
    os.chmod(path, PUBLISHED_MODE)
