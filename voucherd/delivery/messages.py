"""What a message says: the campaign's template for the channel, or a default, rendered in a
sandboxed Jinja2 environment with the voucher's facts formatted for the holder.

Templates come from API callers, so they run sandboxed (no attribute access to internals) and
their variables are plain strings. An undefined variable is an error rather than an empty
string: a message reading "your voucher  is ready" is worse than a FAILED delivery that says
which variable the template got wrong (the syntax itself is checked when the campaign is saved).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from voucherd.campaigns.models import Campaign
from voucherd.formatting import format_moment, format_value
from voucherd.pages.i18n import translator
from voucherd.vouchers.models import Voucher

# Defaults, used when the campaign has no template for the channel. Each is a message id of the
# catalogues in voucherd/locales (translated whole, so each language orders its own words): an
# edit here needs the same edit in voucherd.pot and every .po, or it reads English (a test says).
DEFAULT_SMS = (
    "{% if customer_name %}{{ customer_name }}, your{% else %}Your{% endif %} {{ campaign }} "
    "voucher{% if value %} worth {{ value }}{% endif %}: {{ code }}"
    "{% if expiry %}, valid until {{ expiry }}{% endif %}. {{ page_url }}"
)
DEFAULT_EMAIL_SUBJECT = "Your {{ campaign }} voucher{% if vouchers|length > 1 %}s{% endif %}"
# The issuer's own text (a delivery's ``message``, Yoyo's smsMessage) with the code appended,
# when the campaign's template does not place ``{{ message }}`` itself.
OWN_TEXT_SMS = "{{ message }} {{ code }}"
DEFAULT_EMAIL_TEXT = (
    "{% if customer_name %}Hello {{ customer_name }},{% else %}Hello,{% endif %}\n\n"
    "{% if message %}{{ message }}\n\n{% endif %}"
    "{% if vouchers|length > 1 %}"
    "here are your {{ vouchers|length }} {{ campaign }} vouchers.\n\n"
    "{% for v in vouchers %}Code: {{ v.code }}{% if v.value %} ({{ v.value }}){% endif %}"
    "{% if v.expiry %}, valid until {{ v.expiry }}{% endif %}\n{{ v.page_url }}\n\n{% endfor %}"
    "Show each at the till from its page.\n"
    "{% else %}"
    "here is your {{ campaign }} voucher{% if value %} worth {{ value }}{% endif %}.\n\n"
    "Code: {{ code }}\n"
    "{% if expiry %}Valid until: {{ expiry }}\n{% endif %}"
    "\nShow it at the till from this page: {{ page_url }}\n"
    "{% endif %}"
)
DEFAULT_EMAIL_HTML = (
    '<!doctype html><html><body style="font-family: sans-serif">'
    "<p>{% if customer_name %}Hello {{ customer_name }},{% else %}Hello,{% endif %}</p>"
    "{% if message %}<p>{{ message }}</p>{% endif %}"
    "{% if vouchers|length > 1 %}"
    "<p>here are your {{ vouchers|length }} {{ campaign }} vouchers.</p>"
    "{% for v in vouchers %}"
    '<p style="font-size: 1.4em; letter-spacing: 0.1em"><strong>{{ v.code }}</strong></p>'
    "<p>{% if v.value %}{{ v.value }}. {% endif %}"
    "{% if v.expiry %}Valid until {{ v.expiry }}. {% endif %}"
    '<a href="{{ v.page_url }}">Open this voucher</a></p>'
    "{% endfor %}"
    "<p>Show each at the till from its page.</p>"
    "{% else %}"
    "<p>here is your {{ campaign }} voucher{% if value %} worth <strong>{{ value }}</strong>"
    "{% endif %}.</p>"
    '<p style="font-size: 1.4em; letter-spacing: 0.1em"><strong>{{ code }}</strong></p>'
    "{% if expiry %}<p>Valid until {{ expiry }}.</p>{% endif %}"
    '<p><a href="{{ page_url }}">Open your voucher</a> and show it at the till.</p>'
    "{% endif %}"
    "</body></html>"
)
# A WhatsApp business-initiated message must be a template approved in Meta's WhatsApp Manager:
# a tenant without its own uses one named like this with three body placeholders.
DEFAULT_WHATSAPP_TEMPLATE = "voucher_delivery"
DEFAULT_WHATSAPP_PARAMETERS = ("{{ value or campaign }}", "{{ code }}", "{{ page_url }}")


class VoucherFacts(Protocol):
    """What a message says of a voucher: a Voucher, or a row of these columns (the worker's)."""

    @property
    def code(self) -> str: ...
    @property
    def amount(self) -> int | None: ...
    @property
    def balance(self) -> int | None: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def expiration_date(self) -> datetime | None: ...
    @property
    def holder_name(self) -> str | None: ...


class CampaignFacts(Protocol):
    """What a message says of a campaign: a Campaign, or a row of these columns."""

    @property
    def name(self) -> str: ...
    @property
    def locale(self) -> str | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def help_text(self) -> str | None: ...
    @property
    def store_finder_url(self) -> str | None: ...


class MessageError(Exception):
    """The template could not be rendered for this voucher (a permanent failure)."""


@dataclass(frozen=True)
class WhatsAppTemplateMessage:
    name: str
    language: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class Composed:
    text: str = ""
    subject: str | None = None
    html: str | None = None
    whatsapp: WhatsAppTemplateMessage | None = None


_TEXT = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_HTML = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Template:
    return (_HTML if html else _TEXT).from_string(source)


def _render(source: str, variables: dict[str, Any], *, html: bool = False) -> str:
    try:
        return _compiled(source, html).render(variables)
    except Exception as exc:
        raise MessageError(f"the message template failed: {type(exc).__name__}: {exc}") from exc


@lru_cache(maxsize=512)
def _uses_message(source: str) -> bool:
    try:
        return "message" in meta.find_undeclared_variables(_TEXT.parse(source))
    except TemplateSyntaxError:  # a broken template fails in _render, which says why
        return False


# Babel's formatting is most of what rendering a message costs, and a campaign's vouchers share
# their values and expiry dates: remembered per (value, currency, locale) and (moment, zone,
# locale). Pure functions of their arguments, so nothing here can go stale.
_value = lru_cache(maxsize=4096)(format_value)
_moment = lru_cache(maxsize=4096)(format_moment)
# And the catalogue of a locale (parsing the locale name each time cost a tenth of a message).
_translator = lru_cache(maxsize=64)(translator)


def variables(
    voucher: VoucherFacts,
    campaign: CampaignFacts,
    *,
    customer_name: str | None,
    page_url: str,
    message: str | None = None,
    bundle: Sequence[tuple[VoucherFacts, str]] = (),
) -> dict[str, Any]:
    """What every template may use, already formatted in the campaign's locale and time zone.

    ``message`` is the issuer's own text for this one delivery; empty when it gave none, so a
    template can say ``{% if message %}``.

    ``bundle`` is every voucher (with its page) of a delivery that sends several at once (a
    distribution's recipient gets all its codes in one message): ``vouchers`` lists them for
    templates that loop, and ``code`` holds all their codes, so a template written for one
    voucher still shows every code it was sent.
    """
    locale = campaign.locale or "en"
    sent = list(bundle) or [(voucher, page_url)]
    listed: list[dict[str, Any]] = [
        {
            "code": v.code,
            "value": _value(v.amount, v.currency, locale),
            "expiry": _moment(v.expiration_date, campaign.timezone, locale),
            "page_url": url,
        }
        for v, url in sent
    ]
    return {
        "message": message or "",
        "vouchers": listed,
        "codes": [v.code for v, _ in sent],
        "code": ", ".join(v.code for v, _ in sent),
        "value": _value(voucher.amount, voucher.currency, locale),
        "balance": _value(voucher.balance, voucher.currency, locale),
        "currency": voucher.currency,
        "expiry": _moment(voucher.expiration_date, campaign.timezone, locale),
        "customer_name": customer_name or voucher.holder_name,
        "page_url": page_url,
        "campaign": campaign.name,
        "help_text": campaign.help_text,
        "store_finder_url": campaign.store_finder_url,
    }


def compose(
    channel: str, templates: dict[str, Any] | None, values: dict[str, Any], *, locale: str = "en"
) -> Composed:
    """The message for ``channel``; MessageError when the campaign's template cannot render.

    ``locale`` (the campaign's) is the default WhatsApp template's language: Meta spells
    languages as locales too (``en``, ``en_GB``, ``pt_BR``).
    """
    own = (templates or {}).get(channel) or {}
    _ = _translator(locale)
    if channel == "sms":
        source = own.get("text") or _(DEFAULT_SMS)
        if values.get("message") and not _uses_message(source):
            source = OWN_TEXT_SMS
        return Composed(text=_render(source, values).strip())
    if channel == "email":
        if own and values.get("message") and not _uses_message(own["text"]):
            own = {}  # the issuer's text goes in the default message, which places it
        if own:
            html = own.get("html")
            return Composed(
                subject=_render(own["subject"], values).strip(),
                text=_render(own["text"], values),
                html=_render(html, values, html=True) if html else None,
            )
        return Composed(
            subject=_render(_(DEFAULT_EMAIL_SUBJECT), values).strip(),
            text=_render(_(DEFAULT_EMAIL_TEXT), values),
            html=_render(_(DEFAULT_EMAIL_HTML), values, html=True),
        )
    if channel == "whatsapp":
        name = own.get("name") or DEFAULT_WHATSAPP_TEMPLATE
        sources = own.get("body_parameters") if own else DEFAULT_WHATSAPP_PARAMETERS
        language = own.get("language") or locale
        parameters = tuple(_render(s, values).strip() for s in sources or ())
        return Composed(whatsapp=WhatsAppTemplateMessage(name, language, parameters))
    return Composed()


def holder_message(voucher: Voucher, campaign: Campaign, *, page_url: str) -> str | None:
    """The campaign's SMS message for ``voucher`` (its template or the default), for faces that
    hand the text back to the issuer (i-movo's ``message``); None when the template fails."""
    values = variables(voucher, campaign, customer_name=None, page_url=page_url)
    try:
        return compose(
            "sms", campaign.message_templates, values, locale=campaign.locale or "en"
        ).text
    except MessageError:
        return None
