"""API keys from the shell (`engage api-key create|list|revoke`), invalid keys rate-limited per client without a
store read each, and the key caches bounded with TTLs."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from engage_assets.cli import main
from engage_assets.serving.app import create_app
from engage_assets.serving.auth import KeyVerifier, create_api_key
from resources.engagement.sqlite import SqliteEngagementStore
from resources.store.sqlite import SqliteCandidateStore

KEYS = "/v1/admin/api-keys"


def engage(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_ENV", "local")
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    return tmp_path


def app_over(home) -> TestClient:
    engagement = SqliteEngagementStore(path=str(home / "engagement.sqlite"))
    return TestClient(create_app(SqliteCandidateStore(path=str(home / "store.sqlite")), engagement))


def test_the_first_admin_key_comes_from_the_cli(home, capsys):
    code, out, err = engage(capsys, "api-key", "create", "--name", "ops", "--scope", "admin", "--scope", "read:*")
    assert code == 0, err
    key = re.search(r"^api key: (ek_\S+)$", out, re.M).group(1)
    key_id = re.search(r"^key id:  ([0-9a-f]{16})$", out, re.M).group(1)
    assert key.startswith(f"ek_{key_id}_") and "shown once" in err
    secret = key.split("_", 2)[2]
    stored = SqliteEngagementStore(path=str(home / "engagement.sqlite")).get_api_key(key_id)
    assert secret not in json.dumps(stored) and stored["scopes"] == ["admin", "read:*"]

    with app_over(home) as client:  # the key works: it manages the others through the API
        r = client.get(KEYS, headers={"X-API-Key": key})
        assert r.status_code == 200 and [k["keyId"] for k in r.json()["items"]] == [key_id]

    code, out, _ = engage(capsys, "api-key", "list")
    assert code == 0 and key_id in out and "admin read:*" in out and "ops" in out
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out)  # created
    assert secret not in out and stored["keyHash"] not in out
    code, out, _ = engage(capsys, "api-key", "list", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [r["keyId"] for r in listed] == [key_id] and "keyHash" not in listed[0] and secret not in out

    code, out, _ = engage(capsys, "api-key", "revoke", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    with app_over(home) as client:
        assert client.get(KEYS, headers={"X-API-Key": key}).status_code == 401
    assert engage(capsys, "api-key", "revoke", "0123456789abcdef")[0] == 1
    assert engage(capsys, "api-key", "create", "--name", "x", "--scope", "superuser")[0] == 2


class CountingStore(SqliteEngagementStore):
    def get_api_key(self, key_id):
        self.__dict__.setdefault("_reads", []).append(key_id)
        return super().get_api_key(key_id)

    @property
    def reads(self) -> int:
        return len(self.__dict__.get("_reads", []))


@pytest.mark.parametrize("fast_paths", [True, False])
def test_invalid_keys_are_rate_limited_per_client_without_store_reads(tmp_path, fast_paths):
    engagement = CountingStore(path=str(tmp_path / "engagement.sqlite"))
    _, good = create_api_key(engagement, ["read:*"], "good")
    candidates = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    app = create_app(candidates, engagement, invalid_keys=(0.001, 5), fast_paths=fast_paths)
    path = "/v1/programs/churn-prevention/candidates/by-risk-level?riskLevel=high"
    with TestClient(app) as client, TestClient(app, client=("10.0.0.2", 1)) as other:
        assert client.get(path, headers={"X-API-Key": good}).status_code == 200  # cached from here on
        reads = engagement.reads
        codes = [
            client.get(path, headers={"X-API-Key": f"ek_{i:016x}_{'x' * 43}"}).status_code for i in range(50)
        ]  # 50 guessed key ids: each would be a store read
        assert codes == [401] * 5 + [429] * 45
        assert engagement.reads - reads == 5  # one read per token, none once the client is blocked
        r = client.get(path, headers={"X-API-Key": "garbage"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert client.get(path, headers={"X-API-Key": good}).status_code == 200  # a cached valid key still works
        assert other.get(path, headers={"X-API-Key": "ek_" + "f" * 16 + "_" + "y" * 43}).status_code == 401


def test_key_caches_are_bounded_and_expire(tmp_path):
    engagement = CountingStore(path=str(tmp_path / "engagement.sqlite"))
    record, key = create_api_key(engagement, ["read:*"], "k")
    now = [0.0]
    verifier = KeyVerifier(engagement, cache_seconds=10, cache_size=100, invalid_burst=10**6, timer=lambda: now[0])
    for i in range(1_000):  # unknown ids: each cached as "no such key", the cache never past its size
        assert verifier.verify(f"ek_{i:016x}_{'x' * 43}", client="c") is None
    assert len(verifier._cache) <= 100 and len(verifier.invalid.buckets) == 1
    assert verifier.verify(key) is not None and verifier.verify(key) is not None
    reads = engagement.reads
    engagement.revoke_api_key(record["keyId"])  # elsewhere: this process's cache still holds the record ...
    assert verifier.verify(key) is not None and engagement.reads == reads
    now[0] = 10.5  # ... until its TTL
    assert verifier.verify(key) is None and engagement.reads == reads + 1
