"""The SMTP adapter against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from opdesk.notifications.delivery import Outgoing, RetryLater, Undeliverable
from opdesk.notifications.providers.email import SmtpAdapter


class Mailbox:
    """Keeps what arrives; refuses recipients at ``refuse`` and answers 451 when busy."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse = "nobody@example.com"
        self.busy = False

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.busy:
            return "451 4.3.0 Try again later"
        if address == self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append(message_from_bytes(content))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def outgoing(port: int, to: str = "asha@example.com", **settings: Any) -> Outgoing:
    return Outgoing(
        message_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        channel="email",
        provider="smtp",
        settings={
            "host": "127.0.0.1",
            "port": port,
            "fromAddress": "desk@sunrise.example",
            "security": "none",
            **settings,
        },
        recipient=to,
        template="booking-confirmation",
        language="hi",
        text="आशा, आपका अपॉइंटमेंट बुक हो गया है।",
        subject="आपका अपॉइंटमेंट बुक हो गया है",
        params=(),
        dedupe_key="booking-confirmation:1:email",
    )


def test_an_email_arrives_with_its_subject_text_and_reference(
    smtp: tuple[Mailbox, int],
) -> None:
    mailbox, port = smtp
    provider_id = SmtpAdapter().send(outgoing(port), timeout=5)
    [mail] = mailbox.messages
    assert mail["To"] == "asha@example.com"
    assert mail["From"] == "desk@sunrise.example"
    assert mail["X-OPDesk-Reference"] == "booking-confirmation:1:email"
    assert str(mail.get("Subject")) != ""
    from email.header import decode_header, make_header

    assert str(make_header(decode_header(mail["Subject"]))) == "आपका अपॉइंटमेंट बुक हो गया है"
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert "आपका अपॉइंटमेंट" in payload.decode("utf-8")
    assert mail["Message-ID"].strip("<>") == provider_id


def test_a_refused_address_is_undeliverable(smtp: tuple[Mailbox, int]) -> None:
    _, port = smtp
    with pytest.raises(Undeliverable, match="refused"):
        SmtpAdapter().send(outgoing(port, to="nobody@example.com"), timeout=5)


def test_a_4xx_answer_is_retried_later(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    mailbox.busy = True
    with pytest.raises(RetryLater, match="deferred"):
        SmtpAdapter().send(outgoing(port), timeout=5)
    assert mailbox.messages == []


def test_no_server_is_retried_later() -> None:
    with pytest.raises(RetryLater):
        SmtpAdapter().send(outgoing(free_port()), timeout=2)
