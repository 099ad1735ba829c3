"""Message providers: one adapter per provider, each turning an ``Outgoing`` into one call.

An adapter's ``send`` returns the provider's message id, or raises ``RetryLater`` (timeout,
connection error, 429, 5xx) or ``Undeliverable`` (another 4xx, a bad address). The
``log`` provider is the default of every channel: the message shows in the dev inbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from opdesk.notifications.delivery import Outgoing


class Adapter(Protocol):
    channel: str

    def send(self, outgoing: Outgoing, *, timeout: float) -> str: ...


def adapters() -> dict[str, Adapter]:
    from opdesk.notifications.providers import email, log, sms, whatsapp

    return {
        "log": log.LogAdapter(),
        sms.Msg91Adapter.name: sms.Msg91Adapter(),
        whatsapp.CloudApiAdapter.name: whatsapp.CloudApiAdapter(),
        email.SmtpAdapter.name: email.SmtpAdapter(),
    }


def adapter_for(provider: str) -> Adapter:
    from opdesk.notifications.delivery import Undeliverable

    found = adapters().get(provider)
    if found is None:
        raise Undeliverable(f"no message provider named {provider!r}")
    return found
