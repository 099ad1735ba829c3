"""The MSG91 adapter's real HTTP calls against the local MSG91 stand-in."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from opdesk.notifications.delivery import Outgoing, RetryLater, Undeliverable
from opdesk.notifications.providers.sms import Msg91Adapter
from tests.fakes.sms_server import SmsServer

KEY = "test-auth-key"


@pytest.fixture
def sms() -> Iterator[SmsServer]:
    with SmsServer(auth_key=KEY) as server:
        yield server  # type: ignore[misc]


def outgoing(url: str, **settings: Any) -> Outgoing:
    return Outgoing(
        message_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        channel="sms",
        provider="msg91",
        settings={
            "authKey": KEY,
            "senderId": "OPDESK",
            "baseUrl": url,
            "templates": {
                "otp": {
                    "en": {"templateId": "tpl-otp-en", "dltTemplateId": "1107100000000000001"},
                    "hi": {"templateId": "tpl-otp-hi", "dltTemplateId": "1107100000000000002"},
                }
            },
            **settings,
        },
        recipient="+919812345678",
        template="otp",
        language="en",
        text="123456 is your sign-in code",
        subject="",
        params=("123456", "Sunrise", "10"),
        dedupe_key="otp:abc",
    )


def test_a_message_is_posted_as_msg91_documents_and_its_request_id_returned(
    sms: SmsServer,
) -> None:
    provider_id = Msg91Adapter().send(outgoing(sms.url), timeout=5)
    [request] = sms.received
    assert request.path == "/api/v5/flow"
    assert request.headers["authkey"] == KEY
    assert request.body == {
        "template_id": "tpl-otp-en",
        "sender": "OPDESK",
        "short_url": "0",
        "recipients": [
            {"mobiles": "919812345678", "var1": "123456", "var2": "Sunrise", "var3": "10"}
        ],
        "DLT_TE_ID": "1107100000000000001",
    }
    assert len(provider_id) == 24
    assert sms.references() == {"otp:abc": 1}


def test_a_429_is_retried_later_after_the_retry_after_seconds(sms: SmsServer) -> None:
    sms.answer_next(429, {"type": "error", "message": "Too many requests"}, retry_after="30")
    with pytest.raises(RetryLater) as raised:
        Msg91Adapter().send(outgoing(sms.url), timeout=5)
    assert raised.value.retry_after == 30.0
    assert sms.received == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_retried_later(sms: SmsServer, status: int) -> None:
    sms.answer_next(status, {"type": "error", "message": "oops"})
    with pytest.raises(RetryLater) as raised:
        Msg91Adapter().send(outgoing(sms.url), timeout=5)
    assert raised.value.retry_after is None


def test_a_wrong_auth_key_is_undeliverable_at_once(sms: SmsServer) -> None:
    with pytest.raises(Undeliverable, match="HTTP 401"):
        Msg91Adapter().send(outgoing(sms.url, authKey="wrong"), timeout=5)


def test_a_200_that_says_error_is_undeliverable(sms: SmsServer) -> None:
    sms.answer_next(200, {"type": "error", "message": "Template not mapped"})
    with pytest.raises(Undeliverable, match="Template not mapped"):
        Msg91Adapter().send(outgoing(sms.url), timeout=5)


def test_a_template_without_a_dlt_mapping_is_undeliverable_without_a_call(sms: SmsServer) -> None:
    with pytest.raises(Undeliverable, match="no template id"):
        Msg91Adapter().send(outgoing(sms.url, templates={}), timeout=5)
    assert sms.received == []


def test_a_slow_provider_times_out_into_retry_later(sms: SmsServer) -> None:
    sms.delay = 1.0
    with pytest.raises(RetryLater, match="no answer"):
        Msg91Adapter().send(outgoing(sms.url), timeout=0.2)


def test_nobody_listening_is_retried_later() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryLater):
        Msg91Adapter().send(outgoing(f"http://127.0.0.1:{port}"), timeout=2)


def test_a_hindi_message_uses_the_hindi_template_and_unicode(sms: SmsServer) -> None:
    hindi = outgoing(sms.url)
    hindi = Outgoing(**{**hindi.__dict__, "language": "hi"})
    Msg91Adapter().send(hindi, timeout=5)
    assert sms.received[0].body["template_id"] == "tpl-otp-hi"
    assert sms.received[0].body["unicode"] == 1


def test_the_server_runs_from_a_subprocess_and_reports_what_it_received() -> None:
    import json
    import subprocess
    import sys
    import urllib.request

    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sms_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        Msg91Adapter().send(outgoing(url, authKey="any"), timeout=5)
        with urllib.request.urlopen(f"{url}/_received", timeout=5) as answer:  # noqa: S310
            summary = json.loads(answer.read())
        assert summary == {"total": 1, "byReference": {"otp:abc": 1}, "overlaps": []}
    finally:
        process.terminate()
        process.wait(timeout=10)
