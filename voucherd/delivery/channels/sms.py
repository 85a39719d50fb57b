"""SMS through Twilio's Messages API (or any provider that speaks it).

``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, HTTP Basic auth
with the account SID and auth token; ``To``, ``From`` or ``MessagingServiceSid``, ``Body`` and
``StatusCallback`` (where Twilio reports queued/sent/delivered/undelivered/failed, see
callbacks.py). https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
Twilio's API takes no idempotency key, so a message whose worker died mid-send may go twice.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from voucherd.config import Settings
from voucherd.delivery.channels.base import Message, Outcome
from voucherd.delivery.channels.http import Answer, basic_auth, client, form_body, json_field, post

_FORM = "application/x-www-form-urlencoded"


def _reason(response: Answer) -> str:
    code = json_field(response, "code")
    text = json_field(response, "message") or response.reason_phrase
    return f"{text} (Twilio error {code})" if code else str(text)


def _sid(response: Answer) -> str | None:
    sid = json_field(response, "sid")
    return str(sid) if sid else None


class SmsChannel:
    def send(self, message: Message, provider: dict[str, Any], settings: Settings) -> Outcome:
        sid = provider["account_sid"]
        form = {"To": message.recipient or "", "Body": message.content.text}
        if provider.get("messaging_service_sid"):
            form["MessagingServiceSid"] = provider["messaging_service_sid"]
        else:
            form["From"] = provider["from_number"]
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        url = f"{settings.twilio_base_url}/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json"
        headers = {"Content-Type": _FORM, "Authorization": basic_auth(sid, provider["auth_token"])}
        return post(
            lambda: client().post(
                url, form_body(form), headers, timeout=settings.delivery_timeout_seconds
            ),
            reason=_reason,
            message_id=_sid,
        )
