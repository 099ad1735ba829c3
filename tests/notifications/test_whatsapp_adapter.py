"""The WhatsApp Cloud API adapter's real HTTP calls against the local stand-in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from opdesk.notifications.delivery import Outgoing, RetryLater, Undeliverable
from opdesk.notifications.providers.whatsapp import CloudApiAdapter
from tests.fakes.whatsapp_server import WhatsAppServer, meta_error

TOKEN = "EAAG-test-token"
NUMBER = "1234567890"


@pytest.fixture
def wa() -> Iterator[WhatsAppServer]:
    with WhatsAppServer(token=TOKEN, phone_number_id=NUMBER) as server:
        yield server  # type: ignore[misc]


def outgoing(url: str, **settings: Any) -> Outgoing:
    return Outgoing(
        message_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        channel="whatsapp",
        provider="whatsapp-cloud",
        settings={"accessToken": TOKEN, "phoneNumberId": NUMBER, "baseUrl": url, **settings},
        recipient="+919812345678",
        template="waitlist-offer",
        language="hi",
        text="…",
        subject="",
        params=("Asha", "Dr Rao", "Mon 07 Dec, 10:00 AM", "15", "https://x/me"),
        dedupe_key="waitlist-offer:1",
    )


def test_an_approved_template_is_sent_with_its_parameters_and_the_wamid_returned(
    wa: WhatsAppServer,
) -> None:
    provider_id = CloudApiAdapter().send(outgoing(wa.url), timeout=5)
    [request] = wa.received
    assert request.path == f"/v21.0/{NUMBER}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body["to"] == "919812345678"
    assert request.body["type"] == "template"
    assert request.body["template"]["name"] == "opdesk_waitlist_offer"
    assert request.body["template"]["language"] == {"code": "hi"}
    assert request.body["template"]["components"] == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": v}
                for v in ("Asha", "Dr Rao", "Mon 07 Dec, 10:00 AM", "15", "https://x/me")
            ],
        }
    ]
    assert provider_id.startswith("wamid.")
    assert wa.references() == {"waitlist-offer:1": 1}


def test_a_clinic_may_name_its_approved_templates(wa: WhatsAppServer) -> None:
    CloudApiAdapter().send(
        outgoing(wa.url, templates={"waitlist-offer": "sunrise_slot_offer"}), timeout=5
    )
    assert wa.received[0].body["template"]["name"] == "sunrise_slot_offer"


def test_a_429_is_retried_after_its_retry_after(wa: WhatsAppServer) -> None:
    wa.answer_next(429, meta_error(130429, "Rate limit hit"), retry_after="12")
    with pytest.raises(RetryLater) as raised:
        CloudApiAdapter().send(outgoing(wa.url), timeout=5)
    assert raised.value.retry_after == 12.0


def test_a_server_error_is_retried_later(wa: WhatsAppServer) -> None:
    wa.answer_next(503, meta_error(2, "Service temporarily unavailable"))
    with pytest.raises(RetryLater):
        CloudApiAdapter().send(outgoing(wa.url), timeout=5)


def test_a_rate_limit_code_in_a_400_is_retried_later(wa: WhatsAppServer) -> None:
    wa.answer_next(400, meta_error(131056, "Pair rate limit hit"))
    with pytest.raises(RetryLater, match="131056"):
        CloudApiAdapter().send(outgoing(wa.url), timeout=5)


def test_an_undeliverable_number_fails_at_once(wa: WhatsAppServer) -> None:
    wa.answer_next(400, meta_error(131026, "Message undeliverable"))
    with pytest.raises(Undeliverable, match="131026"):
        CloudApiAdapter().send(outgoing(wa.url), timeout=5)


def test_a_wrong_token_fails_at_once(wa: WhatsAppServer) -> None:
    with pytest.raises(Undeliverable, match="190"):
        CloudApiAdapter().send(outgoing(wa.url, accessToken="stale"), timeout=5)


def test_missing_settings_fail_without_a_call(wa: WhatsAppServer) -> None:
    with pytest.raises(Undeliverable, match="not set up"):
        CloudApiAdapter().send(outgoing(wa.url, accessToken=""), timeout=5)
    assert wa.received == []


def test_a_hung_provider_times_out_into_retry_later(wa: WhatsAppServer) -> None:
    """Meta not answering costs the worker its timeout, never longer."""
    wa.delay = 3.0
    started = time.monotonic()
    with pytest.raises(RetryLater, match="no answer"):
        CloudApiAdapter().send(outgoing(wa.url), timeout=0.3)
    assert time.monotonic() - started < 2.0
