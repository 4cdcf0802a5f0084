"""API keys, scopes and per-key rate limits for the serving API.

A key reads `ek_<keyId>_<secret>`: the key id (public, safe to log) finds the stored record, and only a SHA-256 of
the 256-bit random secret is stored, so the store never holds a usable key (a slow password hash buys nothing
for a high-entropy secret, and would cost milliseconds on every request).

Scopes: `read:<programId>` / `read:*` (candidate queries and the customer view), `agent` (call tasks), `inapp`
(the in-app inbox), `admin` (keys, GDPR deletion), `ingest` (event ingest and webhooks, other issues' routes).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from resources.engagement.base import EngagementStore

SCOPES = ("read:*", "agent", "inapp", "admin", "ingest")
SCOPE_PATTERN = r"^(read:(\*|[a-z][a-z0-9-]{0,63})|agent|inapp|admin|ingest)$"
KEY_PATTERN = re.compile(r"^ek_([0-9a-f]{16})_([A-Za-z0-9_-]{20,128})$")  # groups: key id, secret

DEFAULT_RATE_PER_SECOND = 50.0
DEFAULT_BURST = 100


def parse_api_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = KEY_PATTERN.match(presented)
    return None if match is None else (match.group(1), match.group(2))


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret (SHA-256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """(key id, full key to hand out once, hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"ek_{key_id}_{secret}", hash_secret(secret)


def create_api_key(
    store: EngagementStore,
    scopes: list[str],
    name: str,
    rate_per_second: float = DEFAULT_RATE_PER_SECOND,
    burst: int = DEFAULT_BURST,
    key_id: str | None = None,
    now: float | None = None,
) -> tuple[dict[str, Any], str]:
    """Store a new key; returns (its stored record without the hash, the key itself: shown once, never stored)."""
    for scope in scopes:
        if not re.match(SCOPE_PATTERN, scope):
            raise ValueError(f"unknown scope {scope!r}")
    generated_id, key, key_hash = new_api_key()
    key_id = key_id or generated_id
    if key_id != generated_id:
        key = f"ek_{key_id}_{key.split('_', 2)[2]}"
    record = {
        "keyId": key_id,
        "keyHash": key_hash,
        "scopes": sorted(set(scopes)),
        "name": name,
        "ratePerSecond": float(rate_per_second),
        "burst": int(burst),
        "createdAt": int(now or time.time()),
    }
    if not store.create_api_key(record):
        raise ValueError("key id exists")
    return public_key_record(record | {"revokedAt": None}), key


def public_key_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored key record without its hash: what the API shows."""
    return {k: v for k, v in record.items() if k != "keyHash"}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id (loggable) and what it may do."""

    key_id: str
    scopes: frozenset[str]
    rate_per_second: float
    burst: int

    def can_read(self, program_id: str) -> bool:
        """Whether this key may read the program's candidates."""
        return "read:*" in self.scopes or f"read:{program_id}" in self.scopes

    def has(self, scope: str) -> bool:
        """Whether this key holds the scope."""
        return scope in self.scopes

    @property
    def readable_programs(self) -> frozenset[str] | None:
        """None: every program."""
        if "read:*" in self.scopes:
            return None
        return frozenset(s[5:] for s in self.scopes if s.startswith("read:"))


class KeyVerifier:
    """Resolves a presented key to a Principal, with a short in-process cache (a key read per request would be a
    DynamoDB round trip in production).  A revoked key stops working within `cache_seconds` in other processes,
    at once in this one."""

    def __init__(self, store: EngagementStore, cache_seconds: float = 10.0) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def forget(self, key_id: str) -> None:
        """Drop the cached record (a revocation takes effect at once in this process)."""
        with self._lock:
            self._cache.pop(key_id, None)

    def _record(self, key_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = self._store.get_api_key(key_id)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: garbage key ids cannot grow it without limit
                self._cache.clear()
            self._cache[key_id] = (now + self._cache_seconds, record)
        return record

    def verify(self, presented: str | None) -> Principal | None:
        """The key's Principal, or None for a missing, malformed, unknown, revoked or wrong key."""
        parsed = parse_api_key(presented) if presented else None
        if parsed is None:
            return None
        key_id, secret = parsed
        record = self._record(key_id)
        if record is None or record.get("revokedAt") is not None:
            return None
        if not hmac.compare_digest(record["keyHash"], hash_secret(secret)):
            return None
        return Principal(
            key_id=key_id,
            scopes=frozenset(record["scopes"]),
            rate_per_second=float(record["ratePerSecond"]),
            burst=int(record["burst"]),
        )


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token bucket per key id, in this process (each worker limits on its own: with N workers a key gets up to N
    times its rate; a shared limiter would cost a store round trip per request)."""

    buckets: dict[str, _Bucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key_id: str, rate: float, burst: int, now: float | None = None) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self.lock:
            bucket = self.buckets.get(key_id)
            if bucket is None:
                bucket = self.buckets[key_id] = _Bucket(tokens=float(burst), updated=now)
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate if rate > 0 else 60.0
