"""The ``log`` provider: development's post office.

Sending writes one log line and returns at once; the message, with its rendered text, is
what the dev inbox shows (``/dev/inbox``). Every channel uses it until a clinic sets a
real provider.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opdesk.notifications.delivery import Outgoing

log = logging.getLogger("opdesk.notifications.log")


class LogAdapter:
    channel = "*"
    name = "log"

    def send(self, outgoing: Outgoing, *, timeout: float) -> str:
        # Never the text itself: it may hold a sign-in code, and logs are kept for long.
        log.info(
            "message sent to the dev inbox",
            extra={
                "messageId": str(outgoing.message_id),
                "channel": outgoing.channel,
                "template": outgoing.template,
            },
        )
        return f"log-{outgoing.message_id}"
