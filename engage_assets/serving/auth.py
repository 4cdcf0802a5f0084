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
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

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


class TooManyInvalidKeys(Exception):
    """The client has presented too many invalid keys: answer 429 (no store read) until `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many invalid API keys from this client")
        self.retry_after = retry_after


_NOT_CACHED = object()


class KeyVerifier:
    """Resolves a presented key to a Principal, with a bounded in-process cache (a key read per request would be a
    DynamoDB round trip in production): at most `cache_size` key ids, each for `cache_seconds` (found or not, so a
    repeated unknown id is not a read each time either).  A revoked key stops working within `cache_seconds` in other
    processes, at once in this one.

    Invalid keys are rate-limited per client (`client`: the peer address, uvicorn's proxy-aware one): each
    presented key that fails takes a token from the client's bucket (`invalid_burst`, refilled at `invalid_rate`
    per second); once it is empty, a key that is not in the cache answers 429 without a store read, so a client
    guessing key ids costs at most its bucket in reads.  A cached valid key still works (clients behind one proxy
    address are not locked out by another's guessing while their key is in use)."""

    def __init__(
        self,
        store: EngagementStore,
        cache_seconds: float = 10.0,
        cache_size: int = 10_000,
        invalid_rate: float = 1.0,
        invalid_burst: int = 100,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache: TTLCache[str, dict[str, Any] | None] = TTLCache(cache_size, cache_seconds, timer=timer)
        self._lock = threading.Lock()
        self._timer = timer
        self.invalid_rate, self.invalid_burst = invalid_rate, invalid_burst
        self.invalid = RateLimiter(max_buckets=max(cache_size, 1_000))  # by client address

    def forget(self, key_id: str) -> None:
        """Drop the cached record (a revocation takes effect at once in this process)."""
        with self._lock:
            self._cache.pop(key_id, None)

    def _record(self, key_id: str, client: str | None) -> dict[str, Any] | None:
        with self._lock:
            hit = self._cache.get(key_id, _NOT_CACHED)
        if hit is not _NOT_CACHED:
            return hit  # type: ignore[return-value]
        if client is not None:  # a client out of invalid-key tokens gets no store read
            wait = self.invalid.wait(client, self.invalid_rate, self.invalid_burst, self._timer())
            if wait:
                raise TooManyInvalidKeys(wait)
        record = self._store.get_api_key(key_id)
        with self._lock:
            self._cache[key_id] = record
        return record

    def _invalid(self, client: str | None) -> None:
        """Count an invalid key against the client: 429 once its bucket is empty."""
        if client is not None:
            wait = self.invalid.take(client, self.invalid_rate, self.invalid_burst, self._timer())
            if wait:
                raise TooManyInvalidKeys(wait)

    def verify(self, presented: str | None, client: str | None = None) -> Principal | None:
        """The key's Principal, or None for a missing, malformed, unknown, revoked or wrong key.  With `client`,
        raises TooManyInvalidKeys once that client has presented too many invalid keys (see the class)."""
        if not presented:
            return None
        parsed = parse_api_key(presented)
        record = None if parsed is None else self._record(parsed[0], client)
        if (
            parsed is None
            or record is None
            or record.get("revokedAt") is not None
            or not hmac.compare_digest(record["keyHash"], hash_secret(parsed[1]))
        ):
            self._invalid(client)
            return None
        return Principal(
            key_id=parsed[0],
            scopes=frozenset(record["scopes"]),
            rate_per_second=float(record["ratePerSecond"]),
            burst=int(record["burst"]),
        )

    def authenticate(self, scope: MutableMapping[str, Any], presented: str | None) -> Principal | None:
        """`verify` for an ASGI request, once per request: the outcome is kept on the scope's state, so the fast
        path and the FastAPI route behind it never count one invalid key twice."""
        state = scope.setdefault("state", {})
        if AUTH_STATE not in state:
            client = scope.get("client")
            try:
                state[AUTH_STATE] = self.verify(presented, client[0] if client else "-")
            except TooManyInvalidKeys as e:
                state[AUTH_STATE] = e
        outcome = state[AUTH_STATE]
        if isinstance(outcome, TooManyInvalidKeys):
            raise outcome
        return outcome


AUTH_STATE = "engage.auth"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key id (or client address), in this process (each worker limits on its own: with N workers
    a key gets up to N times its rate; a shared limiter would cost a store round trip per request).  At most
    `max_buckets` buckets, each dropped after `idle_seconds` unused (a dropped bucket comes back full, as it would
    have refilled by then)."""

    def __init__(self, max_buckets: int = 100_000, idle_seconds: float = 3_600.0) -> None:
        self.buckets: TTLCache[str, _Bucket] = TTLCache(max_buckets, idle_seconds)
        self.lock = threading.Lock()

    def _bucket(self, key: str, rate: float, burst: int, now: float) -> _Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(tokens=float(burst), updated=now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        self.buckets[key] = bucket  # re-set: its idle time starts again
        return bucket

    def take(self, key: str, rate: float, burst: int, now: float | None = None) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self.lock:
            bucket = self._bucket(key, rate, burst, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate if rate > 0 else 60.0

    def wait(self, key: str, rate: float, burst: int, now: float | None = None) -> float:
        """0.0 if a token is available (none is taken), else the seconds until one is."""
        now = time.monotonic() if now is None else now
        with self.lock:
            bucket = self._bucket(key, rate, burst, now)
            if bucket.tokens >= 1.0:
                return 0.0
            return (1.0 - bucket.tokens) / rate if rate > 0 else 60.0
