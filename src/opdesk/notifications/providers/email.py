"""Email over SMTP (any relay: the clinic's own server, SES, Postmark…)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opdesk.notifications.delivery import Outgoing

FIELDS = (
    ("host", "SMTP server", False),
    ("port", "Port", False),
    ("username", "User name", False),
    ("password", "Password", True),
    ("fromAddress", "From address", False),
    ("security", "Security (starttls, tls or none)", False),
)


class SmtpAdapter:
    channel = "email"
    name = "smtp"

    def send(self, outgoing: Outgoing, *, timeout: float) -> str:
        from opdesk.notifications.delivery import RetryLater, Undeliverable

        settings = dict(outgoing.settings)
        host = settings.get("host")
        sender = settings.get("fromAddress")
        if not host or not sender:
            raise Undeliverable("email is not set up: the SMTP server and from address are needed")
        port = int(settings.get("port") or 587)
        security = str(settings.get("security") or "starttls")
        message = EmailMessage()
        domain = str(sender).rpartition("@")[2] or "opdesk.local"
        message_id = make_msgid(idstring=str(outgoing.message_id), domain=domain)
        message["Message-ID"] = message_id
        message["From"] = str(sender)
        message["To"] = outgoing.recipient
        message["Subject"] = outgoing.subject
        if outgoing.dedupe_key:
            message["X-OPDesk-Reference"] = outgoing.dedupe_key
        message.set_content(outgoing.text)
        try:
            client: smtplib.SMTP
            if security == "tls":
                client = smtplib.SMTP_SSL(
                    str(host), port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(str(host), port, timeout=timeout)
            with client:
                if security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if settings.get("username"):
                    client.login(str(settings["username"]), str(settings.get("password") or ""))
                refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(400 <= code < 500 for code in codes):  # "not now", e.g. greylisting
                raise RetryLater(f"the mail server deferred {outgoing.recipient}: {codes}") from exc
            raise Undeliverable(f"the mail server refused {outgoing.recipient}") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:  # 4xx: "try again later" in SMTP
                raise RetryLater(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise Undeliverable(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise RetryLater(f"SMTP: {type(exc).__name__}: {exc}") from exc
        if refused:
            raise Undeliverable(f"the mail server refused {', '.join(refused)}")
        return message_id.strip("<>")
