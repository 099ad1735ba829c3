"""WhatsApp through Meta's WhatsApp Cloud API: approved template messages.

``POST {base}/{version}/{phone-number-id}/messages`` with ``Authorization: Bearer
<access token>`` and::

    {"messaging_product": "whatsapp", "recipient_type": "individual",
     "to": "919812345678", "type": "template",
     "template": {"name": "opdesk_otp", "language": {"code": "hi"},
                  "components": [{"type": "body",
                                  "parameters": [{"type": "text", "text": "..."}]}]}}

answered ``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id":
"wamid...."}]}``; an error is ``{"error": {"message", "type", "code", "fbtrace_id"}}``.
Business-initiated messages must use a template approved by Meta in that language; its
body variables ``{{1}}, {{2}}…`` are ``messages.TEMPLATES[...].params`` in order.
Delivery and read receipts come back through the webhook (``notifications.webhooks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opdesk.notifications.providers.http import judge, post_json

if TYPE_CHECKING:
    from opdesk.notifications.delivery import Outgoing

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_VERSION = "v21.0"
FIELDS = (
    ("accessToken", "Access token", True),
    ("phoneNumberId", "Phone number id", False),
    ("appSecret", "App secret (checks status webhooks)", True),
    ("verifyToken", "Webhook verify token", True),
    ("baseUrl", "API address", False),
)
# Meta's error codes that mean "too much, too fast" or "our side, try again" even when
# the HTTP status is 400: throughput, pair rate limit, API rate limits, temporary errors.
RETRY_CODES = frozenset({4, 80007, 130429, 131000, 131016, 131048, 131056, 133004})


def template_name(settings: dict[str, Any], template: str) -> str:
    """The approved template's name: the clinic's mapping, else ``opdesk_<template>``."""
    mapped = (settings.get("templates") or {}).get(template)
    if isinstance(mapped, str) and mapped:
        return mapped
    return "opdesk_" + template.replace("-", "_")


class CloudApiAdapter:
    channel = "whatsapp"
    name = "whatsapp-cloud"

    def send(self, outgoing: Outgoing, *, timeout: float) -> str:
        from opdesk.notifications.delivery import RetryLater, Undeliverable

        settings = dict(outgoing.settings)
        token = settings.get("accessToken")
        number_id = settings.get("phoneNumberId")
        if not token or not number_id:
            raise Undeliverable("WhatsApp is not set up: the access token and number id are needed")
        base = str(settings.get("baseUrl") or DEFAULT_BASE_URL).rstrip("/")
        version = str(settings.get("version") or DEFAULT_VERSION)
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": outgoing.recipient.lstrip("+"),
            "type": "template",
            "template": {
                "name": template_name(settings, outgoing.template),
                "language": {"code": outgoing.language},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": p} for p in outgoing.params],
                    }
                ],
            },
            # Our reference, echoed back in status webhooks (Meta's ``biz_opaque_callback_data``).
            "biz_opaque_callback_data": outgoing.dedupe_key or str(outgoing.message_id),
        }
        status, answer, headers = post_json(
            f"{base}/{version}/{number_id}/messages",
            headers={"authorization": f"Bearer {token}"},
            body=body,
            timeout=timeout,
        )
        error = answer.get("error") if isinstance(answer.get("error"), dict) else None
        if error is not None and 400 <= status < 500 and status != 429:
            code = error.get("code")
            if code in RETRY_CODES:
                raise RetryLater(f"WhatsApp: error {code}: {error.get('message', '')}")
            raise Undeliverable(f"WhatsApp: error {code}: {error.get('message', '')}")
        judge(status, headers, "WhatsApp")
        sent = answer.get("messages") or []
        if not sent or not isinstance(sent[0], dict) or not sent[0].get("id"):
            raise RetryLater("WhatsApp accepted the request but returned no message id")
        return str(sent[0]["id"])
