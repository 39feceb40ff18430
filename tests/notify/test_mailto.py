"""mailto: notifications to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json

import pytest

from tests.notify.helpers import delivery
from tests.notify.smtp import SmtpServer
from tests.support.ports import free_port
from tidings.config import SmtpSettings
from tidings.notify.mailto import MailSender, recipients
from tidings.notify.payload import PermanentFailure, SendFailed, document
from tidings.storage.base import DeliveryKind


@pytest.fixture
def smtp():
    server = SmtpServer(refuse={"nobody@example.com"}).start()
    yield server
    server.stop()


def sender_for(smtp: SmtpServer) -> MailSender:
    return MailSender(SmtpSettings(host="127.0.0.1", port=smtp.port, sender="queues@example.com",
                                   timeout=5))


async def test_mail_with_subject_from_the_uri_and_from_option(smtp):
    d = delivery("mailto:ops@example.com?subject=Order%20created",
                 options={"from": "alerts@example.com", "subject": "ignored: the URI wins"},
                 body={"order": 42})
    await sender_for(smtp).send(d, document(d))
    [mail] = smtp.mails
    assert mail.recipients == ["ops@example.com"]
    assert mail.sender == "alerts@example.com"
    msg = mail.message
    assert msg["Subject"] == "Order created"
    assert msg["From"] == "alerts@example.com"
    assert msg["To"] == "ops@example.com"
    assert msg["X-Tidings-Delivery-ID"] == d.id
    assert msg["X-Tidings-Message-ID"] == "0000000000000001"
    assert json.loads(msg.get_content()) == {"body": {"order": 42}, "ttl": 300,
                                             "queue_name": "orders",
                                             "Message_Type": "Notification"}


async def test_subject_option_and_server_sender_by_default(smtp):
    d = delivery("mailto:a@example.com,b@example.com", options={"subject": "From options"})
    await sender_for(smtp).send(d, document(d))
    [mail] = smtp.mails
    assert sorted(mail.recipients) == ["a@example.com", "b@example.com"]
    assert mail.message["Subject"] == "From options"
    assert mail.message["From"] == "queues@example.com"


async def test_confirmation_mail(smtp):
    d = delivery("mailto:ops@example.com", kind=DeliveryKind.CONFIRMATION)
    await sender_for(smtp).send(d, document(d))
    [mail] = smtp.mails
    assert "Confirm your subscription to orders" == mail.message["Subject"]
    assert json.loads(mail.message.get_content())["Message"] == "confirm"


async def test_refused_recipient_is_permanent(smtp):
    d = delivery("mailto:nobody@example.com")
    with pytest.raises(PermanentFailure, match="550"):
        await sender_for(smtp).send(d, document(d))


async def test_smtp_server_down_is_retryable():
    sender = MailSender(SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2))
    d = delivery("mailto:ops@example.com")
    with pytest.raises(SendFailed) as info:
        await sender.send(d, document(d))
    assert not isinstance(info.value, PermanentFailure)


@pytest.mark.parametrize("uri", ["mailto:", "mailto:not-an-address", "http://x/"])
def test_bad_mailto_uris(uri):
    with pytest.raises(PermanentFailure):
        recipients(uri)


def test_header_injection_is_refused():
    d = delivery("mailto:ops@example.com?subject=hi%0D%0ABcc:%20victim@example.com")
    from tidings.notify.mailto import build_message

    with pytest.raises(PermanentFailure):
        build_message(d, document(d), "x@example.com")
