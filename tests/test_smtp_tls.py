"""SMTP relays: STARTTLS with the certificate verified, and no login without TLS — against a local aiosmtpd server
that offers STARTTLS (a certificate from a CA made here) and takes AUTH only over TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engage_assets.demo.smtp_capture import free_port
from resources.channels.base import OutboundMessage, TransientSendError
from resources.channels.smtp import SmtpEmailChannel


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, issuer: str, key: Any, signer: Any, sans: list[x509.GeneralName] | None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=sans is None, path_length=None), critical=True)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(root: Path, sans: list[x509.GeneralName]) -> tuple[Path, ssl.SSLContext]:
    """(the CA's PEM file, a server TLS context with a certificate for `sans` signed by that CA)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("engage test CA", "engage test CA", ca_key, ca_key, None)
    server = _cert("relay", "engage test CA", key, ca_key, sans)
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (root / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (root / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(root / "server.pem", root / "server.key")
    return root / "ca.pem", context


@dataclass
class Relay:
    port: int
    messages: list[bytes] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, over TLS)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        self.logins.append((data.login.decode(), session.ssl is not None))
        return AuthResult(success=data.login == b"engage" and data.password == b"s3cret")


@contextmanager
def relay(tls: ssl.SSLContext | None) -> Iterator[Relay]:
    """An SMTP server on 127.0.0.1: with `tls`, STARTTLS offered and required before anything else, AUTH only over
    TLS; without, plain SMTP that offers no STARTTLS."""
    state = Relay(port=free_port())
    options: dict[str, Any] = {"authenticator": state.authenticate, "auth_require_tls": True}
    if tls is not None:
        options |= {"tls_context": tls, "require_starttls": True}
    controller = Controller(state, hostname="127.0.0.1", port=state.port, **options)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()


def msg() -> OutboundMessage:
    return OutboundMessage(
        idempotency_key="k-tls-1",
        touch_key_hash="touchhash",
        program_id="win-back-campaigns",
        customer_id="C1",
        channel="email",
        to="ann@example.com",
        subject="We miss you",
        text="Hello",
    )


LOCAL = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]


@pytest.mark.parametrize(
    "settings",
    [{"username": "engage", "password": "s3cret"}, {"username": "engage"}, {"password": "s3cret"}],
)
def test_a_login_without_tls_is_refused_at_load(settings):
    with pytest.raises(Exception, match="starttls"):
        SmtpEmailChannel(port=2525, **settings)


def test_starttls_with_a_verified_certificate_then_login(tmp_path):
    ca, tls = make_pki(tmp_path, LOCAL)
    with relay(tls) as server:
        channel = SmtpEmailChannel(
            port=server.port, starttls=True, ca_file=str(ca), username="engage", password="s3cret"
        )
        session = channel.open()
        try:
            assert session.send(msg()) == "<k-tls-1@engage.local>"
        finally:
            session.close()
    assert server.logins == [("engage", True)] and len(server.messages) == 1


@pytest.mark.parametrize(
    "sans, trusted",
    [
        (LOCAL, False),  # a certificate from a CA the channel does not trust (system store only)
        ([x509.DNSName("relay.example.com")], True),  # trusted CA, but issued for another host
    ],
    ids=["untrusted-ca", "wrong-host"],
)
def test_a_certificate_that_does_not_verify_gets_no_password_and_no_message(tmp_path, sans, trusted):
    ca, tls = make_pki(tmp_path, sans)
    with relay(tls) as server:
        channel = SmtpEmailChannel(
            port=server.port,
            starttls=True,
            ca_file=str(ca) if trusted else None,
            username="engage",
            password="s3cret",
        )
        with pytest.raises(TransientSendError) as e:
            channel.open().send(msg())
    assert e.value.code == "smtp_tls"
    assert server.logins == [] and server.messages == []


def test_a_relay_without_starttls_gets_no_password_and_no_message():
    with relay(None) as server:
        channel = SmtpEmailChannel(port=server.port, starttls=True, username="engage", password="s3cret")
        with pytest.raises(TransientSendError) as e:
            channel.open().send(msg())
    assert e.value.code == "smtp_tls"
    assert server.logins == [] and server.messages == []
