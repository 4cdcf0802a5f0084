"""Message templates: the spec's subjects, bodies, SMS texts, call scripts and in-app cards, rendered safely.

Files live under `engage_assets/delivery/message_templates/<programId>/<channel>/<templateId>.<part>.j2` with
parts `subject`, `txt` and `html` (e-mail), `txt` (SMS, push, call script, in-app). An SMS or push channel whose
config has a `message` (the spec's YAML: "Hi {customerName}, ...") uses that text, its `{field}` placeholders
translated to the sandbox's variables — the text itself is never evaluated as a template.

Rendering is Jinja2's `SandboxedEnvironment` (no attribute games), `StrictUndefined` (a missing field raises
`TemplateError` and that one message fails; nothing goes out with a raw placeholder), HTML autoescape for `.html`
parts only. Personalisation: customerName, firstName, refundType, discountPercent, discountCode, duration, link,
refundAmount / creditAmount formatted in the order's or the marketplace's currency and locale (Babel).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.numbers import format_currency
from jinja2 import StrictUndefined, TemplateNotFound, UndefinedError
from jinja2.exceptions import SecurityError, TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from engage_assets.delivery.plan import MARKETPLACES

TEMPLATE_ROOT = Path(__file__).resolve().parent / "message_templates"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# `{refundType}` in the spec's texts reads "we've issued a {refundType}": the phrase, not the config's key.
REFUND_PHRASES = {"full": "full refund", "partial": "partial refund", "credit": "store credit"}
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class TemplateError(Exception):
    """One message cannot be rendered; `reason` says why without personal data."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RenderedMessage:
    subject: str | None
    text: str
    html: str | None


def yaml_message_to_jinja(message: str) -> str:
    """`Hi {customerName}!` → `{% raw %}Hi {% endraw %}{{ customerName }}{% raw %}!{% endraw %}`: literal text stays
    literal (even if it looks like Jinja), only `{word}` placeholders become variables."""
    out, pos = [], 0
    for m in PLACEHOLDER.finditer(message):
        if m.start() > pos:
            out.append(_raw(message[pos:m.start()]))
        out.append("{{ " + m.group(1) + " }}")
        pos = m.end()
    if pos < len(message):
        out.append(_raw(message[pos:]))
    return "".join(out)


def _raw(text: str) -> str:
    # `endraw` inside literal text would close the raw block: split it so it can't.
    return "{% raw %}" + text.replace("endraw", "end{% endraw %}{% raw %}raw") + "{% endraw %}"


def discount_code(program_id: str, customer_id: str, subject_id: str, secret: str | None = None) -> str:
    """A customer's code for one offer: deterministic (a retried send carries the same code), unguessable without
    the secret (HMAC-SHA256), and unique in practice (50 bits: a collision among 10 million codes has a
    probability below 5e-5; the refunds ledger's unique constraint is the hard guarantee)."""
    key = (secret or os.environ.get("ENGAGE_CODE_SECRET", "engage-local-demo-secret")).encode()
    digest = hmac.new(key, f"{program_id}#{customer_id}#{subject_id}".encode(), hashlib.sha256).digest()
    n = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        n, r = divmod(n, len(CODE_ALPHABET))
        chars.append(CODE_ALPHABET[r])
    return "".join(chars)


def money(amount: float | None, currency: str, marketplace: str | None) -> str | None:
    if amount is None:
        return None
    locale = MARKETPLACES.get(marketplace or "", ("", "", "en_US"))[2]
    return format_currency(amount, currency, locale=locale)


class TemplateRenderer:
    """Loads each template once; renders a touch for a contact. No-argument constructor: the template root and the
    program configs (for YAML `message` texts) are found from the settings."""

    def __init__(self, root: Path | None = None, messages: dict[tuple[str, str], str] | None = None,
                 link_base: str | None = None):
        self.root = root or TEMPLATE_ROOT
        self.env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
        self.messages = messages if messages is not None else _yaml_messages()
        self.link_base = (link_base or os.environ.get("ENGAGE_LINK_BASE", "https://shop.example.com")).rstrip("/")
        self._cache: dict[tuple[str, ...], Any] = {}

    def _template(self, program: str, channel: str, template_id: str, part: str, channel_id: str | None = None):
        key = (program, channel, template_id, part, channel_id or "")
        if key not in self._cache:
            yaml_text = self.messages.get((program, channel_id or "")) if part == "txt" else None
            env = self.html_env if part == "html" else self.env
            if yaml_text is not None:
                self._cache[key] = env.from_string(yaml_message_to_jinja(yaml_text))
            else:
                path = self.root / program / channel / f"{template_id}.{part}.j2"
                self._cache[key] = env.from_string(path.read_text()) if path.exists() else None
        return self._cache[key]

    def context(self, touch: dict[str, Any], contact: dict[str, Any]) -> dict[str, Any]:
        offer = touch.get("offer") or {}
        offer = json.loads(offer) if isinstance(offer, str) else dict(offer)
        marketplace = touch.get("marketplace") or contact.get("marketplace")
        currency = touch.get("currency") or MARKETPLACES.get(marketplace or "", ("", "USD"))[1]
        code = discount_code(touch["programId"], touch["customerId"], touch["subjectId"])
        ctx: dict[str, Any] = {
            "segment": touch.get("segment"), "offerType": touch.get("offerType"), "offer": offer,
            "discountCode": code, "link": f"{self.link_base}/offers/{code}", "marketplace": marketplace,
            "currency": currency,
        }
        name = contact.get("customer_name")
        if name:
            ctx["customerName"] = name
            ctx["firstName"] = str(name).split()[0]
        if offer.get("refundType") is not None:
            ctx["refundType"] = REFUND_PHRASES.get(offer["refundType"], offer["refundType"])
        for field in ("duration", "includeUpgrade", "includePersonalCall", "impactLevel", "riskLevel"):
            if offer.get(field) is not None:
                ctx[field] = offer[field]
        if offer.get("discountPercent") is not None:
            ctx["discountPercent"] = offer["discountPercent"]
        for field in ("refundAmount", "creditAmount"):
            if offer.get(field) is not None:
                ctx[field] = money(offer[field], currency, marketplace)
        return ctx

    def render(self, touch: dict[str, Any], contact: dict[str, Any]) -> RenderedMessage:
        program, channel = touch["programId"], touch["channel"]
        template_id, channel_id = touch.get("templateId") or "", touch.get("channelId")
        ctx = self.context(touch, contact)
        try:
            text_t = self._template(program, channel, template_id, "txt", channel_id)
            if text_t is None:
                raise TemplateError(f"no template {program}/{channel}/{template_id}")
            text = text_t.render(ctx).strip()
            subject = html = None
            if channel in ("email", "in-app"):
                subject_t = self._template(program, channel, template_id, "subject")
                subject = subject_t.render(ctx).strip() if subject_t is not None else None
            if channel == "email":
                html_t = self._template(program, channel, template_id, "html")
                html = html_t.render(ctx) if html_t is not None else None
        except UndefinedError as e:
            raise TemplateError(f"missing_field:{_field_of(e)}") from None
        except SecurityError:
            raise TemplateError("sandbox_violation") from None
        except (JinjaTemplateError, TemplateNotFound) as e:
            raise TemplateError(f"template_error:{type(e).__name__}") from None
        return RenderedMessage(subject=subject, text=text, html=html)


def _field_of(error: UndefinedError) -> str:
    m = re.search(r"'(\w+)' is undefined", str(error))
    return m.group(1) if m else "unknown"


@lru_cache(maxsize=1)
def _yaml_messages_cached(config_dir: str) -> dict[tuple[str, str], str]:
    from engage_assets.config import load_programs

    out = {}
    for program in load_programs(Path(config_dir)):
        for ch in program.channels:
            if ch.config.message:
                out[(program.programId, ch.channelId)] = ch.config.message
    return out


def _yaml_messages() -> dict[tuple[str, str], str]:
    from engage_assets.settings import program_config_dir

    return dict(_yaml_messages_cached(str(program_config_dir())))
