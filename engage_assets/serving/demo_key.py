"""The local demo API key: `ensure_demo_key(settings)`, what `make run` prints a pasteable request with."""

from __future__ import annotations

import os

from engage_assets.serving.auth import create_api_key, hash_secret, parse_api_key
from engage_assets.settings import Settings
from resources.engagement.sqlite import SqliteEngagementStore

DEMO_SCOPES = ["read:*", "agent", "inapp"]


def ensure_demo_key(settings: Settings) -> str:
    """The local demo key (read:* + agent + inapp), created once and kept in ENGAGE_HOME/demo_api_key (mode 0600,
    local only: the store holds only its hash).  Returns the key, so `make run` can print a pasteable request.
    A key that no longer works (revoked, or the store was rebuilt) is replaced."""
    store = SqliteEngagementStore(path=str(settings.engagement_path))
    key_file = settings.home / "demo_api_key"
    if key_file.exists():
        key = key_file.read_text().strip()
        parsed = parse_api_key(key)
        if parsed is not None:
            key_id, secret = parsed
            record = store.get_api_key(key_id)
            if record and record.get("revokedAt") is None and record["keyHash"] == hash_secret(secret):
                return key
    _, key = create_api_key(store, DEMO_SCOPES, "local-demo")
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the key is a secret: owner-only
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
