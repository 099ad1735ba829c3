"""The Razorpay client against the fake Razorpay (real sockets, the official SDK in between)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import razorpay

from opdesk.billing.razorpay_client import (
    GatewayError,
    Razorpay,
    parse_event,
    sign,
    verify_signature,
)
from tests.fakes.razorpay_server import RazorpayServer, SignedWebhook

TIMEOUT = 1.0


@pytest.fixture
def rzp() -> Iterator[RazorpayServer]:
    with RazorpayServer() as server:
        yield server


@pytest.fixture
def client(rzp: RazorpayServer) -> Razorpay:
    return Razorpay(rzp.config(timeout_seconds=TIMEOUT))


def make_link(client: Razorpay, *, amount: str = "1234.50", reference: str = "pay-row-1") -> Any:
    return client.create_payment_link(
        amount=Decimal(amount),
        reference_id=reference,
        description="Consultation, Dr Rao",
        customer_name="अनीता शर्मा",
        customer_phone="+919812345678",
        expire_by=datetime.now(UTC) + timedelta(hours=2),
        notes={"invoice": "OPD/2026-27/000123"},
    )


def paid_payment(
    client: Razorpay, rzp: RazorpayServer, amount: str = "500.00", reference: str = "pay-row-p"
) -> str:
    link = make_link(client, amount=amount, reference=reference)
    captured = rzp.pay_link(link.id)[0]
    return str(captured.payload["payment"]["entity"]["id"])


# ------------------------------------------------------------------------------ payment links


def test_a_link_is_created_with_paise_on_the_wire_and_our_reference_and_notes(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    link = make_link(client)

    assert link.status == "created"
    assert link.amount == Decimal("1234.50")
    assert link.reference_id == "pay-row-1"
    assert link.id.startswith("plink_")
    assert link.short_url.startswith("https://")
    [sent] = rzp.requests("POST", "/v1/payment_links")
    assert sent.body["amount"] == 123450
    assert isinstance(sent.body["amount"], int)
    assert sent.body["currency"] == "INR"
    assert sent.body["reference_id"] == "pay-row-1"
    assert sent.body["notes"] == {"invoice": "OPD/2026-27/000123", "reference_id": "pay-row-1"}
    assert sent.body["customer"] == {"name": "अनीता शर्मा", "contact": "+919812345678"}
    assert sent.headers["authorization"].startswith("Basic ")
    assert rzp.store.links[link.id]["notes"]["invoice"] == "OPD/2026-27/000123"


def test_a_link_is_fetched_and_cancelled(client: Razorpay, rzp: RazorpayServer) -> None:
    link = make_link(client)

    fetched = client.fetch_payment_link(link.id)
    cancelled = client.cancel_payment_link(link.id)

    assert fetched == link
    assert cancelled.status == "cancelled"
    assert client.fetch_payment_link(link.id).status == "cancelled"
    assert len(rzp.requests("POST", f"/v1/payment_links/{link.id}/cancel")) == 1


def test_a_paid_link_cannot_be_cancelled(client: Razorpay, rzp: RazorpayServer) -> None:
    link = make_link(client)
    rzp.pay_link(link.id)

    with pytest.raises(GatewayError) as refused:
        client.cancel_payment_link(link.id)

    assert refused.value.retryable is False
    assert refused.value.status == 400
    assert "paid" in refused.value.detail
    assert client.fetch_payment_link(link.id).status == "paid"


def test_a_second_link_with_the_same_reference_is_refused(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    make_link(client, reference="pay-row-7")

    with pytest.raises(GatewayError) as refused:
        make_link(client, reference="pay-row-7")

    assert refused.value.retryable is False
    assert refused.value.field == "reference_id"
    assert "already exists" in refused.value.detail
    assert len(rzp.store.links) == 1


def test_an_unknown_link_is_a_refusal_in_words(client: Razorpay) -> None:
    with pytest.raises(GatewayError) as refused:
        client.fetch_payment_link("plink_NoSuchLink0000")

    assert refused.value.retryable is False
    assert "does not exist" in refused.value.detail


def test_an_id_that_would_change_the_url_is_refused_before_any_request(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    with pytest.raises(ValueError, match="not a Razorpay payment link id"):
        client.cancel_payment_link("../payments/pay_x")
    with pytest.raises(ValueError, match="not a Razorpay payment id"):
        client.refund(payment_id="", amount=Decimal(1), receipt="rf-1", notes={})
    assert rzp.received == []


def test_a_base_url_ending_in_v1_works_too(rzp: RazorpayServer) -> None:
    client = Razorpay(rzp.config(base_url=rzp.url + "/v1/"))

    link = make_link(client)

    assert rzp.requests("POST", "/v1/payment_links")
    assert client.fetch_payment_link(link.id).id == link.id


@pytest.mark.parametrize(
    "amount",
    [Decimal("10.005"), Decimal("0"), Decimal("-1.00"), Decimal("NaN"), Decimal("Infinity"), 10.5],
)
def test_an_amount_razorpay_cannot_take_is_refused_before_any_request(
    client: Razorpay, rzp: RazorpayServer, amount: Any
) -> None:
    with pytest.raises(ValueError, match="amount"):
        client.create_payment_link(
            amount=amount,
            reference_id="pay-row-2",
            description="x",
            customer_name="x",
            customer_phone=None,
            expire_by=datetime.now(UTC) + timedelta(hours=1),
            notes={},
        )
    with pytest.raises(ValueError, match="amount"):
        client.refund(payment_id="pay_Abc", amount=amount, receipt="refund-row-1", notes={})

    assert rzp.received == []


def test_a_link_that_would_lapse_too_soon_is_refused_in_razorpays_words(
    client: Razorpay,
) -> None:
    with pytest.raises(GatewayError) as refused:
        client.create_payment_link(
            amount=Decimal("100.00"),
            reference_id="pay-row-3",
            description="x",
            customer_name="x",
            customer_phone=None,
            expire_by=datetime.now(UTC) + timedelta(minutes=5),
            notes={},
        )

    assert refused.value.field == "expire_by"
    assert "expire_by" in refused.value.detail


# ------------------------------------------------------------------------------ refunds


def test_a_partial_refund_then_an_over_refund_is_refused(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    payment_id = paid_payment(client, rzp, "500.00")

    refund = client.refund(
        payment_id=payment_id,
        amount=Decimal("200.25"),
        receipt="refund-row-0001",
        notes={"reason": "cancelled visit"},
    )
    with pytest.raises(GatewayError) as refused:
        client.refund(
            payment_id=payment_id,
            amount=Decimal("300.00"),
            receipt="refund-row-0002",
            notes={},
        )

    assert refund.payment_id == payment_id
    assert refund.amount == Decimal("200.25")
    assert refund.status == "processed"
    assert refund.id.startswith("rfnd_")
    [first, _] = rzp.requests("POST", f"/v1/payments/{payment_id}/refund")
    assert first.body["amount"] == 20025
    assert first.body["receipt"] == "refund-row-0001"
    assert first.body["notes"] == {"reason": "cancelled visit"}
    assert refused.value.retryable is False
    assert refused.value.field == "amount"
    assert "greater than amount captured" in refused.value.detail
    assert rzp.store.payments[payment_id]["amount_refunded"] == 20025


def test_the_rest_refunds_in_full(client: Razorpay, rzp: RazorpayServer) -> None:
    payment_id = paid_payment(client, rzp, "500.00")

    client.refund(payment_id=payment_id, amount=Decimal("200"), receipt="refund-a-001", notes={})
    client.refund(payment_id=payment_id, amount=Decimal("300"), receipt="refund-b-001", notes={})

    assert rzp.store.payments[payment_id]["status"] == "refunded"
    assert rzp.store.payments[payment_id]["refund_status"] == "full"


def test_a_refund_repeated_with_the_same_receipt_pays_out_once(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    payment_id = paid_payment(client, rzp, "500.00")

    first = client.refund(
        payment_id=payment_id, amount=Decimal("100"), receipt="refund-row-0003", notes={}
    )
    again = client.refund(
        payment_id=payment_id, amount=Decimal("100"), receipt="refund-row-0003", notes={}
    )

    assert again == first
    assert len(rzp.store.refunds) == 1
    assert rzp.store.payments[payment_id]["amount_refunded"] == 10000
    sent = rzp.requests("POST", f"/v1/payments/{payment_id}/refund")
    assert [r.headers["x-refund-idempotency"] for r in sent] == ["refund-row-0003"] * 2


def test_a_refund_of_an_unknown_payment_is_refused(client: Razorpay) -> None:
    with pytest.raises(GatewayError) as refused:
        client.refund(
            payment_id="pay_NoSuchPay00000", amount=Decimal(1), receipt="refund-x-01", notes={}
        )

    assert refused.value.retryable is False
    assert "does not exist" in refused.value.detail


# ------------------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("key_id", "key_secret"),
    [(None, "wrong-secret"), ("rzp_test_SomeoneElse0", None)],
    ids=["wrong secret", "wrong key id"],
)
def test_bad_credentials_are_a_gateway_error_naming_the_key(
    rzp: RazorpayServer, key_id: str | None, key_secret: str | None
) -> None:
    client = Razorpay(rzp.config(key_id=key_id, key_secret=key_secret))

    with pytest.raises(GatewayError) as refused:
        make_link(client)

    assert refused.value.status == 401
    assert refused.value.retryable is False
    assert "API key" in refused.value.detail
    assert "The api key provided is invalid" in refused.value.detail
    assert rzp.store.links == {}


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_5xx_or_429_is_retryable_and_the_call_is_made_once(
    client: Razorpay, rzp: RazorpayServer, status: int
) -> None:
    rzp.answer_next(status, times=3)

    with pytest.raises(GatewayError) as failed:
        make_link(client)

    assert failed.value.retryable is True
    assert failed.value.status == status
    assert len(rzp.received) == 1


def test_a_proxys_html_error_page_is_a_retryable_gateway_error(
    client: Razorpay, rzp: RazorpayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rzp.answer_next(502, "<html><body>502 Bad Gateway</body></html>")

    with pytest.raises(GatewayError) as failed:
        client.fetch_payment_link("plink_Whatever000000")

    assert failed.value.retryable is True
    assert "HTTP 502" in failed.value.detail
    assert capsys.readouterr().out == ""  # the SDK's own error prints never run


def test_a_hung_razorpay_gives_up_within_the_timeout_after_one_request(
    client: Razorpay, rzp: RazorpayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rzp.delay = 10.0
    started = time.monotonic()

    with pytest.raises(GatewayError) as failed:
        make_link(client)

    took = time.monotonic() - started
    assert took < TIMEOUT + 1.5
    assert failed.value.retryable is True
    assert "did not answer within 1 seconds" in failed.value.detail
    time.sleep(0.2)  # a retry, had there been one, would have arrived by now
    assert len(rzp.received) == 1
    assert capsys.readouterr().out == ""


def test_a_success_whose_body_is_not_json_is_a_gateway_error(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    rzp.answer_next(200, "<html>maintenance</html>")

    with pytest.raises(GatewayError) as failed:
        client.fetch_payment_link("plink_Whatever000000")

    assert failed.value.retryable is False
    assert "could not be read" in failed.value.detail


def test_a_success_missing_razorpays_fields_is_a_gateway_error(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    rzp.answer_next(200, {"id": "plink_X", "amount": 10.5, "status": "created"})

    with pytest.raises(GatewayError) as failed:
        client.fetch_payment_link("plink_Whatever000000")

    assert failed.value.retryable is False
    assert "could not be read" in failed.value.detail


def test_an_unreachable_razorpay_is_retryable(rzp: RazorpayServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    client = Razorpay(rzp.config(base_url=f"http://127.0.0.1:{port}"))

    with pytest.raises(GatewayError) as failed:
        client.fetch_payment_link("plink_Whatever000000")

    assert failed.value.retryable is True
    assert "could not be reached" in failed.value.detail


# ------------------------------------------------------------------------------ signatures


def test_the_fakes_webhooks_verify(client: Razorpay, rzp: RazorpayServer) -> None:
    link = make_link(client)

    hooks = rzp.pay_link(link.id)

    assert [h.kind for h in hooks] == ["payment.captured", "payment_link.paid"]
    for hook in hooks:
        signature = hook.headers["X-Razorpay-Signature"]
        assert verify_signature(hook.body, signature, rzp.webhook_secret)
        assert verify_signature(hook.body, signature.upper(), rzp.webhook_secret)
    assert len({h.event_id for h in hooks}) == 2


def _one_hook(client: Razorpay, rzp: RazorpayServer) -> SignedWebhook:
    return rzp.pay_link(make_link(client).id)[1]


def test_a_changed_byte_does_not_verify(client: Razorpay, rzp: RazorpayServer) -> None:
    hook = _one_hook(client, rzp)
    signature = hook.headers["X-Razorpay-Signature"]
    changed = hook.body.replace(b'"amount":123450', b'"amount":123451', 1)
    assert changed != hook.body

    assert not verify_signature(changed, signature, rzp.webhook_secret)
    assert not verify_signature(hook.body + b" ", signature, rzp.webhook_secret)
    # The same JSON written differently is other bytes: only the raw body verifies.
    reserialised = json.dumps(json.loads(hook.body)).encode()
    assert not verify_signature(reserialised, signature, rzp.webhook_secret)


def test_a_wrong_secret_does_not_verify(client: Razorpay, rzp: RazorpayServer) -> None:
    hook = _one_hook(client, rzp)
    signature = hook.headers["X-Razorpay-Signature"]

    assert not verify_signature(hook.body, signature, "another-secret")
    assert not verify_signature(hook.body, signature, "")


@pytest.mark.parametrize(
    "signature",
    [None, "", "   ", "not-hex", "zz" * 32, "ab" * 31, "ab" * 33, "é" * 64, "deadbeef"],
)
def test_a_missing_or_garbage_signature_does_not_verify_and_never_raises(
    client: Razorpay, rzp: RazorpayServer, signature: str | None
) -> None:
    hook = _one_hook(client, rzp)

    assert verify_signature(hook.body, signature, rzp.webhook_secret) is False


def test_sign_matches_the_fakes_signature(rzp: RazorpayServer) -> None:
    body = b'{"entity":"event"}'

    assert sign(body, rzp.webhook_secret) == rzp.sign(body)


# ------------------------------------------------------------------------------ events


def test_payment_link_paid_gives_the_link_payment_order_and_reference(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    link = make_link(client, amount="1234.50", reference="pay-row-9")
    captured, paid = rzp.pay_link(link.id, method="upi")

    event = parse_event(paid.body, paid.event_id)

    payment = rzp.store.payments[event.payment_id or ""]
    assert event.kind == "payment_link.paid"
    assert event.event_id == paid.event_id
    assert event.link_id == link.id
    assert event.reference_id == "pay-row-9"
    assert event.order_id == payment["order_id"]
    assert event.amount == Decimal("1234.50")
    assert event.method == "upi"
    assert event.refund_id is None
    assert event.error is None
    assert event.raw["payload"]["payment_link"]["entity"]["status"] == "paid"

    captured_event = parse_event(captured.body, captured.event_id)
    assert captured_event.kind == "payment.captured"
    assert captured_event.payment_id == event.payment_id
    assert captured_event.order_id == event.order_id
    assert captured_event.link_id is None
    # payment events name no link: the reference comes from the notes Razorpay copies
    assert captured_event.reference_id == "pay-row-9"
    assert captured_event.amount == Decimal("1234.50")


def test_payment_failed_gives_the_reason_and_reference(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    link = make_link(client, amount="99.99", reference="pay-row-10")
    [failed] = rzp.fail_link(link.id, "Payment was declined by the bank", method="card")

    event = parse_event(failed.body, failed.event_id)

    assert event.kind == "payment.failed"
    assert event.error == "Payment was declined by the bank"
    assert event.method == "card"
    assert event.reference_id == "pay-row-10"
    assert event.amount == Decimal("99.99")
    assert event.payment_id is not None
    assert event.order_id is not None
    assert client.fetch_payment_link(link.id).status == "created"  # it can still be paid


def test_refund_processed_gives_the_refund_and_its_payment(
    client: Razorpay, rzp: RazorpayServer
) -> None:
    payment_id = paid_payment(client, rzp, "500.00", reference="pay-row-12")
    refund = client.refund(
        payment_id=payment_id, amount=Decimal("120.50"), receipt="refund-row-0009", notes={}
    )
    [hook] = rzp.refund_webhooks(refund.id)

    event = parse_event(hook.body, hook.event_id)

    assert event.kind == "refund.processed"
    assert event.refund_id == refund.id
    assert event.payment_id == payment_id
    assert event.amount == Decimal("120.50")
    assert event.link_id is None
    assert event.reference_id == "pay-row-12"  # the refunded payment's


def test_payment_link_expired_gives_the_link(client: Razorpay, rzp: RazorpayServer) -> None:
    link = make_link(client, amount="10.00", reference="pay-row-11")
    [hook] = rzp.expire_link(link.id)

    event = parse_event(hook.body, hook.event_id)

    assert event.kind == "payment_link.expired"
    assert event.link_id == link.id
    assert event.reference_id == "pay-row-11"
    assert event.payment_id is None
    assert event.amount == Decimal("10.00")


def test_an_arbitrary_event_reads_what_it_carries(rzp: RazorpayServer) -> None:
    hook = rzp.webhook(
        "payment.captured",
        {"payment": {"entity": {"id": "pay_X", "amount": 5, "notes": [], "method": "wallet"}}},
    )

    event = parse_event(hook.body, hook.event_id)

    assert verify_signature(hook.body, hook.headers["X-Razorpay-Signature"], rzp.webhook_secret)
    assert event.amount == Decimal("0.05")
    assert event.reference_id is None  # notes sent as [] when empty
    assert event.method == "wallet"


@pytest.mark.parametrize(
    ("body", "event_id", "words"),
    [
        (b'{"entity":"event","event":"payment.captured","payload":{}}', None, "Event-Id"),
        (b'{"entity":"event","event":"payment.captured","payload":{}}', " ", "Event-Id"),
        (b"not json", "evt1", "not JSON"),
        (b"\xff\xfe", "evt1", "not JSON"),
        (b"[1, 2]", "evt1", "not a Razorpay event"),
        (b'{"entity":"payment","event":"x","payload":{}}', "evt1", "not a Razorpay event"),
        (b'{"entity":"event","payload":{}}', "evt1", "no event name"),
        (b'{"entity":"event","event":"payment.captured"}', "evt1", "payload"),
        (
            b'{"entity":"event","event":"payment.captured",'
            b'"payload":{"payment":{"entity":{"id":"pay_X","amount":12.5}}}}',
            "evt1",
            "paise",
        ),
    ],
)
def test_a_body_that_is_not_a_razorpay_event_is_refused_in_words(
    body: bytes, event_id: str | None, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        parse_event(body, event_id)


# ------------------------------------------------------------------------------ the fake itself


def test_the_fake_answers_the_official_sdk_for_orders_and_payments(rzp: RazorpayServer) -> None:
    sdk = razorpay.Client(auth=(rzp.key_id, rzp.key_secret), base_url=rzp.url)

    order = sdk.order.create({"amount": 50000, "currency": "INR", "receipt": "OPD/2026-27/1"})
    fetched = sdk.order.fetch(order["id"])
    payment_id = rzp.add_captured_payment(50000)
    payment = sdk.payment.fetch(payment_id)

    assert order["id"].startswith("order_")
    assert fetched == order
    assert (order["amount"], order["amount_due"], order["status"]) == (50000, 50000, "created")
    assert (payment["status"], payment["captured"], payment["amount"]) == ("captured", True, 50000)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"amount": 100.5, "currency": "INR"}, "must be an integer"),
        ({"amount": "100", "currency": "INR"}, "must be an integer"),
        ({"amount": 99, "currency": "INR"}, "at least INR 1.00"),
        ({"amount": 1000}, "currency"),
        ({"amount": 1000, "currency": "USD"}, "currency"),
        ({"amount": 1000, "currency": "INR", "colour": "red"}, "colour is/are not required"),
        ({"amount": 1000, "currency": "INR", "notes": {"n": "x" * 257}}, "256 characters"),
    ],
)
def test_the_fake_refuses_what_razorpay_refuses(
    rzp: RazorpayServer, body: dict[str, Any], words: str
) -> None:
    sdk = razorpay.Client(auth=(rzp.key_id, rzp.key_secret), base_url=rzp.url)

    with pytest.raises(razorpay.errors.BadRequestError, match=words):
        sdk.order.create(body)

    assert rzp.store.orders == {}
