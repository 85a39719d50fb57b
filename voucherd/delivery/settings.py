"""A tenant's delivery settings: which of SMS and WhatsApp it uses, and its providers' credentials.

Stored in ``tenant.settings["delivery"]``. Credentials must be usable to send, so they are kept
as given (not hashed); they are never shown in full by any API or command (:func:`masked`) and
never logged. A PATCH replaces whole provider blocks: the operator sends every field of the block
it changes (as Stripe and Twilio's own consoles ask), and ``null`` removes a block.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from voucherd.errors import InvalidInput
from voucherd.fields import EmailAddress, RequestModel

PhoneChannel = Literal["sms", "whatsapp"]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[\x21-\x7e]+$")]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
]
WEBHOOK_SECRET_PREFIX = "whsec_"
# Which fields of each block are secrets, shown masked.
SECRET_FIELDS = {
    "sms": ("auth_token",),
    "whatsapp": ("access_token", "app_secret", "verify_token"),
    "email": ("password",),
    "webhook": ("secret",),
}


class SmsProvider(RequestModel):
    """Twilio's Messages API (or any provider speaking it)."""

    account_sid: Identifier
    auth_token: Secret = Field(description="Also the key Twilio signs status callbacks with.")
    from_number: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="Sender: an E.164 number or an alphanumeric sender id.",
    )
    messaging_service_sid: Identifier | None = None

    @model_validator(mode="after")
    def _has_sender(self) -> SmsProvider:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of from_number and messaging_service_sid")
        return self


class WhatsAppProvider(RequestModel):
    """Meta's WhatsApp Cloud API."""

    phone_number_id: Identifier
    access_token: Secret
    app_secret: Secret = Field(
        description="Meta signs status webhooks with it (X-Hub-Signature-256)."
    )
    verify_token: Secret = Field(description="Echoed by Meta's webhook verification handshake.")


class EmailProvider(RequestModel):
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = Field(default=None, min_length=1, max_length=254)
    password: Secret | None = None
    from_address: EmailAddress
    from_name: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _login_needs_both(self) -> EmailProvider:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise ValueError(
            "must be an https URL, e.g. https://issuer.example/hooks (http is for tests)"
        )
    return value


# The scheme is checked before any length, so ftp://x is told what a webhook URL must be, not
# that it is shorter than 8 characters. http stays accepted for local test servers.
WebhookUrl = Annotated[str, StringConstraints(max_length=500), AfterValidator(_webhook_url)]


class WebhookTarget(RequestModel):
    """The issuer's URL; messages to it are signed as Standard Webhooks specifies."""

    url: WebhookUrl
    secret: Secret = Field(description="whsec_ followed by base64 of 24 to 64 random bytes.")

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str) -> str:
        webhook_secret_bytes(value)
        return value


class DeliverySettingsPatch(RequestModel):
    """The blocks present change; ``null`` removes a block."""

    phone_channel: PhoneChannel | None = Field(
        default=None,
        description="How phone numbers are reached: by SMS or by WhatsApp (one per tenant).",
    )
    sms: SmsProvider | None = None
    whatsapp: WhatsAppProvider | None = None
    email: EmailProvider | None = None
    webhook: WebhookTarget | None = None


def webhook_secret_bytes(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; ValueError names what is wrong."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError("must start with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("after whsec_ must come standard base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError("must hold 24 to 64 bytes of key")
    return key


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def merged(stored: dict[str, Any] | None, patch: DeliverySettingsPatch) -> dict[str, Any]:
    """The settings after ``patch``; InvalidInput when the result cannot reach phones."""
    result = dict(stored or {})
    for name in patch.model_fields_set:
        value = getattr(patch, name)
        if value is None:
            result.pop(name, None)
        elif isinstance(value, RequestModel):
            result[name] = value.model_dump(exclude_none=True)
        else:
            result[name] = value
    channel = result.get("phone_channel")
    if channel is not None and channel not in result:
        raise InvalidInput(
            f"phone_channel is {channel} but no {channel} provider is configured",
            field="delivery.phone_channel",
        )
    return result


def _mask(secret: str) -> str:
    return "****" + secret[-4:] if len(secret) >= 16 else "****"


def masked(stored: dict[str, Any] | None) -> dict[str, Any]:
    """What an API or a command may show: every secret reduced to its last four characters."""
    shown: dict[str, Any] = {"phone_channel": None, **dict.fromkeys(SECRET_FIELDS)}
    for name, value in (stored or {}).items():
        if isinstance(value, dict):
            block = dict(value)
            for secret in SECRET_FIELDS.get(name, ()):
                if block.get(secret) is not None:
                    block[secret] = _mask(block[secret])
            shown[name] = block
        else:
            shown[name] = value
    return shown


# A stored secret is kept only while the field it goes with is still given (an e-mail login
# without a user name has no password).
_KEPT_ONLY_WITH = {("email", "password"): "username"}


def kept_secrets(stored: dict[str, Any] | None, name: str, block: dict[str, Any]) -> dict[str, Any]:
    """``block`` (a form's fields for provider ``name``) with each secret left empty filled in
    from the stored block: a form never shows a secret back, so an empty secret field means
    "keep the one you have", never "set it to nothing"."""
    result = {k: v for k, v in block.items() if v not in (None, "")}
    before = (stored or {}).get(name) or {}
    for secret in SECRET_FIELDS.get(name, ()):
        needs = _KEPT_ONLY_WITH.get((name, secret))
        if secret not in result and before.get(secret) and (needs is None or needs in result):
            result[secret] = before[secret]
    return result
