"""A real SMTP server (aiosmtpd) on a free port, recording envelopes."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from tests.support.ports import free_port


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpServer:
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    mails: list[Mail] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _controller: Controller | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._cond:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
            self._cond.notify_all()
        return "250 Message accepted"

    def start(self) -> SmtpServer:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.mails) < count and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return list(self.mails)
