"""Which adapter sends which channel: the one place that knows every adapter."""

from __future__ import annotations

from voucherd.delivery.channels.base import Channel
from voucherd.delivery.channels.sms import SmsChannel
from voucherd.delivery.channels.smtp import EmailChannel
from voucherd.delivery.channels.webhook import WebhookChannel
from voucherd.delivery.channels.whatsapp import WhatsAppChannel

_CHANNELS: dict[str, Channel] = {
    "sms": SmsChannel(),
    "whatsapp": WhatsAppChannel(),
    "email": EmailChannel(),
    "webhook": WebhookChannel(),
}


def channel_for(name: str) -> Channel:
    return _CHANNELS[name]
