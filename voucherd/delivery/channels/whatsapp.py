"""WhatsApp through Meta's Cloud API: a template message (the only kind a business may start a
conversation with), Bearer auth.

``POST {base}/{phone-number-id}/messages`` with ``messaging_product``, ``to``, ``type=template``
and the template's name, language and body parameters.
https://developers.facebook.com/docs/whatsapp/cloud-api/guides/send-message-templates
``biz_opaque_callback_data`` carries the delivery id; Meta echoes it in status webhooks.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from voucherd.config import Settings
from voucherd.delivery.channels.base import Message, Outcome
from voucherd.delivery.channels.http import Answer, client, json_body, json_field, post

# Meta's throttling codes arrive with HTTP 400 but mean "later", not "never".
# https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
_RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131048, 131056})


def _reason(response: Answer) -> str:
    code = json_field(response, "error", "code")
    text = json_field(response, "error", "message") or response.reason_phrase
    return f"{text} (Meta error {code})" if code else str(text)


def _wamid(response: Answer) -> str | None:
    wamid = json_field(response, "messages", 0, "id")
    return str(wamid) if wamid else None


class WhatsAppChannel:
    def send(self, message: Message, provider: dict[str, Any], settings: Settings) -> Outcome:
        template = message.content.whatsapp
        if template is None:
            return Outcome.permanent("no WhatsApp template for this message")
        components = []
        if template.parameters:
            parameters = [{"type": "text", "text": p} for p in template.parameters]
            components.append({"type": "body", "parameters": parameters})
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.recipient,
            "type": "template",
            "template": {
                "name": template.name,
                "language": {"code": template.language},
                "components": components,
            },
            "biz_opaque_callback_data": message.delivery_id,
        }
        url = f"{settings.whatsapp_base_url}/{quote(provider['phone_number_id'], safe='')}/messages"
        outcome = post(
            lambda: client().post(
                url,
                json_body(body),
                {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {provider['access_token']}",
                },
                timeout=settings.delivery_timeout_seconds,
            ),
            reason=_reason,
            message_id=_wamid,
        )
        if outcome.kind == "permanent" and _is_rate_limit(outcome.error):
            return Outcome.transient(outcome.error or "rate limited")
        return outcome


def _is_rate_limit(error: str | None) -> bool:
    return any(f"(Meta error {code})" in (error or "") for code in _RATE_LIMIT_CODES)
