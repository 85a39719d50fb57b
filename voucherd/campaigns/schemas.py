"""Campaign request bodies for the native API, and how a campaign is shown."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from voucherd.campaigns.models import Campaign
from voucherd.campaigns.validity import parse_duration
from voucherd.codes.generator import CodeConfigError, validate_code_config
from voucherd.fields import (
    Currency,
    HttpUrlText,
    Locale,
    Metadata,
    MinorUnits,
    PositiveMinorUnits,
    Quantity,
    RequestModel,
    Timestamp,
    Timezone,
    whole_number,
)

VoucherType = Literal["GIFT", "CASH", "DISCOUNT", "LOYALTY"]
CampaignMode = Literal["STATIC", "AUTO_UPDATE"]
AutomaticDelivery = Literal["phone", "email"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


_PERCENT_TEXT = r"^[0-9]{1,3}(\.[0-9]{1,4})?$"


def _percent_text(value: Any) -> Any:
    """A percentage as text is digits with at most 4 decimals ("12.5"): the form the document
    states (Decimal itself would also read "1e1" or " 12")."""
    if isinstance(value, str) and not re.fullmatch(_PERCENT_TEXT, value):
        raise ValueError("a percentage such as 12.5 (at most 4 decimals)")
    return value


def _percent_range(value: Decimal) -> Decimal:
    # Checked here rather than by Field bounds, whose JSON Schema would not fit the text form.
    if not 0 < value <= 100:
        raise ValueError("more than 0 and at most 100")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise ValueError("at most 4 decimals")
    return value


Percent = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    BeforeValidator(_percent_text),
    AfterValidator(_percent_range),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                {"type": "string", "pattern": _PERCENT_TEXT},
            ],
            "description": "Percent off, more than 0 and at most 100, at most 4 decimals.",
        }
    ),
]


class DiscountDefinition(RequestModel):
    type: Literal["AMOUNT", "PERCENT", "FIXED", "UNIT"]
    amount_off: PositiveMinorUnits | None = None
    percent_off: Percent | None = None
    amount_limit: PositiveMinorUnits | None = Field(
        default=None, description="Cap on a PERCENT discount, in minor units."
    )
    fixed_amount: MinorUnits | None = Field(
        default=None, description="FIXED: the price the order is brought down to."
    )
    unit_off: Quantity | None = None
    unit_type: str | None = Field(default=None, max_length=100, description="The SKU given free.")

    @model_validator(mode="after")
    def _fields_for_type(self) -> DiscountDefinition:
        needed = {
            "AMOUNT": ("amount_off",),
            "PERCENT": ("percent_off",),
            "FIXED": ("fixed_amount",),
            "UNIT": ("unit_off", "unit_type"),
        }[self.type]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.type} discount needs {' and '.join(missing)}")
        return self


class CodeConfig(RequestModel):
    """Voucherify's ``code_config``, honoured to the letter."""

    length: int | None = Field(default=None, ge=1, le=100)
    charset: str | None = Field(default=None, min_length=2, max_length=200)
    prefix: str | None = Field(default=None, max_length=40)
    postfix: str | None = Field(default=None, max_length=40)
    pattern: str | None = Field(default=None, min_length=1, max_length=100)
    initial_count: int | None = Field(default=None, ge=0, description="Accepted and ignored.")

    @model_validator(mode="after")
    def _can_make_codes(self) -> CodeConfig:
        try:
            validate_code_config(self.stored())
        except CodeConfigError as exc:
            raise ValueError(f"{exc.field.removeprefix('code_config.')}: {exc.reason}") from exc
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"initial_count"})


class ValidityTimeframe(RequestModel):
    duration: str = Field(description="ISO 8601 duration of each window, e.g. PT1H")
    interval: str = Field(description="ISO 8601 duration between window starts, e.g. P2D")

    @field_validator("duration", "interval")
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        if parse_duration(value).total_seconds() <= 0:
            raise ValueError("must be a positive duration")
        return value

    @model_validator(mode="after")
    def _fits(self) -> ValidityTimeframe:
        if parse_duration(self.duration) > parse_duration(self.interval):
            raise ValueError("duration must not be longer than interval")
        return self


class DailyHours(RequestModel):
    start_time: str
    expiration_time: str
    days_of_week: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])

    @field_validator("start_time", "expiration_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be HH:MM (24-hour)")
        return value

    @field_validator("days_of_week")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        return _check_days(value)

    @model_validator(mode="after")
    def _ordered(self) -> DailyHours:
        if self.start_time >= self.expiration_time:
            raise ValueError("start_time must be before expiration_time")
        return self


class ValidityHours(RequestModel):
    daily: list[DailyHours] = Field(min_length=1, max_length=50)


def _check_days(value: list[int]) -> list[int]:
    if not value or any(not 0 <= day <= 6 for day in value):
        raise ValueError("days are 0 (Sunday) to 6 (Saturday), at least one")
    return sorted(set(value))


def _jinja(value: str | None) -> str | None:
    """A template that cannot parse is refused when the campaign is saved, not at send time."""
    if value is not None:
        try:
            SandboxedEnvironment().parse(value)
        except TemplateSyntaxError as exc:
            raise ValueError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    return value


TemplateText = Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_jinja)]


class SmsTemplate(RequestModel):
    text: TemplateText


class WhatsAppTemplate(RequestModel):
    """A template approved in Meta's WhatsApp Manager, and what fills its body placeholders."""

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(default="en", min_length=2, max_length=16)
    body_parameters: list[TemplateText] = Field(default_factory=list, max_length=20)


class EmailTemplate(RequestModel):
    subject: TemplateText
    text: TemplateText
    html: TemplateText | None = None


class MessageTemplates(RequestModel):
    """Jinja2 (sandboxed) text per channel; a channel without one uses the default message."""

    sms: SmsTemplate | None = None
    whatsapp: WhatsAppTemplate | None = None
    email: EmailTemplate | None = None


class CampaignFields(RequestModel):
    """Fields both creation and update accept."""

    description: str | None = Field(default=None, max_length=2000)
    active: bool | None = None
    default_value: MinorUnits | None = None
    max_value: PositiveMinorUnits | None = None
    start_date: Timestamp | None = None
    expiration_date: Timestamp | None = None
    lifetime_days: int | None = Field(
        default=None,
        ge=0,
        le=36500,
        description="Vouchers expire at 23:59:59 local time this many days after issue.",
    )
    validity_timeframe: ValidityTimeframe | None = None
    validity_day_of_week: list[int] | None = None
    validity_hours: ValidityHours | None = None
    timezone: Timezone | None = None
    redemption_quantity: Quantity | None = None
    per_customer_limit: Quantity | None = None
    budget: MinorUnits | None = None
    category: str | None = Field(default=None, max_length=100)
    metadata: Metadata | None = None
    help_text: str | None = Field(
        default=None, max_length=4000, description="Shown on the voucher page: how to use it."
    )
    store_finder_url: HttpUrlText | None = Field(
        default=None, description="Shown on the voucher page: where the voucher can be spent."
    )
    locale: Locale | None = Field(
        default=None, description="BCP 47 locale for money and dates in messages and pages."
    )
    message_templates: MessageTemplates | None = None
    delivery_channel: AutomaticDelivery | None = Field(
        default=None,
        description=(
            "Deliver every voucher issued singly from this campaign: 'phone' (SMS or WhatsApp, "
            "the tenant's choice) or 'email', to the issue's recipient or else its customer_ref, "
            "unless the issue asks for a delivery itself. A national phone number is read in "
            "the country of the campaign's locale (en-GB: 07911 123456). Null: only on request."
        ),
    )

    @field_validator("validity_day_of_week")
    @classmethod
    def _days(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else _check_days(value)


class CampaignCreate(CampaignFields):
    name: str = Field(min_length=1, max_length=200)
    type: VoucherType
    mode: CampaignMode = "STATIC"
    currency: Currency | None = None
    discount: DiscountDefinition | None = None
    code_config: CodeConfig | None = None
    vouchers_count: (
        Annotated[int, Field(strict=True, ge=0), BeforeValidator(whole_number)] | None
    ) = Field(
        default=None,
        description="Vouchers to mint with the campaign, in the same transaction (all or nothing).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class CampaignUpdate(CampaignFields):
    """A partial update: only the fields present change. Type, currency, discount kind and
    code_config are fixed at creation, because issued vouchers were made under them."""

    name: str | None = Field(default=None, min_length=1, max_length=200)


def present_campaign(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "object": "campaign",
        "name": campaign.name,
        "description": campaign.description,
        "type": campaign.type,
        "mode": campaign.mode,
        "active": campaign.active,
        "currency": campaign.currency,
        "default_value": campaign.default_value,
        "max_value": campaign.max_value,
        "discount": campaign.discount,
        "code_config": campaign.code_config,
        "start_date": campaign.start_date,
        "expiration_date": campaign.expiration_date,
        "lifetime_days": campaign.lifetime_days,
        "validity_timeframe": campaign.validity_timeframe,
        "validity_day_of_week": campaign.validity_day_of_week,
        "validity_hours": campaign.validity_hours,
        "timezone": campaign.timezone,
        "redemption_quantity": campaign.redemption_quantity,
        "per_customer_limit": campaign.per_customer_limit,
        "budget": campaign.budget,
        "issued_value": campaign.issued_value if campaign.budget is not None else None,
        "category": campaign.category,
        "metadata": campaign.metadata_,
        "help_text": campaign.help_text,
        "store_finder_url": campaign.store_finder_url,
        "locale": campaign.locale,
        "message_templates": campaign.message_templates,
        "delivery_channel": campaign.delivery_channel,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
    }
