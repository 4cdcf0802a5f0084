"""Message templates: the spec's subjects, bodies, SMS texts, call scripts and in-app cards, rendered safely.

Files are `<programId>/<channel>/<templateId>.<part>.j2` with the parts each channel type renders (the channel
registry's `parts`: `subject`, `txt` and `html` for e-mail, `txt` for SMS and call scripts, `subject` + `txt` for
push and in-app, `subject` being the notification's or card's title), looked for in the `templates/` folder beside
the program configs, then among the packaged ones (`engage_assets/domain/message_templates/`): see
`engage_assets.domain.template_sources`, which also checks at load that every message has its parts.  Texts the
spec writes into a channel's config win over files, each filling the part the registry's `texts` names: `message`
(SMS text), `subject` / `body` (e-mail), `title` / `body` (push, in-app).  Their `{field}` placeholders are
translated to the sandbox's variables — the text itself is never evaluated as a template and never goes through
`str.format`.  A template id that is not a plain name is never joined into a path (`bad_template_id`).

Rendering is Jinja2's `SandboxedEnvironment` (no attribute games), `StrictUndefined` (a missing field raises
`TemplateError` and that one message fails; nothing goes out with a raw placeholder), HTML autoescape for `.html`
parts only.  Templates are compiled once per renderer.  Personalisation: customerName, firstName, refundType,
discountPercent, discountCode, duration, link, cartLink, refundAmount / creditAmount formatted in the order's or
the marketplace's currency and locale (Babel).

`discountCode` comes from the refund ledger's `issue_codes` (one random code per candidate, unique by
constraint): `prefetch(touches)` issues a page's codes in one transaction; a touch not prefetched is issued on its
own.  A touch that already carries `discountCode` keeps it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from babel.numbers import format_currency
from jinja2 import StrictUndefined, TemplateNotFound, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from engage_assets.domain.channels import CHANNELS
from engage_assets.domain.config import ProgramBase
from engage_assets.domain.message_text import OFFER_FIELDS, yaml_message_to_jinja
from engage_assets.domain.plan import MARKETPLACES
from engage_assets.domain.template_sources import find_template, is_plain_name, template_roots
from engage_assets.settings import program_config_dir

DEFAULT_LINK_BASE = "https://shop.example.com"
# `{refundType}` in the spec's texts reads "we've issued a {refundType}": the phrase, not the config's key.
REFUND_PHRASES = {"full": "full refund", "partial": "partial refund", "credit": "store credit"}


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


class CodeSource(Protocol):
    """Discount codes per candidate (`resources.refund_ledger.sqlite.RefundLedger`)."""

    def issue_codes(self, program: Any, rows: Iterable[Mapping[str, Any]]) -> dict[str, str]: ...


@lru_cache(maxsize=65_536)
def money(amount: float | None, currency: str, marketplace: str | None) -> str | None:
    """An amount in its currency, written the marketplace's way (`85,00 €` in DE, `¥1,200` in JP)."""
    if amount is None:
        return None
    locale = MARKETPLACES.get(marketplace or "", ("", "", "en_US"))[2]
    return format_currency(amount, currency, locale=locale)


def subject_key(touch: Mapping[str, Any]) -> str:
    return f"{touch['programId']}#{touch['customerId']}#{touch['subjectId']}"


class TemplateRenderer:
    """Loads each template once; renders a touch for a contact.  Template files are looked for under `roots` in
    order (default: `templates/` beside the settings' program configs, then the packaged ones; `root`: that one
    folder only); `messages` are the configs' own texts (`config_texts`), `codes` the discount-code source."""

    def __init__(
        self,
        root: Path | None = None,
        messages: Mapping[tuple, str] | None = None,
        link_base: str | None = None,
        codes: CodeSource | None = None,
        roots: Sequence[Path] | None = None,
    ):
        self.roots = tuple(roots) if roots is not None else (root,) if root else template_roots(program_config_dir())
        self.env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
        # {(programId, channelId, part): text}; a two-part key (programId, channelId) means the text part.
        texts = messages or {}
        self.texts = {(k[0], k[1], k[2] if len(k) > 2 else "txt"): v for k, v in texts.items()}
        self.link_base = (link_base or DEFAULT_LINK_BASE).rstrip("/")
        self._codes_source = codes
        self._codes: dict[str, str] = {}
        self._cache: dict[tuple[str, ...], Any] = {}

    # -- discount codes ----------------------------------------------------------------------------------------------
    @property
    def code_source(self) -> CodeSource:
        if self._codes_source is None:
            raise TemplateError("no_code_source")
        return self._codes_source

    def prefetch(self, touches: Iterable[Mapping[str, Any]]) -> None:
        """Issue (or look up) the codes of a page of touches in one go, so `render` finds them in memory."""
        by_program: dict[str, list[Mapping[str, Any]]] = {}
        for t in touches:
            if not t.get("discountCode") and not t.get("holdout") and subject_key(t) not in self._codes:
                by_program.setdefault(t["programId"], []).append(t)
        for program_id, rows in by_program.items():
            self._codes.update(self.code_source.issue_codes(program_id, rows))
        if len(self._codes) > 200_000:  # a long-running renderer keeps only what recent pages need
            self._codes = dict(list(self._codes.items())[-100_000:])

    def code_for(self, touch: Mapping[str, Any]) -> str:
        if touch.get("discountCode"):
            return str(touch["discountCode"])
        key = subject_key(touch)
        if key not in self._codes:
            self.prefetch([touch])
        return self._codes[key]

    # -- templates ---------------------------------------------------------------------------------------------------
    def _template(self, program: str, channel: str, template_id: str, part: str, channel_id: str | None = None):
        key = (program, channel, template_id, part, channel_id or "")
        if key not in self._cache:
            text = self.texts.get((program, channel_id or "", part))
            env = self.html_env if part == "html" else self.env
            if text is not None:
                self._cache[key] = env.from_string(yaml_message_to_jinja(text))
            else:
                path = find_template(self.roots, program, channel, template_id, part)
                self._cache[key] = env.from_string(path.read_text()) if path is not None else None
        return self._cache[key]

    def context(self, touch: Mapping[str, Any], contact: Mapping[str, Any]) -> dict[str, Any]:
        """The variables a template sees.  A field the touch or contact lacks is left out (StrictUndefined turns
        its use into a `missing_field` failure)."""
        offer = touch.get("offer") or {}
        offer = json.loads(offer) if isinstance(offer, str) else dict(offer)
        marketplace = touch.get("marketplace") or contact.get("marketplace")
        currency = (
            touch.get("currency") or contact.get("currency") or MARKETPLACES.get(marketplace or "", ("", "USD"))[1]
        )
        code = self.code_for(touch)
        ctx: dict[str, Any] = {
            "segment": touch.get("segment"),
            "offerType": touch.get("offerType"),
            "offer": offer,
            "discountCode": code,
            "link": f"{self.link_base}/offers/{code}",
            "cartLink": f"{self.link_base}/cart/{touch['subjectId']}?code={code}",
            "marketplace": marketplace,
            "currency": currency,
        }
        name = contact.get("customer_name")
        if name and str(name).strip():
            ctx["customerName"] = str(name).strip()
            ctx["firstName"] = ctx["customerName"].split()[0]
        if offer.get("refundType") is not None:
            ctx["refundType"] = REFUND_PHRASES.get(offer["refundType"], offer["refundType"])
        for f in OFFER_FIELDS:
            if offer.get(f) is not None:
                ctx[f] = offer[f]
        for f in ("refundAmount", "creditAmount"):
            if offer.get(f) is not None:
                ctx[f] = money(float(offer[f]), currency, marketplace)
        return ctx

    def render(self, touch: Mapping[str, Any], contact: Mapping[str, Any]) -> RenderedMessage:
        """The touch's message for this contact; raises `TemplateError(reason)` (that message fails, no other)."""
        program, channel = touch["programId"], touch["channel"]
        template_id, channel_id = touch.get("templateId") or "", touch.get("channelId")
        spec = CHANNELS.get(channel)
        if spec is None:
            raise TemplateError(f"unknown_channel:{channel}")
        if not (is_plain_name(template_id) and is_plain_name(program)):
            raise TemplateError("bad_template_id")  # never joined into a path (the configs' ids are checked at load)
        try:
            ctx = self.context(touch, contact)
            text_t = self._template(program, channel, template_id, "txt", channel_id)
            if text_t is None:
                raise TemplateError(f"no_template:{program}/{channel}/{template_id}")
            text = text_t.render(ctx).strip()
            subject = html = None
            if "subject" in spec.parts:
                subject_t = self._template(program, channel, template_id, "subject", channel_id)
                subject = subject_t.render(ctx).strip() if subject_t is not None else None
            if "html" in spec.parts:
                html_t = self._template(program, channel, template_id, "html", channel_id)
                html = html_t.render(ctx) if html_t is not None else None
        except UndefinedError as e:
            raise TemplateError(f"missing_field:{_field_of(e)}") from None
        except SecurityError:
            raise TemplateError("sandbox_violation") from None
        except (JinjaTemplateError, TemplateNotFound, ValueError, TypeError) as e:
            raise TemplateError(f"template_error:{type(e).__name__}") from None
        if spec.requires_subject and not subject:
            raise TemplateError(f"no_subject:{program}/{channel}/{template_id}")
        return RenderedMessage(subject=subject, text=text, html=html)


def _field_of(error: UndefinedError) -> str:
    m = re.search(r"'(\w+)' is undefined", str(error))
    if m:
        return m.group(1)
    m = re.search(r"has no attribute '(\w+)'", str(error))
    return m.group(1) if m else "unknown"


def config_texts(programs: Iterable[ProgramBase]) -> dict[tuple[str, str, str], str]:
    """The texts the program configs write inline (subject, message, title, body) by (program, channel, part):
    the registry says which config field fills which part of each channel type."""
    out = {}
    for program in programs:
        for ch in program.channels:
            for field, part in CHANNELS[ch.type].texts.items():
                text = getattr(ch.config, field)
                if text:
                    out[(program.programId, ch.channelId, part)] = text
    return out
