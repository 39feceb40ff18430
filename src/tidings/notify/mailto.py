"""mailto: notifications, sent through the configured SMTP server.

As Zaqar's mailto task: the recipient is the URI's path, the text is the
notification document as JSON, From is the subscription's ``from`` option
(else the server's ``notifications.smtp.from``), and Subject is the URI's
``?subject=`` (else the ``subject`` option). Zaqar piped the mail to a
local sendmail command; this speaks SMTP (aiosmtplib), with STARTTLS or
TLS and a login when configured. The delivery and message ids go in
``X-Tidings-Delivery-ID`` and ``X-Tidings-Message-ID`` headers.

A recipient the server refuses for good (5xx) is a permanent failure;
anything else (connection, 4xx, timeouts) is retried by the policy.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from tidings.config import SmtpSettings
from tidings.notify.payload import PermanentFailure, SendFailed, id_headers
from tidings.storage.base import Delivery, DeliveryKind


def recipients(subscriber: str) -> tuple[list[str], dict[str, str]]:
    """The addresses and the (lower-cased, first-value) query parameters of
    a mailto: URI."""
    parts = urlsplit(subscriber)
    if parts.scheme.lower() != "mailto":
        raise PermanentFailure(f"not a mailto: URI: {subscriber!r}")
    addresses = [unquote(a).strip() for a in parts.path.split(",")]
    params = {k.lower(): v[0] for k, v in parse_qs(parts.query).items() if v}
    addresses += [a.strip() for a in params.get("to", "").split(",")]
    addresses = [a for a in addresses if a]
    if not addresses or any("@" not in a for a in addresses):
        raise PermanentFailure(f"no valid recipient in {subscriber!r}")
    return addresses, params


def build_message(delivery: Delivery, doc: dict[str, Any], default_sender: str) -> EmailMessage:
    to, params = recipients(delivery.subscriber)
    options = delivery.options
    sender = options.get("from") if isinstance(options.get("from"), str) else ""
    subject_option = options.get("subject") if isinstance(options.get("subject"), str) else ""
    if delivery.kind is DeliveryKind.CONFIRMATION:
        subject = f"Confirm your subscription to {delivery.queue}"
    else:
        subject = str(params.get("subject", subject_option))
    message = EmailMessage()
    try:
        message["To"] = ", ".join(to)
        message["From"] = sender or default_sender
        message["Subject"] = subject
        for name, value in id_headers(delivery).items():
            message[name] = value
    except (ValueError, TypeError) as exc:  # a header with a line break, ...
        raise PermanentFailure(f"cannot build the mail: {exc}") from None
    message["Message-ID"] = make_msgid(domain="tidings")
    message.set_content(json.dumps(doc, ensure_ascii=False))
    return message


class MailSender:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    @property
    def key(self) -> str:
        return f"smtp://{self.settings.host}:{self.settings.port}"

    async def send(self, delivery: Delivery, doc: dict[str, Any]) -> None:
        message = build_message(delivery, doc, self.settings.sender)
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.host,
                port=s.port,
                use_tls=s.tls,
                start_tls=s.starttls,
                username=s.username or None,
                password=s.password or None,
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if codes and all(code >= 500 for code in codes):
                raise PermanentFailure(f"recipients refused: {detail}") from None
            raise SendFailed(f"recipients refused for now: {detail}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SendFailed(f"SMTP {exc.code}: {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailed(f"SMTP {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None
