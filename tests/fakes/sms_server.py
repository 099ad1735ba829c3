"""A stand-in for MSG91's Flow API (``POST /api/v5/flow``), for tests and benchmarks.

It answers as MSG91 documents: ``200 {"type": "success", "message": "<request id>"}``;
a wrong ``authkey`` gets ``401 {"type": "error", "message": "Authentication failure"}``;
a body without ``template_id`` or recipients gets ``400 {"type": "error", ...}``.
Scripted answers (``answer_next``) give 429 with Retry-After, 5xx or 4xx on demand.

Each message is counted by its reference: the ``x-opdesk-reference`` header (our dedupe
key), so a test can say "every message arrived, and which ones twice".

From a test::

    with SmsServer(auth_key="k") as sms:
        ... point the clinic's msg91 settings at sms.url ...
        assert sms.references()["waitlist-offer:..."] == 1

From another process: ``python -m tests.fakes.sms_server --port 0`` prints its URL on
the first line of stdout; ``GET <url>/_received`` returns ``{"total", "byReference",
"overlaps"}`` as JSON.
"""

from __future__ import annotations

import secrets
from typing import Any

from tests.fakes.http_fake import FakeProvider, serve_from_command_line

REFERENCE_HEADER = "x-opdesk-reference"


class SmsServer(FakeProvider):
    def __init__(self, *, auth_key: str | None = None, port: int = 0) -> None:
        super().__init__(port=port)
        self.auth_key = auth_key

    def refuse(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]] | None:
        if path.rstrip("/") != "/api/v5/flow":
            return 404, {"type": "error", "message": "Not found"}, {}
        if self.auth_key is not None and headers.get("authkey") != self.auth_key:
            return 401, {"type": "error", "message": "Authentication failure"}, {}
        if (
            not isinstance(body, dict)
            or not body.get("template_id")
            or not body.get("recipients")
            or not all(isinstance(r, dict) and r.get("mobiles") for r in body["recipients"])
        ):
            return 400, {"type": "error", "message": "template_id and recipients are required"}, {}
        return None

    def reference_of(self, path: str, headers: dict[str, str], body: Any) -> str | None:
        return headers.get(REFERENCE_HEADER)

    def accept(self, path: str, headers: dict[str, str], body: Any) -> Any:
        return {"type": "success", "message": secrets.token_hex(12)}

    def messages(self) -> list[dict[str, Any]]:
        """The recipients' objects (``mobiles``, ``var1``…) of every accepted request."""
        with self.lock:
            return [
                {**recipient, "template_id": r.body["template_id"], "sender": r.body.get("sender")}
                for r in self.received
                for recipient in r.body["recipients"]
            ]


if __name__ == "__main__":
    serve_from_command_line(lambda port: SmsServer(port=port))
