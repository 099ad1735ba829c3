"""A stand-in for Razorpay's API (``https://api.razorpay.com/v1``) and its signed webhooks.

Real sockets; the official SDK talks to it as to Razorpay. It answers the documented endpoints
and keeps their state:

- ``POST /v1/payment_links``, ``GET /v1/payment_links/{id}``, ``POST /v1/payment_links/{id}/cancel``
- ``POST /v1/orders``, ``GET /v1/orders/{id}``
- ``GET /v1/payments/{id}``, ``POST /v1/payments/{id}/refund``, ``GET /v1/refunds/{id}``

as Razorpay does: HTTP Basic auth with the key id and secret it was started with (``401``
otherwise); amounts in integer paise of at least ₹1.00, currency INR, a unique payment link
``reference_id`` of at most 40 characters, at most 15 notes of 256 characters, no parameter it
does not know; a refund only of a captured payment and never beyond what was captured;
``X-Refund-Idempotency`` honoured. Every refusal is Razorpay's error body::

    {"error": {"code": "BAD_REQUEST_ERROR", "description": "...", "field": "amount",
               "source": "business", "step": "payment_initiation",
               "reason": "input_validation_failed", "metadata": {}}}

An unknown id is ``400 "The id provided does not exist"``, as Razorpay answers.

Test controls (plain methods): ``pay_link`` (captured payment; returns the ``payment.captured``
and ``payment_link.paid`` webhooks), ``fail_link`` (``payment.failed``), ``expire_link``
(``payment_link.expired``), ``refund_webhooks`` (``refund.processed``; refunds are processed at
once), ``webhook`` (any event), ``sign``. Each webhook is the exact bytes and headers Razorpay
would post: ``X-Razorpay-Signature`` (HMAC-SHA256 hex of the bytes with the webhook secret) and
a fresh ``X-Razorpay-Event-Id``. Tests post them themselves. ``answer_next`` scripts 429, 5xx or
any answer; ``delay`` makes every request wait (a hung provider). ``received`` records every
request as it arrives, before any delay or scripted answer.

From a test::

    with RazorpayServer() as rzp:
        client = Razorpay(rzp.config())
        link = client.create_payment_link(...)
        for hook in rzp.pay_link(link.id):
            api.post("/webhooks/razorpay", content=hook.body, headers=hook.headers)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opdesk.billing.razorpay_client import RazorpayConfig
from tests.fakes.http_fake import Received

_ALPHABET = string.ascii_letters + string.digits
KEY_ID = "rzp_test_OPDeskFake0001"
KEY_SECRET = "fake-key-secret"
WEBHOOK_SECRET = "fake-webhook-secret"
MIN_AMOUNT = 100  # paise: "The amount must be at least INR 1.00"
SIX_MONTHS = 183 * 24 * 3600

Answer = tuple[int, Any, dict[str, str]]


def razorpay_id(prefix: str = "") -> str:
    """An id shaped like Razorpay's: a prefix and 14 letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(14))


def error_body(
    description: str,
    *,
    code: str = "BAD_REQUEST_ERROR",
    field: str | None = None,
    reason: str = "input_validation_failed",
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "description": description,
            "field": field,
            "source": "business",
            "step": "payment_initiation",
            "reason": reason,
            "metadata": {},
        }
    }


class Refused(Exception):
    """A request Razorpay would refuse: becomes its error body."""

    def __init__(self, description: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.field = field
        self.status = status


@dataclass(frozen=True)
class SignedWebhook:
    """What Razorpay posts: the exact body bytes and the headers that go with them."""

    body: bytes
    headers: dict[str, str]

    @property
    def event_id(self) -> str:
        return self.headers["X-Razorpay-Event-Id"]

    @property
    def kind(self) -> str:
        return str(json.loads(self.body)["event"])

    @property
    def payload(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)["payload"]
        return found


@dataclass
class _Store:
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    # X-Refund-Idempotency key -> (request body, refund id)
    refund_keys: dict[str, tuple[Any, str]] = field(default_factory=dict)


class RazorpayServer:
    def __init__(
        self,
        *,
        key_id: str = KEY_ID,
        key_secret: str = KEY_SECRET,
        webhook_secret: str = WEBHOOK_SECRET,
        account_id: str = "acc_OPDeskFake0001",
        min_expiry_seconds: int = 15 * 60,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.key_id = key_id
        self.key_secret = key_secret
        self.webhook_secret = webhook_secret
        self.account_id = account_id
        # Links must stay open at least this long (Razorpay asks for expire_by some minutes
        # ahead); 0 accepts any future time.
        self.min_expiry_seconds = min_expiry_seconds
        self.received: list[Received] = []
        self.lock = threading.RLock()
        self.delay = 0.0
        self.store = _Store()
        self._script: list[Answer] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body, extra = fake.handle(method, self.path, headers, raw)
                # A scripted text answer is sent as it is (a proxy's HTML error page).
                text = isinstance(body, str)
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                kind = "text/html" if text else "application/json"
                self.send_header("content-type", f"{kind}; charset=UTF-8")
                self.send_header("content-length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                # The client may have given up (a timeout test): that is not our error.
                with contextlib.suppress(OSError):
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def config(
        self,
        *,
        timeout_seconds: float = 5.0,
        key_id: str | None = None,
        key_secret: str | None = None,
        base_url: str | None = None,
    ) -> RazorpayConfig:
        """A client configuration pointing at this server (or the key, secret or address
        given instead)."""
        return RazorpayConfig(
            key_id=key_id if key_id is not None else self.key_id,
            key_secret=key_secret if key_secret is not None else self.key_secret,
            webhook_secret=self.webhook_secret,
            base_url=base_url if base_url is not None else self.url,
            timeout_seconds=timeout_seconds,
        )

    def start(self) -> RazorpayServer:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> RazorpayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting, reading back

    def answer_next(
        self,
        status: int,
        body: dict[str, Any] | str | None = None,
        *,
        times: int = 1,
        retry_after: str | None = None,
    ) -> None:
        """The next ``times`` requests get ``status`` and ``body`` (Razorpay's error body for
        the status when none is given; a string goes out as an HTML page, as a proxy in front
        of Razorpay might answer), and a Retry-After header if given."""
        if body is None:
            code = "SERVER_ERROR" if status >= 500 else "BAD_REQUEST_ERROR"
            words = {
                429: "Too many requests",
                500: "The server encountered an error. The incident has been reported to admins",
            }.get(status, f"HTTP {status}")
            body = error_body(words, code=code, reason="NA")
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self.lock:
            self._script.extend((status, body, headers) for _ in range(times))

    def requests(self, method: str | None = None, path: str | None = None) -> list[Received]:
        """What arrived (every request, answered or not), optionally one method and path."""
        with self.lock:
            return [
                r
                for r in self.received
                if (method is None or r.method == method)
                and (path is None or urlsplit(r.path).path.rstrip("/") == path.rstrip("/"))
            ]

    # ------------------------------------------------------------------ HTTP

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        split = urlsplit(target)
        path = split.path.rstrip("/") or "/"
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with self.lock:
            self.received.append(Received(method, target, headers, raw, body, None))
            scripted = self._script.pop(0) if self._script else None
        if self.delay:
            time.sleep(self.delay)
        if scripted is not None:
            return scripted
        refused = self._authenticate(headers)
        if refused is not None:
            return refused
        if body is None:
            return 400, error_body("The request body is not valid JSON"), {}
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            with self.lock:
                return 200, self._route(method, path, headers, body, query), {}
        except Refused as exc:
            return exc.status, error_body(exc.description, field=exc.field), {}

    def _authenticate(self, headers: dict[str, str]) -> Answer | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value:
            return (
                401,
                error_body("Please provide your api key for authentication purposes.", reason="NA"),
                {},
            )
        try:
            key_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key_id, secret = "", ""
        if not (
            hmac.compare_digest(key_id.encode(), self.key_id.encode())
            and hmac.compare_digest(secret.encode(), self.key_secret.encode())
        ):
            return 401, error_body("The api key provided is invalid", reason="NA"), {}
        return None

    def _route(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        query: dict[str, str],
    ) -> Any:
        routes: list[tuple[str, str, Any]] = [
            ("POST", r"/v1/payment_links", lambda: self._create_link(body)),
            ("GET", r"/v1/payment_links/(\w+)", lambda i: self._known(self.store.links, i)),
            ("POST", r"/v1/payment_links/(\w+)/cancel", lambda i: self._cancel_link(i)),
            ("POST", r"/v1/orders", lambda: self._create_order(body)),
            ("GET", r"/v1/orders/(\w+)", lambda i: self._known(self.store.orders, i)),
            ("GET", r"/v1/payments/(\w+)", lambda i: self._known(self.store.payments, i)),
            ("POST", r"/v1/payments/(\w+)/refund", lambda i: self._refund(i, body, headers)),
            ("GET", r"/v1/refunds/(\w+)", lambda i: self._known(self.store.refunds, i)),
        ]
        for verb, pattern, action in routes:
            matched = re.fullmatch(pattern, path)
            if matched and verb == method:
                return action(*matched.groups())
        raise Refused("The requested URL was not found on the server.", status=404)

    # ------------------------------------------------------------------ validation

    @staticmethod
    def _object(body: Any, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Refused("The request body must be a JSON object")
        extra = sorted(set(body) - allowed)
        if extra:
            raise Refused(f"{', '.join(extra)} is/are not required and should not be sent")
        return body

    @staticmethod
    def _amount(value: Any, field: str = "amount", *, required: bool = True) -> int | None:
        if value is None:
            if required:
                raise Refused(f"The {field} field is required.", field=field)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Refused(f"The {field} must be an integer.", field=field)
        if value < MIN_AMOUNT:
            raise Refused(f"The {field} must be at least INR 1.00", field=field)
        return value

    @staticmethod
    def _currency(value: Any, *, required: bool) -> str:
        if value is None and not required:
            return "INR"
        if value != "INR":
            raise Refused("The currency field must be INR.", field="currency")
        return "INR"

    @staticmethod
    def _notes(value: Any) -> dict[str, str] | list[Any]:
        if value is None:
            return []  # Razorpay shows empty notes as []
        if not isinstance(value, dict):
            raise Refused("The notes must be an object of key-value pairs.", field="notes")
        if len(value) > 15:
            raise Refused("The notes may not have more than 15 items.", field="notes")
        for key, item in value.items():
            if not isinstance(item, str | int | float) or isinstance(item, bool):
                raise Refused(f"The notes.{key} must be a string.", field="notes")
            if len(str(item)) > 256:
                raise Refused(
                    f"The notes.{key} may not be greater than 256 characters.", field="notes"
                )
        return {str(k): str(v) for k, v in value.items()} or []

    @staticmethod
    def _text(value: Any, field: str, limit: int, *, required: bool = False) -> str | None:
        if value is None or value == "":
            if required:
                raise Refused(f"The {field} field is required.", field=field)
            return None
        if not isinstance(value, str):
            raise Refused(f"The {field} must be a string.", field=field)
        if len(value) > limit:
            raise Refused(f"The {field} may not be greater than {limit} characters.", field=field)
        return value

    @staticmethod
    def _known(table: dict[str, dict[str, Any]], entity_id: str) -> dict[str, Any]:
        found = table.get(entity_id)
        if found is None:
            raise Refused("The id provided does not exist")
        return found

    # ------------------------------------------------------------------ payment links

    def _create_link(self, body: Any) -> dict[str, Any]:
        body = self._object(
            body,
            {
                "amount",
                "currency",
                "accept_partial",
                "first_min_partial_amount",
                "expire_by",
                "reference_id",
                "description",
                "customer",
                "notify",
                "reminder_enable",
                "notes",
                "callback_url",
                "callback_method",
                "upi_link",
            },
        )
        amount = self._amount(body.get("amount"))
        currency = self._currency(body.get("currency"), required=False)
        now = int(time.time())
        expire_by = body.get("expire_by", 0)
        if isinstance(expire_by, bool) or not isinstance(expire_by, int):
            raise Refused("The expire by must be an integer.", field="expire_by")
        if expire_by and expire_by < now + self.min_expiry_seconds:
            minutes = self.min_expiry_seconds // 60
            raise Refused(
                f"expire_by should be at least {minutes} minutes after current time",
                field="expire_by",
            )
        if expire_by > now + SIX_MONTHS:
            raise Refused(
                "expire_by cannot be more than 6 months after current time", field="expire_by"
            )
        reference = self._text(body.get("reference_id"), "reference_id", 40)
        if reference and any(
            link["reference_id"] == reference for link in self.store.links.values()
        ):
            raise Refused(
                f"Payment Link with reference id {reference} already exists",
                field="reference_id",
            )
        description = self._text(body.get("description"), "description", 2048)
        customer = body.get("customer") or {}
        if not isinstance(customer, dict) or set(customer) - {"name", "contact", "email"}:
            raise Refused("The customer must have only name, contact and email.", field="customer")
        contact = customer.get("contact")
        if contact is not None and not re.fullmatch(r"\+?[0-9]{8,15}", str(contact)):
            raise Refused("The contact format is invalid.", field="contact")
        for key in ("accept_partial", "reminder_enable"):
            if key in body and not isinstance(body[key], bool):
                raise Refused(f"The {key} field must be true or false.", field=key)
        if body.get("accept_partial"):
            raise Refused("Partial payments are not enabled on this fake", field="accept_partial")
        notify = body.get("notify") or {}
        link_id = razorpay_id("plink_")
        link = {
            "accept_partial": False,
            "amount": amount,
            "amount_paid": 0,
            "callback_method": body.get("callback_method") or "",
            "callback_url": body.get("callback_url") or "",
            "cancelled_at": 0,
            "created_at": now,
            "currency": currency,
            "customer": {k: str(v) for k, v in customer.items()},
            "description": description or "",
            "expire_by": expire_by,
            "expired_at": 0,
            "first_min_partial_amount": 0,
            "id": link_id,
            "notes": self._notes(body.get("notes")) or None,
            "notify": {
                "email": bool(notify.get("email")),
                "sms": bool(notify.get("sms")),
                "whatsapp": False,
            },
            "payments": None,
            "reference_id": reference or "",
            "reminder_enable": bool(body.get("reminder_enable")),
            "reminders": [],
            "short_url": f"https://rzp.io/rzp/{razorpay_id()[:8]}",
            "status": "created",
            "updated_at": now,
            "upi_link": bool(body.get("upi_link")),
            "user_id": "",
            "whatsapp_link": False,
        }
        self.store.links[link_id] = link
        return link

    def _cancel_link(self, link_id: str) -> dict[str, Any]:
        link = self._known(self.store.links, link_id)
        if link["status"] != "created":
            raise Refused(f"Payment Link cannot be cancelled in {link['status']} status")
        now = int(time.time())
        link.update(status="cancelled", cancelled_at=now, updated_at=now)
        return link

    # ------------------------------------------------------------------ orders

    def _create_order(self, body: Any) -> dict[str, Any]:
        body = self._object(
            body,
            {
                "amount",
                "currency",
                "receipt",
                "notes",
                "partial_payment",
                "first_payment_min_amount",
            },
        )
        amount = self._amount(body.get("amount"))
        assert amount is not None
        currency = self._currency(body.get("currency"), required=True)
        receipt = self._text(body.get("receipt"), "receipt", 40)
        if body.get("partial_payment"):
            raise Refused("Partial payments are not enabled on this fake", field="partial_payment")
        return self._new_order(amount, currency, receipt, self._notes(body.get("notes")))

    def _new_order(
        self, amount: int, currency: str, receipt: str | None, notes: Any
    ) -> dict[str, Any]:
        order_id = razorpay_id("order_")
        order = {
            "id": order_id,
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": notes,
            "created_at": int(time.time()),
        }
        self.store.orders[order_id] = order
        return order

    # ------------------------------------------------------------------ refunds

    def _refund(self, payment_id: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
        payment = self._known(self.store.payments, payment_id)
        key = headers.get("x-refund-idempotency")
        if key is not None:
            if not re.fullmatch(r"[A-Za-z0-9_-]{10,}", key):
                raise Refused("The idempotency key format is invalid.")
            earlier = self.store.refund_keys.get(key)
            if earlier is not None:
                if earlier[0] != body:
                    raise Refused(
                        "The request body differs from the earlier request with this "
                        "idempotency key"
                    )
                return self.store.refunds[earlier[1]]
        body = self._object(body, {"amount", "speed", "notes", "receipt"})
        if payment["status"] not in ("captured", "refunded"):
            raise Refused("Only payments which have been captured can be refunded")
        left = payment["amount"] - payment["amount_refunded"]
        if left <= 0:
            raise Refused("The payment has been fully refunded already")
        amount = self._amount(body.get("amount"), required=False)
        amount = left if amount is None else amount
        if amount > left:
            raise Refused(
                "The refund amount provided is greater than amount captured", field="amount"
            )
        speed = body.get("speed", "normal")
        if speed not in ("normal", "optimum"):
            raise Refused("The selected speed is invalid.", field="speed")
        refund_id = razorpay_id("rfnd_")
        refund = {
            "id": refund_id,
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment_id,
            "notes": self._notes(body.get("notes")),
            "receipt": self._text(body.get("receipt"), "receipt", 40),
            "acquirer_data": {"arn": None},
            "created_at": int(time.time()),
            "batch_id": None,
            "status": "processed",
            "speed_processed": "normal",
            "speed_requested": speed,
        }
        self.store.refunds[refund_id] = refund
        payment["amount_refunded"] += amount
        full = payment["amount_refunded"] == payment["amount"]
        payment["refund_status"] = "full" if full else "partial"
        if full:
            payment["status"] = "refunded"
        if key is not None:
            self.store.refund_keys[key] = (body, refund_id)
        return refund

    # ------------------------------------------------------------------ test controls

    def sign(self, body: bytes) -> str:
        return hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()

    def webhook(self, kind: str, payload: dict[str, Any]) -> SignedWebhook:
        """Any event: ``payload`` is the event's ``payload`` as Razorpay sends it,
        ``{"payment": {"entity": {...}}, ...}``."""
        event = {
            "entity": "event",
            "account_id": self.account_id,
            "event": kind,
            "contains": list(payload),
            "payload": payload,
            "created_at": int(time.time()),
        }
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        return SignedWebhook(
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-Razorpay-Signature": self.sign(body),
                "X-Razorpay-Event-Id": razorpay_id(),
            },
        )

    def pay_link(self, link_id: str, method: str = "upi") -> list[SignedWebhook]:
        """The customer pays the whole link: a captured payment, the link ``paid``; returns
        ``payment.captured`` then ``payment_link.paid``."""
        with self.lock:
            link = self._link_open(link_id)
            order = self._link_order(link)
            payment = self._new_payment(link, order, method, captured=True)
            now = int(time.time())
            order.update(status="paid", amount_paid=order["amount"], amount_due=0)
            link.update(status="paid", amount_paid=link["amount"], updated_at=now)
            link["payments"] = [
                *(link["payments"] or []),
                {
                    "amount": payment["amount"],
                    "created_at": now,
                    "method": method,
                    "payment_id": payment["id"],
                    "plink_id": link_id,
                    "status": "captured",
                    "updated_at": now,
                },
            ]
            snapshot = json.loads(json.dumps([payment, order, link]))
        return [
            self.webhook("payment.captured", {"payment": {"entity": snapshot[0]}}),
            self.webhook(
                "payment_link.paid",
                {
                    "order": {"entity": snapshot[1]},
                    "payment": {"entity": snapshot[0]},
                    "payment_link": {"entity": snapshot[2]},
                },
            ),
        ]

    def fail_link(
        self, link_id: str, reason: str = "Payment failed", method: str = "upi"
    ) -> list[SignedWebhook]:
        """A payment attempt on the link fails (the link stays payable): ``payment.failed``."""
        with self.lock:
            link = self._link_open(link_id)
            order = self._link_order(link)
            payment = self._new_payment(link, order, method, captured=False)
            payment.update(
                error_code="BAD_REQUEST_ERROR",
                error_description=reason,
                error_source="customer",
                error_step="payment_authorization",
                error_reason="payment_failed",
            )
            order["status"] = "attempted"
            snapshot = json.loads(json.dumps(payment))
        return [self.webhook("payment.failed", {"payment": {"entity": snapshot}})]

    def expire_link(self, link_id: str) -> list[SignedWebhook]:
        """The link lapses unpaid: ``payment_link.expired``."""
        with self.lock:
            link = self._link_open(link_id)
            now = int(time.time())
            link.update(status="expired", expired_at=now, updated_at=now)
            snapshot = json.loads(json.dumps(link))
        return [self.webhook("payment_link.expired", {"payment_link": {"entity": snapshot}})]

    def refund_webhooks(self, refund_id: str) -> list[SignedWebhook]:
        """``refund.processed`` for a refund made through the API (processed at once)."""
        with self.lock:
            refund = self.store.refunds.get(refund_id)
            if refund is None:
                raise KeyError(f"no refund {refund_id} on this fake Razorpay")
            payment = self.store.payments[refund["payment_id"]]
            snapshot = json.loads(json.dumps([refund, payment]))
        return [
            self.webhook(
                "refund.processed",
                {"refund": {"entity": snapshot[0]}, "payment": {"entity": snapshot[1]}},
            )
        ]

    def _link_open(self, link_id: str) -> dict[str, Any]:
        link = self.store.links.get(link_id)
        if link is None:
            raise KeyError(f"no payment link {link_id} on this fake Razorpay")
        if link["status"] != "created":
            raise ValueError(f"payment link {link_id} is {link['status']}, not payable")
        return link

    def _link_order(self, link: dict[str, Any]) -> dict[str, Any]:
        """The order Razorpay makes for a link at its first payment attempt; it carries the
        link's notes, as do the payments."""
        order_id = link.get("order_id")
        if order_id:
            order: dict[str, Any] = self.store.orders[order_id]
        else:
            order = self._new_order(
                link["amount"], link["currency"], link["reference_id"] or None, link["notes"] or []
            )
            link["order_id"] = order["id"]
        order["attempts"] += 1
        return order

    def _new_payment(
        self, link: dict[str, Any], order: dict[str, Any], method: str, *, captured: bool
    ) -> dict[str, Any]:
        payment_id = razorpay_id("pay_")
        payment = {
            "id": payment_id,
            "entity": "payment",
            "amount": link["amount"],
            "currency": link["currency"],
            "base_amount": link["amount"],
            "status": "captured" if captured else "failed",
            "order_id": order["id"],
            "invoice_id": None,
            "international": False,
            "method": method,
            "amount_refunded": 0,
            "amount_transferred": 0,
            "refund_status": None,
            "captured": captured,
            "description": "#" + link["id"].removeprefix("plink_"),
            "card_id": None,
            "bank": "HDFC" if method == "netbanking" else None,
            "wallet": None,
            "vpa": "patient@okhdfcbank" if method == "upi" else None,
            "email": None,
            "contact": link["customer"].get("contact") or None,
            "notes": json.loads(json.dumps(link["notes"] or [])),
            "fee": 2 if captured else None,
            "tax": 0 if captured else None,
            "error_code": None,
            "error_description": None,
            "error_source": None,
            "error_step": None,
            "error_reason": None,
            "acquirer_data": {"rrn": str(secrets.randbelow(10**12)).zfill(12)},
            "created_at": int(time.time()),
        }
        self.store.payments[payment_id] = payment
        return payment

    def add_captured_payment(self, amount_paise: int, method: str = "card") -> str:
        """A captured payment made outside a link (checkout against an order), to refund."""
        with self.lock:
            order = self._new_order(amount_paise, "INR", None, [])
            link = {
                "id": "plink_none",
                "amount": amount_paise,
                "currency": "INR",
                "customer": {},
                "notes": [],
            }
            payment = self._new_payment(link, order, method, captured=True)
            payment["description"] = None
            order.update(status="paid", amount_paid=amount_paise, amount_due=0, attempts=1)
            return str(payment["id"])


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A fake Razorpay API on localhost")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = RazorpayServer(port=args.port)
    print(fake.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.server.serve_forever()
