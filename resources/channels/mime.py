"""The RFC 5322 message the e-mail channels send (SMTP as is, SES as raw content), built by hand for speed."""

from __future__ import annotations

import base64
import binascii
import time
from email.utils import formatdate

from resources.channels.base import IDEMPOTENCY_HEADER, PROGRAM_HEADER, TOUCH_HEADER, OutboundMessage


def _part(text: str, subtype: str) -> str:
    """One text part: 7bit when it is plain ASCII with short lines (readable as is), else quoted-printable."""
    if text.isascii() and all(len(line) < 990 for line in text.splitlines()):
        body, cte = text, "7bit"
    else:
        body, cte = binascii.b2a_qp(text.encode("utf-8")).decode("ascii"), "quoted-printable"
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n'


def _header_value(value: str) -> str:
    value = " ".join(value.split())  # no CR/LF: a value can never inject a header
    if value.isascii():
        return value
    return "=?utf-8?b?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def mime_bytes(message: OutboundMessage, from_address: str) -> bytes:
    """The RFC 5322 message: a text part (and an HTML alternative), the idempotency headers and a deterministic
    Message-ID.  Built by hand (the `email` package's builders cost ~0.5 ms a message, a quarter of the budget at
    2,000 messages/s); `tests/test_channels.py` parses the result back with the `email` package."""
    key = message.idempotency_key
    headers = (
        f"From: {_header_value(from_address)}\r\nTo: {_header_value(message.to or '')}\r\n"
        f"Subject: {_header_value(message.subject or '')}\r\n"
        f"Date: {formatdate(message.now or time.time(), usegmt=True)}\r\n"
        f"Message-ID: <{key}@engage.local>\r\nMIME-Version: 1.0\r\n"
        f"{IDEMPOTENCY_HEADER}: {key}\r\n{PROGRAM_HEADER}: {_header_value(message.program_id)}\r\n"
        f"{TOUCH_HEADER}: {message.touch_key_hash}\r\n"
    )
    if not message.html:
        return (headers + _part(message.text, "plain")).encode("ascii")
    boundary = f"=_engage_{key[:24]}"
    return (
        f'{headers}Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n{_part(message.text, 'plain')}--{boundary}\r\n{_part(message.html, 'html')}"
        f"--{boundary}--\r\n"
    ).encode("ascii")
