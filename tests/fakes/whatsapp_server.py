"""A stand-in for the WhatsApp Cloud API's messages endpoint, and signed status webhooks.

``POST /{version}/{phone-number-id}/messages`` with ``Authorization: Bearer <token>``
answers as Meta documents: ``200 {"messaging_product": "whatsapp", "contacts": [{"input",
"wa_id"}], "messages": [{"id": "wamid...."}]}``; a wrong token gets ``401 {"error":
{"message", "type": "OAuthException", "code": 190, "fbtrace_id"}}``; a body that is not
a template message gets ``400`` with code 100. ``answer_next`` scripts 429, 5xx, or a 400
carrying one of Meta's error codes (e.g. 131026 "message undeliverable", 130429 "rate
limit hit").

``status_update`` and ``signature`` build what Meta posts to a webhook: the JSON of a
``statuses`` change and its ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with
the app's secret).

From another process: ``python -m tests.fakes.whatsapp_server --port 0``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from tests.fakes.http_fake import FakeProvider, serve_from_command_line


def meta_error(code: int, message: str, type_: str = "OAuthException") -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": type_,
            "code": code,
            "fbtrace_id": secrets.token_urlsafe(8),
        }
    }


class WhatsAppServer(FakeProvider):
    def __init__(
        self, *, token: str | None = None, phone_number_id: str = "1234567890", port: int = 0
    ) -> None:
        super().__init__(port=port)
        self.token = token
        self.phone_number_id = phone_number_id

    def refuse(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]] | None:
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[2] != "messages" or not parts[0].startswith("v"):
            return 404, meta_error(100, "Unknown path components"), {}
        if parts[1] != self.phone_number_id:
            return 400, meta_error(100, "Unsupported post request. Object does not exist"), {}
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, meta_error(190, "Invalid OAuth access token"), {}
        if (
            not isinstance(body, dict)
            or body.get("messaging_product") != "whatsapp"
            or body.get("type") != "template"
            or not body.get("to")
            or not (body.get("template") or {}).get("name")
            or not ((body.get("template") or {}).get("language") or {}).get("code")
        ):
            return 400, meta_error(100, "Invalid parameter"), {}
        return None

    def reference_of(self, path: str, headers: dict[str, str], body: Any) -> str | None:
        if isinstance(body, dict):
            ref = body.get("biz_opaque_callback_data")
            return str(ref) if ref else None
        return None

    def accept(self, path: str, headers: dict[str, str], body: Any) -> Any:
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": "wamid." + secrets.token_urlsafe(24)}],
        }


def status_update(
    message_id: str,
    status: str,
    *,
    phone_number_id: str = "1234567890",
    recipient: str = "919812345678",
    timestamp: int = 1_800_000_000,
    errors: list[dict[str, Any]] | None = None,
) -> bytes:
    """The raw body Meta posts when a message is sent, delivered, read or failed."""
    entry: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient,
    }
    if errors:
        entry["errors"] = errors
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": phone_number_id,
                            },
                            "statuses": [entry],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def signature(app_secret: str, raw: bytes) -> str:
    """The ``X-Hub-Signature-256`` header Meta sends with ``raw``."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


if __name__ == "__main__":
    serve_from_command_line(lambda port: WhatsAppServer(port=port))
