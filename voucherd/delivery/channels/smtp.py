"""Email over SMTP with the tenant's server: STARTTLS (or implicit TLS) and login when
configured, a plain-text part and, when the template has one, an HTML alternative.

The ``Message-ID`` is derived from the delivery id, so it is the same on every attempt and a
receiving system can drop a duplicate. SMTP reply codes decide retries: 4xx is transient, 5xx
permanent (RFC 5321 4.2.1); a refused login is permanent too.
"""

from __future__ import annotations

import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from typing import Any

from voucherd.config import Settings
from voucherd.delivery.channels.base import Message, Outcome


@lru_cache(maxsize=4)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def build(message: Message, provider: dict[str, Any]) -> EmailMessage:
    sender = provider["from_address"]
    email = EmailMessage()
    email["From"] = (
        str(Address(provider["from_name"], addr_spec=sender))
        if provider.get("from_name")
        else sender
    )
    email["To"] = message.recipient or ""
    email["Subject"] = message.content.subject or ""
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = f"<{message.delivery_id}@{sender.rpartition('@')[2]}>"
    email.set_content(message.content.text)
    if message.content.html:
        email.add_alternative(message.content.html, subtype="html")
    return email


def _smtp_reason(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return f"SMTP {code}: {text}"[:1000]


class EmailChannel:
    def send(self, message: Message, provider: dict[str, Any], settings: Settings) -> Outcome:
        email = build(message, provider)
        timeout = settings.delivery_timeout_seconds
        host, port, security = (
            provider["host"],
            int(provider.get("port", 587)),
            provider.get("security", "starttls"),
        )
        context = _tls_context(settings.smtp_ca_file)
        try:
            smtp: smtplib.SMTP
            if security == "tls":
                smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            else:
                smtp = smtplib.SMTP(host, port, timeout=timeout)
            with smtp:
                if security == "starttls":
                    smtp.starttls(context=context)
                if provider.get("username"):
                    smtp.login(provider["username"], provider["password"])
                refused = smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return _by_code(code, text)
        except smtplib.SMTPAuthenticationError as exc:
            return Outcome.permanent(_smtp_reason(exc.smtp_code, exc.smtp_error))
        except smtplib.SMTPResponseException as exc:
            return _by_code(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPNotSupportedError as exc:
            return Outcome.permanent(f"SMTP server: {exc}")
        except ssl.SSLError as exc:
            return Outcome.permanent(f"TLS with the SMTP server failed: {exc.reason}")
        except TimeoutError:
            return Outcome.transient("timeout talking to the SMTP server")
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome.transient(f"SMTP connection error: {type(exc).__name__}")
        if refused:
            code, text = next(iter(refused.values()))
            return _by_code(code, text)
        return Outcome("sent", provider_message_id=email["Message-ID"])


def _by_code(code: int, text: bytes | str) -> Outcome:
    reason = _smtp_reason(code, text)
    return Outcome.transient(reason) if 400 <= code < 500 else Outcome.permanent(reason)
