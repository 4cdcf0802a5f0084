"""The local demo API keys: `ensure_demo_key(settings)`, what `make run` prints a pasteable request with, and the
account managers' agent keys (`ensure_account_manager_keys`), so the tasks the Monday call assignment gives them
can be claimed locally."""

from __future__ import annotations

import os
from pathlib import Path

from engage_assets.domain.config import ProgramConfig, load_programs
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
    _write_secret(key_file, key + "\n", append=False)
    ensure_account_manager_keys(settings, store)
    return key


def _write_secret(path: Path, text: str, append: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, mode, 0o600)  # keys are secrets: owner-only
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ensure_account_manager_keys(settings: Settings, store: SqliteEngagementStore) -> list[str]:
    """Locally, an `agent` key for each account manager an enabled program's `callAssignment` names (the key id is
    the manager's id), created once; each new key is appended to ENGAGE_HOME/account_manager_keys (0600), so the
    tasks assigned to a manager can be claimed with the manager's own key.  Returns the ids created now."""
    managers = {
        m
        for p in load_programs(settings.program_configs)
        if isinstance(p, ProgramConfig) and p.enabled and p.callAssignment is not None
        for m in p.callAssignment.accountManagers
    }
    created = []
    for manager in sorted(managers):
        if store.get_api_key(manager) is None:
            _, key = create_api_key(store, ["agent"], f"local-demo account manager {manager}", key_id=manager)
            _write_secret(settings.home / "account_manager_keys", f"{manager} {key}\n", append=True)
            created.append(manager)
    return created
