"""The suppression list's address hashes, shared by both ledgers: keyed (HMAC-SHA256 under the deployment's secret,
`engage_assets.settings.suppression_key`), so a stolen list or backup cannot be reversed by hashing every phone
number; and the version-1 plain SHA-256, read only to migrate an entry (see each backend's MIGRATION note).

MIGRATION (version 1 → 2, both backends).  A plain hash cannot be turned into a keyed one without the address, and
the list never stored addresses.  So each version-1 entry is kept aside as a legacy entry and re-keyed the first
time its address is looked up (a delivery to it, which is exactly when it matters): the lookup finds no keyed entry,
finds the plain one, answers with its reason, writes the keyed entry (same reason and time) and deletes the plain
one.  No listed address is ever contacted because of the change.  Entries whose address is never looked up again
stay plain (and as brute-forceable as before) until an operator deletes them: `legacy_count()` says how many are
left.

THE KEY MUST NOT CHANGE: under another key every keyed entry is unreadable and every listed address would be
contacted again.  So each store records a check value of its key (an HMAC of a constant, not the key) on first use,
and a ledger opened with another key refuses to read or write the list (`WrongSuppressionKey`): deliveries stop
with a clear error instead of mailing bounced and complaining addresses.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from engage_assets.domain.pressure import address_hash, legacy_address_hash, normalize_address
from engage_assets.settings import suppression_key


class WrongSuppressionKey(RuntimeError):
    """The store's suppression list was written under another key (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(
            "the suppression list was written under another ENGAGE_SUPPRESSION_KEY: restore that key (under this one "
            "every listed address would be contacted again)"
        )


class SuppressionHashes:
    """A ledger's address hashing: under `key`, or (None) the settings' key, read on first use."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key

    def key(self) -> bytes:
        """The HMAC key (ENGAGE_SUPPRESSION_KEY, or the local key file: `engage_assets.settings.suppression_key`)."""
        if self._key is None:
            self._key = suppression_key()
        return self._key

    def check_value(self) -> str:
        """What a store records of its key: an HMAC of a constant (it reveals nothing of the key)."""
        return hmac.new(self.key(), b"engage:suppression-key-check", hashlib.sha256).hexdigest()[:32]

    def verify(self, recorded: str) -> None:
        """Raise WrongSuppressionKey unless `recorded` (the store's check value) is this key's."""
        if not hmac.compare_digest(recorded, self.check_value()):
            raise WrongSuppressionKey()

    def of(self, address: str) -> str:
        """The keyed hash of one address."""
        return address_hash(address, self.key())

    def keyed(self, addresses: Iterable[str]) -> dict[str, str]:
        """{keyed hash: normalized address} of the addresses."""
        key = self.key()
        return {address_hash(a, key): normalize_address(a) for a in addresses}

    @staticmethod
    def legacy(addresses: Iterable[str]) -> dict[str, str]:
        """{version-1 plain hash: normalized address} of the addresses."""
        return {legacy_address_hash(a): normalize_address(a) for a in addresses}
