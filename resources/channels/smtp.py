"""E-mail over real SMTP (local: the capture server, `make smtp`; or any relay).

A relay that takes a login is spoken to over STARTTLS with the certificate verified (the system's trust store, or
`ca_file`; the host name must match): a configuration with a username and without `starttls` is refused at load,
and a relay that offers no STARTTLS or presents a certificate that does not verify is never sent a password or a
message (`smtp_tls`, transient: the touches wait for the relay to be fixed).  Without a login (the local capture
server) plain SMTP is allowed.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import Field, model_validator

from resources.channels.base import (
    ChannelSession,
    EmailChannel,
    OutboundMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
    capture_path,
    erase_captured_mail,
)
from resources.channels.mime import mime_bytes


class SmtpEmailChannel(EmailChannel):
    """Real SMTP (smtplib) to `host:port`: locally the capture server (`make smtp`), or any relay.

    One connection per session, reused for every message (the server's 250 for each DATA is the acceptance); a
    dropped connection is reopened on the next send.  With `capture_dir` (the capture server's root) the channel can
    look up whether a message with a key was already captured.
    """

    host: str = "127.0.0.1"
    port: int = 2525
    timeout_s: float = 10.0
    starttls: bool = Field(default=False, description="STARTTLS with certificate verification; needed to log in.")
    ca_file: str | None = Field(default=None, description="CA bundle the relay's certificate must chain to.")
    username: str | None = Field(default=None, description="Login (only over STARTTLS).")
    password: str | None = None
    capture_dir: str | None = Field(default=None, description="Capture server root (local): enables lookup.")
    rate_per_s: float = 5_000.0
    burst: int = 500
    max_connections: int = 4  # one aiosmtpd process takes ~1,000 msg/s; run the capture server with --workers

    @model_validator(mode="after")
    def _no_login_in_clear(self) -> SmtpEmailChannel:
        if (self.username or self.password) and not self.starttls:
            raise ValueError("an SMTP login needs starttls: true (credentials are never sent in clear)")
        return self

    def open(self) -> SmtpSession:
        """A session holding one SMTP connection (opened on the first send)."""
        return SmtpSession(self)

    def tls_context(self) -> ssl.SSLContext:
        """Verifying TLS (certificate chain and host name), trusting `ca_file` or the system's store."""
        return ssl.create_default_context(cafile=self.ca_file)

    def erase_customers(
        self, customer_ids: Collection[str], contacts: Callable[[], Mapping[str, Mapping[str, Any]]]
    ) -> int:
        """Delete the capture server's copies of messages to these customers' addresses (only with `capture_dir`;
        a relay keeps nothing here)."""
        if self.capture_dir is None or not customer_ids:
            return 0
        return erase_captured_mail(self.capture_dir, [str(c.get("email") or "") for c in contacts().values()])


def smtp_error(code: int, recipient: bool = False) -> SendError:
    """Classify an SMTP reply code: 4xx transient; 5xx permanent, a bounce when the mailbox itself was refused."""
    if 400 <= code < 500:
        return TransientSendError(f"smtp_{code}")
    # 550/551/553: mailbox unavailable / not local / name not allowed → the address bounces.
    return PermanentSendError(f"smtp_{code}", bounce=recipient or code in (550, 551, 553))


class SmtpSession(ChannelSession):
    """One SMTP connection, reused for every message; reopened after a drop."""

    def __init__(self, cfg: SmtpEmailChannel):
        self.cfg = cfg
        self.smtp: smtplib.SMTP | None = None
        self.dedupes_by_key = cfg.capture_dir is not None  # the capture server de-duplicates; a relay may not

    def _connect(self) -> smtplib.SMTP:
        if self.smtp is None:
            try:
                smtp = smtplib.SMTP(self.cfg.host, self.cfg.port, timeout=self.cfg.timeout_s)
            except (OSError, smtplib.SMTPException):
                raise TransientSendError("smtp_connect") from None
            try:
                self._secure_and_login(smtp)
            except BaseException:
                smtp.close()
                raise
            self.smtp = smtp
        return self.smtp

    def _secure_and_login(self, smtp: smtplib.SMTP) -> None:
        """STARTTLS with a verifying context (smtplib's default context verifies nothing), then the login."""
        if self.cfg.starttls:
            try:
                smtp.starttls(context=self.cfg.tls_context())
            except (ssl.SSLError, smtplib.SMTPNotSupportedError):
                raise TransientSendError("smtp_tls") from None  # no STARTTLS, or a certificate that does not verify
            except smtplib.SMTPResponseException as e:
                raise smtp_error(e.smtp_code) from None
            except (OSError, smtplib.SMTPException):
                raise TransientSendError("smtp_connect") from None
        if self.cfg.username:
            try:
                smtp.login(self.cfg.username, self.cfg.password or "")
            except smtplib.SMTPResponseException as e:
                raise smtp_error(e.smtp_code) from None
            except (OSError, smtplib.SMTPException):
                raise TransientSendError("smtp_connect") from None

    def _drop(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
            self.smtp = None

    def send(self, message: OutboundMessage) -> str:
        """Send over the session's connection; the message id is derived from the idempotency key."""
        if not message.to:
            raise PermanentSendError("no_address", suppress=True)
        data = mime_bytes(message, self.cfg.from_address)
        smtp = self._connect()
        try:
            refused = smtp.sendmail(self.cfg.from_address, [message.to], data)
        except smtplib.SMTPRecipientsRefused as e:
            code = next(iter(e.recipients.values()))[0] if e.recipients else 550
            raise smtp_error(code, recipient=True) from None
        except smtplib.SMTPResponseException as e:
            if e.smtp_code in (421,):
                self._drop()
            raise smtp_error(e.smtp_code) from None
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()
            raise TransientSendError("smtp_disconnected") from None
        except smtplib.SMTPException:
            self._drop()
            raise TransientSendError("smtp_error") from None
        if refused:
            raise smtp_error(550, recipient=True)
        return f"<{message.idempotency_key}@engage.local>"

    def lookup(self, message: OutboundMessage) -> str | None:
        """Whether the capture server filed a message with this key (only with `capture_dir`)."""
        if self.cfg.capture_dir is None:
            return None
        if capture_path(self.cfg.capture_dir, message.program_id, message.idempotency_key).exists():
            return f"<{message.idempotency_key}@engage.local>"
        return None

    def close(self) -> None:
        """Say QUIT and close the connection, ignoring a connection that already broke."""
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except Exception:  # noqa: BLE001
                pass
            self.smtp = None
