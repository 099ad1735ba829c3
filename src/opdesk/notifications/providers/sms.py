"""SMS through MSG91's Flow API (India; DLT-registered templates and sender id).

``POST {base}/api/v5/flow`` with the ``authkey`` header and a JSON body::

    {"template_id": "<MSG91 template, mapped to the DLT template id>",
     "sender": "<DLT header, e.g. OPDESK>", "short_url": "0",
     "recipients": [{"mobiles": "919812345678", "var1": "...", "var2": "..."}]}

answered ``{"type": "success", "message": "<request id>"}`` (the id delivery reports
carry) or ``{"type": "error", "message": "..."}``. Every SMS to an Indian number must use a
template registered on the DLT platform: the clinic's settings map each of our templates
(and language) to its MSG91 template id and the DLT template id (``DLT_TE_ID``). The
variables are ``var1, var2, …`` in the order of ``messages.TEMPLATES[...].params``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opdesk.notifications.providers.http import judge, post_json

if TYPE_CHECKING:
    from opdesk.notifications.delivery import Outgoing

DEFAULT_BASE_URL = "https://control.msg91.com"
# Settings a clinic fills in (``secret`` ones are never shown back).
FIELDS = (
    ("authKey", "Auth key", True),
    ("senderId", "Sender id (DLT header)", False),
    ("baseUrl", "API address", False),
)
# The header carrying our dedupe key; MSG91 ignores it, our test server counts by it.
REFERENCE_HEADER = "x-opdesk-reference"


def template_ids(settings: dict[str, Any], template: str, language: str) -> dict[str, str]:
    """The clinic's MSG91 and DLT ids for one template: ``templates[name][lang]`` or
    ``templates[name]["en"]``, each ``{"templateId": ..., "dltTemplateId": ...}``."""
    per_template = (settings.get("templates") or {}).get(template) or {}
    found = per_template.get(language) or per_template.get("en") or {}
    return {k: str(v) for k, v in found.items()}


class Msg91Adapter:
    channel = "sms"
    name = "msg91"

    def send(self, outgoing: Outgoing, *, timeout: float) -> str:
        from opdesk.notifications.delivery import Undeliverable

        settings = dict(outgoing.settings)
        auth_key = settings.get("authKey")
        sender = settings.get("senderId")
        if not auth_key or not sender:
            raise Undeliverable("MSG91 is not set up: the auth key and sender id are needed")
        ids = template_ids(settings, outgoing.template, outgoing.language)
        template_id = ids.get("templateId")
        if not template_id:
            raise Undeliverable(
                f"MSG91 has no template id for {outgoing.template!r} ({outgoing.language})"
            )
        recipient: dict[str, Any] = {"mobiles": outgoing.recipient.lstrip("+")}
        for i, value in enumerate(outgoing.params, start=1):
            recipient[f"var{i}"] = value
        body: dict[str, Any] = {
            "template_id": template_id,
            "sender": sender,
            "short_url": "0",
            "recipients": [recipient],
        }
        if ids.get("dltTemplateId"):
            body["DLT_TE_ID"] = ids["dltTemplateId"]
        if outgoing.language != "en":
            body["unicode"] = 1
        url = str(settings.get("baseUrl") or DEFAULT_BASE_URL).rstrip("/") + "/api/v5/flow"
        headers = {"authkey": str(auth_key)}
        if outgoing.dedupe_key:
            headers[REFERENCE_HEADER] = outgoing.dedupe_key
        status, answer, response_headers = post_json(
            url, headers=headers, body=body, timeout=timeout
        )
        judge(status, response_headers, "MSG91")
        if answer.get("type") != "success" or not answer.get("message"):
            # MSG91 answers some refusals (a bad auth key, an unmapped template) with 200.
            raise Undeliverable(f"MSG91 refused the message: {answer.get('message') or answer}")
        return str(answer["message"])
