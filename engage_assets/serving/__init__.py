"""Serving API: `create_app(candidate_store, engagement_store)` (FastAPI), `ensure_demo_key(settings)`.

Run it with `make serve` (uvicorn over the embedded store at ENGAGE_HOME); see `engage_assets.serving.server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engage_assets.settings import Settings

DEMO_SCOPES = ["read:*", "agent", "inapp"]


def ensure_demo_key(settings: Settings) -> str:
    """The local demo key (read:* + agent + inapp), created once and kept in ENGAGE_HOME/demo_api_key (mode 0600,
    local only: the store holds only its hash).  Returns the key, so `make run` can print a pasteable request."""
    import os

    from engage_assets.serving.auth import _KEY_RE, create_api_key, hash_secret
    from resources.engagement.base import SqliteEngagementStore

    store = SqliteEngagementStore(path=str(settings.engagement_path))
    key_file = settings.home / "demo_api_key"
    if key_file.exists():
        key = key_file.read_text().strip()
        match = _KEY_RE.match(key)
        if match:
            record = store.get_api_key(match.group(1))
            if record and record.get("revokedAt") is None and record["keyHash"] == hash_secret(match.group(2)):
                return key
    _, key = create_api_key(store, DEMO_SCOPES, "local-demo")
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
