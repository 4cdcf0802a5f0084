"""SNS message signatures, checked the way SNS documents them, and subscription confirmation.

A message is accepted only when
1. its `TopicArn` is one of the topics the deployment subscribed (`allowed_topics`);
2. its `SigningCertURL` is an SNS certificate URL (`cert_url`: by default `https://sns.<region>.amazonaws.com/
   SimpleNotificationService-<id>.pem`; tests allow-list a local URL serving a certificate they made);
3. its `Signature` (base64) verifies, with that certificate's public key (RSA PKCS#1 v1.5; SHA-1 for
   `SignatureVersion` 1, SHA-256 for 2), over the text SNS signs (`engage_assets.domain.outcomes.string_to_sign`);
4. the certificate is within its validity period.

Certificates are fetched once per URL (at most `cache_size` kept).  A `SubscriptionConfirmation` that passes is
confirmed by fetching its `SubscribeURL`, which must itself be an SNS URL (`subscribe_url`).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engage_assets.domain.outcomes import string_to_sign

AWS_CERT_URL = re.compile(
    r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/SimpleNotificationService-[A-Za-z0-9]+\.pem$"
)
AWS_SUBSCRIBE_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?Action=ConfirmSubscription&")
MAX_CERT_BYTES = 64 * 1024


class SnsRejected(Exception):
    """A message the webhook must refuse: `status` (4xx) and the reason it answers with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def fetch_url(url: str, timeout_s: float = 5.0) -> bytes:
    """GET a URL (a certificate, a subscription confirmation): its body, at most MAX_CERT_BYTES."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (the URL passed an allow-list)
        return bytes(response.read(MAX_CERT_BYTES + 1))


@dataclass
class SnsVerifier:
    """Checks SNS messages (module docstring) and confirms subscriptions."""

    allowed_topics: frozenset[str]
    cert_url: re.Pattern[str] = AWS_CERT_URL
    subscribe_url: re.Pattern[str] = AWS_SUBSCRIBE_URL
    fetch: Callable[[str], bytes] = fetch_url
    clock: Callable[[], float] = field(default=lambda: datetime.now(UTC).timestamp())
    cache_size: int = 16
    _certs: dict[str, x509.Certificate] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def certificate(self, url: str) -> x509.Certificate:
        """The certificate at an allowed URL (fetched once)."""
        if not self.cert_url.match(url):
            raise SnsRejected(403, "SigningCertURL is not an allowed SNS certificate URL")
        with self._lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        try:
            pem = self.fetch(url)
        except OSError:
            raise SnsRejected(403, "the signing certificate could not be fetched") from None
        if len(pem) > MAX_CERT_BYTES:
            raise SnsRejected(403, "the signing certificate is too large")
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SnsRejected(403, "the signing certificate is not a PEM certificate") from None
        with self._lock:
            if len(self._certs) >= self.cache_size:
                self._certs.pop(next(iter(self._certs)))
            self._certs[url] = cert
        return cert

    def verify(self, message: Mapping[str, str]) -> None:
        """Raise SnsRejected unless the message is from an allowed topic and its signature verifies."""
        if message["TopicArn"] not in self.allowed_topics:
            raise SnsRejected(403, "the message's TopicArn is not a subscribed topic")
        cert = self.certificate(message["SigningCertURL"])
        now = datetime.fromtimestamp(self.clock(), UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SnsRejected(403, "the signing certificate is not valid now")
        try:
            signature = base64.b64decode(message["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise SnsRejected(403, "the Signature is not base64") from None
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRejected(403, "the signing certificate's key is not RSA")
        algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303 (SNS's v1)
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SnsRejected(403, "the message signature does not verify") from None

    def confirm(self, message: Mapping[str, str]) -> None:
        """Confirm a (verified) subscription by fetching its SubscribeURL."""
        url = message["SubscribeURL"]
        if not self.subscribe_url.match(url):
            raise SnsRejected(403, "SubscribeURL is not an SNS confirmation URL")
        try:
            self.fetch(url)
        except OSError:
            raise SnsRejected(502, "the subscription could not be confirmed; SNS will send the request again") from None
