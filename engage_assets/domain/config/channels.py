"""Channel configs, built from the channel registry (`engage_assets.domain.channels`).

`ChannelConfig` declares every field any channel type takes, typed and checked once, so the planner and the
templates read `ch.config.sendTime` whatever the type (None where the type has no such field).  Each channel type
gets its own subclass (`SmsChannelConfig`, …) that accepts only the fields its `ChannelSpec` lists: `delayHourz`
on an SMS channel, or `sendTime` on an in-app one, fails loading with the field's path and the fields the type
takes.  `Channel` picks the subclass from its `type`.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from engage_assets.domain.channels import CHANNEL_SPECS, CHANNEL_TYPES, ChannelSpec
from engage_assets.domain.config.common import ConfigModel
from engage_assets.domain.template_sources import check_plain_name

if TYPE_CHECKING:
    ChannelType = str
else:  # the Literal of the registry's types, so an unknown type's error lists the known ones
    ChannelType = Literal[CHANNEL_TYPES]


class ChannelConfig(ConfigModel):
    """Every field a channel's `config` may hold; a type's subclass narrows it to that type's fields."""

    # The type's accepted fields; None on this base class (every field: a config built in code).
    accepts: ClassVar[frozenset[str] | None] = None
    channel_type: ClassVar[str | None] = None

    templateId: str | None = Field(
        default=None,
        description="Template files `<programId>/<channel type>/<templateId>.<part>.j2` under "
        "`program_configs/templates/` or the packaged ones; a plain name (no path). Default `<channelId>-default`.",
    )
    # Timing (plan.py): a local send time, delays after the channel's base time, a call window, an inbox's days.
    sendTime: str | None = Field(
        default=None, description="HH:MM (24 h): the next such time in `timezone` at or after the plan's clock."
    )
    timezone: str | None = Field(
        default=None,
        description="`local` (the customer's own zone, else the marketplace's) or an IANA zone for everybody.",
    )
    delayDays: int | None = Field(
        default=None, ge=0, description="Local calendar days after the channel's base time (DST-safe)."
    )
    delayHours: int | None = Field(
        default=None, ge=0, description="Hours after the candidate's event (the abandonment), else the plan's clock."
    )
    delayMinutes: int | None = Field(
        default=None, ge=0, description="Minutes after the candidate's event, else the plan's clock."
    )
    scheduleWithin: str | None = Field(
        default=None, description="Phone: the call task's window (`24h`, `2d`): due now, to be called within it."
    )
    displayDuration: int | None = Field(default=None, ge=1, description="In-app: days the inbox entry is shown.")
    # Texts the spec writes into the config ({field} placeholders): SMS text, e-mail subject, push/in-app title, body.
    message: str | None = Field(default=None, description="SMS text, `{field}` placeholders (else the template).")
    subject: str | None = Field(default=None, description="E-mail subject, `{field}` placeholders (else the template).")
    title: str | None = Field(default=None, description="Push / in-app title, `{field}` placeholders.")
    body: str | None = Field(default=None, description="E-mail, push or in-app body text, `{field}` placeholders.")
    # What a channel's own sender reads: call type and script, in-app message type, e-mail personalisation.
    scriptId: str | None = Field(
        default=None, description="Phone: the call script's template id (plain name), shown with the call task."
    )
    callType: str | None = Field(default=None, description="Phone: the kind of call task (default account-manager).")
    messageType: str | None = Field(
        default=None, description="In-app: the inbox entry's type; also its template id when templateId is unset."
    )
    personalization: Literal["low", "medium", "high"] | None = Field(
        default=None,
        description="E-mail: the spec's personalisation level. Messages render every field their text names, so only "
        "'high' (the spec's) is accepted; 'low' and 'medium' are refused at load.",
    )
    includeDiscount: bool | None = Field(
        default=None,
        description="E-mail: the spec's flag. The message's text decides what it shows, so only true (the spec's) is "
        "accepted; false is refused at load.",
    )
    # Conditions: static ones decide at planning whether the touch exists, dynamic ones are re-checked at send time.
    highImpactOnly: bool | None = Field(
        default=None, description="Only candidates of the `impactLevel: high` segment (else the top one)."
    )
    criticalRiskOnly: bool | None = Field(
        default=None, description="Only candidates of the `riskLevel: critical` segment (else the top one)."
    )
    highScoreOnly: bool | None = Field(
        default=None, description="Only candidates of the top segment (its score range reaches 1.0)."
    )
    onlyIfNotConverted: bool | None = Field(
        default=None, description="Re-checked at send time: not sent once the customer converted (purchased)."
    )
    onlyIfCartAbandoned: bool | None = Field(
        default=None, description="Re-checked at send time: not sent once the cart was purchased or expired."
    )

    @model_validator(mode="before")
    @classmethod
    def _only_the_types_fields(cls, data: Any) -> Any:
        if cls.accepts is None or not isinstance(data, dict):
            return data
        errors = [
            InitErrorDetails(
                type=PydanticCustomError("channel_field", "{detail}", {"detail": _unknown_field(cls, str(key))}),
                loc=(str(key),),
                input=value,
            )
            for key, value in data.items()
            if key not in cls.accepts
        ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    @field_validator("sendTime")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("sendTime must be HH:MM (24 h)")
        return v

    @field_validator("scheduleWithin")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+[hd]", v):
            raise ValueError("scheduleWithin must look like 24h or 2d")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None and v != "local":
            try:
                ZoneInfo(v)
            except (KeyError, ValueError):
                raise ValueError(f"timezone must be 'local' or an IANA zone, got {v!r}") from None
        return v

    @field_validator("templateId", "scriptId", "messageType")
    @classmethod
    def _plain_name(cls, v: str | None, info: ValidationInfo) -> str | None:
        # A template id names files (`<id>.<part>.j2`): never a path.
        return check_plain_name(v, str(info.field_name)) if v is not None else v

    @field_validator("message", "subject", "title", "body")
    @classmethod
    def _placeholders(cls, v: str | None) -> str | None:
        # Only {word} placeholders: a stray brace or a {{ … }} would reach a customer verbatim.
        if v is not None:
            bare = re.sub(r"\{\w+\}", "", v)
            if "{" in bare or "}" in bare:
                raise ValueError("texts may hold only {fieldName} placeholders (no other braces)")
        return v

    @model_validator(mode="after")
    def _timing(self) -> ChannelConfig:
        if self.sendTime is not None and (self.delayMinutes or self.delayHours):
            raise ValueError("sendTime with delayMinutes/delayHours is ambiguous: use delayDays after a sendTime")
        return self


def _unknown_field(model: type[ChannelConfig], key: str) -> str:
    accepted = sorted(model.accepts or ())
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{model.channel_type} channels take no field {key!r}{hint}; they take: {', '.join(accepted)}"


def _narrow_schema(accepts: frozenset[str]) -> Any:
    def extra(schema: dict[str, Any]) -> None:
        props = schema.get("properties", {})
        for name in [n for n in props if n not in accepts]:
            del props[name]
        schema["additionalProperties"] = False

    return extra


def config_model(spec: ChannelSpec) -> type[ChannelConfig]:
    """The config model of one channel type: `ChannelConfig` narrowed to the fields the spec lists."""
    undeclared = spec.config_fields - set(ChannelConfig.model_fields)
    if undeclared:  # a registry edit must declare its new fields' types here
        raise TypeError(f"channel {spec.type!r} names config fields ChannelConfig lacks: {sorted(undeclared)}")
    name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]", spec.type)) + "ChannelConfig"
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"The `config` of a {spec.type!r} channel: {', '.join(sorted(spec.config_fields))}.",
        "accepts": spec.config_fields,
        "channel_type": spec.type,
        "model_config": ConfigDict(json_schema_extra=_narrow_schema(spec.config_fields)),
    }
    return type(name, (ChannelConfig,), namespace)


CHANNEL_CONFIG_MODELS: dict[str, type[ChannelConfig]] = {spec.type: config_model(spec) for spec in CHANNEL_SPECS}


class Channel(ConfigModel):
    """One channel of a program: its type (from the registry), priority and the type's config."""

    channelId: str = Field(description="The channel's name in the touch plan and the ledger; a plain name.")
    type: ChannelType = Field(description="The channel type (the registry: email, sms, push, phone, in-app).")
    enabled: bool = Field(default=True, description="false: no touches are planned on this channel.")
    priority: int = Field(
        ge=1,
        description="Lower first: the order of the touch plan and of delivery (touches due together are claimed by "
        "priority, so a capped slot goes to the higher-priority channel).",
    )
    config: ChannelConfig = Field(
        default_factory=ChannelConfig,
        validate_default=True,
        description="The type's settings: timing, texts, conditions (each type takes only its own fields).",
    )

    @field_validator("channelId")
    @classmethod
    def _plain_channel_id(cls, v: str) -> str:
        # The default template id is `<channelId>-default`: a channel id is a plain name too.
        return check_plain_name(v, "channelId")

    @field_validator("config", mode="before")
    @classmethod
    def _config_of_the_type(cls, value: Any, info: ValidationInfo) -> Any:
        model = CHANNEL_CONFIG_MODELS.get(info.data.get("type", ""))
        if model is None or isinstance(value, model):
            return value  # an unknown type is reported on `type`
        if isinstance(value, ChannelConfig):
            value = value.model_dump(exclude_unset=True)
        return model.model_validate(value)
