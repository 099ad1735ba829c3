"""Razorpay: payment links, refunds and webhooks, through the official ``razorpay`` SDK.

Every call goes through ``razorpay.Client`` pointed at ``RazorpayConfig.base_url``; tests point
it at ``tests/fakes/razorpay_server.py``, a local server speaking the same documented API.

What this module guarantees to its callers (billing's services and webhook route):

- **Money is exact.** ``Decimal`` rupees go out as integer paise and come back as ``Decimal``
  rupees with two places; an amount that is not a whole number of paise (``10.005``), not
  finite, or not above zero is refused with ``ValueError`` before any request is made.
- **One request per call.** The SDK's own retries stay off (``enable_retry(False)``) and the
  HTTP adapter never retries, so a timeout can never turn into two payment links or two
  refunds. Payment links carry our ``reference_id`` (Razorpay keeps it unique per link) and
  refunds an ``X-Refund-Idempotency`` key made from the receipt, so a caller that retries after
  a timeout is refused or answered with the first refund rather than paying out twice.
- **Every request times out** after ``timeout_seconds`` (connect and each read).
- **Failures are one exception,** ``GatewayError``: ``detail`` says in words what went wrong
  (Razorpay's own description when it gave one) and ``retryable`` is True for a timeout, a
  connection failure, a 429 and a 5xx, False for any other refusal.

Webhooks: ``verify_signature`` checks ``X-Razorpay-Signature`` (HMAC-SHA256, hex, keyed with
the webhook secret, over the raw body) and ``parse_event`` reads the event, keyed by the
``X-Razorpay-Event-Id`` header (the same for every retry of one event: the dedupe key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import razorpay
import requests
from razorpay.errors import BadRequestError as SdkBadRequest
from razorpay.errors import GatewayError as SdkGatewayError
from razorpay.errors import ServerError as SdkServerError
from requests.adapters import HTTPAdapter

PAISE = Decimal("0.01")
# Razorpay keeps a payment link's reference_id to 40 characters and a note to 256.
REFERENCE_MAX = 40
NOTE_MAX = 256
# The note that carries our reference on the link; Razorpay copies a link's notes onto the
# order and the payment it creates, so ``payment.failed`` (which names no link) still says
# whose payment it was.
REFERENCE_NOTE = "reference_id"
# Razorpay's rule for X-Refund-Idempotency: 10+ characters of letters, digits, - and _.
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{10,}")
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")

T = TypeVar("T")


@dataclass(frozen=True)
class RazorpayConfig:
    key_id: str
    key_secret: str
    webhook_secret: str
    base_url: str = "https://api.razorpay.com"  # the SDK's own default
    timeout_seconds: float = 10.0


class GatewayError(Exception):
    """Razorpay refused a request or could not be reached.

    ``detail`` is for staff (what happened, what to do); ``retryable`` says whether the same
    request may succeed later (timeout, connection failure, 429, 5xx). ``status`` is the HTTP
    status when Razorpay answered, ``code`` and ``field`` its error code and the parameter it
    blamed, when it said.
    """

    def __init__(
        self,
        detail: str,
        *,
        retryable: bool,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.status = status
        self.code = code
        self.field = field


@dataclass(frozen=True)
class PaymentLink:
    id: str
    short_url: str
    status: str
    amount: Decimal
    reference_id: str


@dataclass(frozen=True)
class Refund:
    id: str
    payment_id: str
    amount: Decimal
    status: str


@dataclass(frozen=True)
class GatewayEvent:
    event_id: str  # the X-Razorpay-Event-Id header: one per event, the same on every retry
    kind: str  # "payment_link.paid", "payment.captured", "payment.failed", "refund.processed"…
    payment_id: str | None
    order_id: str | None
    link_id: str | None
    refund_id: str | None
    reference_id: str | None  # the payment link's reference_id (our payment row id)
    amount: Decimal | None  # rupees
    method: str | None  # upi, card, netbanking, wallet… as Razorpay reports it
    error: str | None  # Razorpay's description of a failed payment
    raw: dict[str, Any]


# ---------------------------------------------------------------------------------- money


def to_paise(amount: Decimal) -> int:
    """Rupees to paise, exactly; ``ValueError`` for anything Razorpay could not be asked for."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise ValueError(f"the amount must be a Decimal of rupees, not {type(amount).__name__}")
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"the amount {amount} is not a number of rupees")
    if value <= 0:
        raise ValueError(f"the amount must be more than zero, not ₹{value}")
    try:
        exact = value.quantize(PAISE)
    except InvalidOperation:
        raise ValueError(f"the amount {amount} is too large") from None
    if exact != value:
        raise ValueError(f"the amount ₹{value} is not a whole number of paise")
    return int(exact * 100)


def from_paise(paise: Any, what: str = "amount") -> Decimal:
    """Razorpay's integer paise as rupees with two places."""
    if isinstance(paise, bool) or not isinstance(paise, int):
        raise ValueError(f"Razorpay's {what} is not a whole number of paise: {paise!r}")
    return Decimal(paise).scaleb(-2)


# ---------------------------------------------------------------------------------- HTTP


class _Failure(Exception):
    """Raised inside the SDK's call (it is no ``requests`` exception, so the SDK neither
    retries nor prints it) and turned into ``GatewayError`` by ``Razorpay._call``."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.detail)
        self.error = error


class _Session(requests.Session):
    """The SDK's HTTP session: a timeout on every request, no retries, and every non-2xx
    answer judged here, where its HTTP status is still known (the SDK keeps only the error
    code, and reads a 502's HTML page as JSON)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        adapter = HTTPAdapter(max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["timeout"] = (self.timeout, self.timeout)
        kwargs["allow_redirects"] = False
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.Timeout as exc:
            raise _Failure(
                GatewayError(
                    f"Razorpay did not answer within {self.timeout:g} seconds; "
                    "check on the Razorpay dashboard before trying again",
                    retryable=True,
                )
            ) from exc
        except requests.RequestException as exc:
            raise _Failure(
                GatewayError(
                    f"Razorpay could not be reached ({type(exc).__name__}); "
                    "check the internet connection and try again",
                    retryable=True,
                )
            ) from exc
        if not 200 <= response.status_code < 300:
            raise _Failure(_judge(response))
        if response.status_code != 204:
            try:
                response.json()
            except ValueError as exc:
                raise _Failure(
                    GatewayError(
                        f"Razorpay's answer (HTTP {response.status_code}) could not be read; "
                        "check the Razorpay dashboard before trying again",
                        retryable=False,
                        status=response.status_code,
                    )
                ) from exc
        return response


def _judge(response: requests.Response) -> GatewayError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    description = str(error.get("description") or "").strip()
    code = str(error["code"]) if error.get("code") else None
    field = str(error["field"]) if error.get("field") else None
    said = f": {description}" if description else ""
    if status == 401:
        return GatewayError(
            f"Razorpay refused the API key{said}; check the key id and secret in the clinic's "
            "payment settings",
            retryable=False,
            status=status,
            code=code,
        )
    if status == 429:
        return GatewayError(
            f"Razorpay is receiving too many requests{said}; try again in a minute",
            retryable=True,
            status=status,
            code=code,
        )
    if status >= 500:
        return GatewayError(
            f"Razorpay had a problem (HTTP {status}){said}; try again in a few minutes",
            retryable=True,
            status=status,
            code=code,
        )
    return GatewayError(
        f"Razorpay refused the request{said or f' (HTTP {status})'}",
        retryable=False,
        status=status,
        code=code,
        field=field,
    )


def _api_base(base_url: str) -> str:
    """The SDK's base is the host: it adds ``/v1/...`` itself. Accept either form."""
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base


# ---------------------------------------------------------------------------------- client


class Razorpay:
    def __init__(self, config: RazorpayConfig) -> None:
        if not config.key_id or not config.key_secret:
            raise ValueError("Razorpay needs a key id and a key secret")
        if config.timeout_seconds <= 0:
            raise ValueError("the Razorpay timeout must be more than zero seconds")
        self.config = config
        self.client = razorpay.Client(
            session=_Session(config.timeout_seconds),
            auth=(config.key_id, config.key_secret),
            base_url=_api_base(config.base_url),
        )
        self.client.enable_retry(False)
        self.client.set_app_details({"title": "OPDesk"})

    # ------------------------------------------------------------------ payment links

    def create_payment_link(
        self,
        *,
        amount: Decimal,
        reference_id: str,
        description: str,
        customer_name: str,
        customer_phone: str | None,
        expire_by: datetime,
        notes: dict[str, str],
    ) -> PaymentLink:
        """One link for ``amount``; Razorpay refuses a second link with the same reference."""
        paise = to_paise(amount)
        if not reference_id or len(reference_id) > REFERENCE_MAX:
            raise ValueError(f"the reference id must be 1 to {REFERENCE_MAX} characters")
        if expire_by.tzinfo is None:
            raise ValueError("the link's expiry must be a time with its time zone")
        customer: dict[str, str] = {"name": customer_name}
        if customer_phone:
            customer["contact"] = customer_phone
        body = {
            "amount": paise,
            "currency": "INR",
            "accept_partial": False,
            "expire_by": int(expire_by.timestamp()),
            "reference_id": reference_id,
            "description": description,
            "customer": customer,
            # We send the link ourselves (SMS/WhatsApp with the clinic's templates).
            "notify": {"sms": False, "email": False},
            "reminder_enable": False,
            "notes": {**_notes(notes), REFERENCE_NOTE: reference_id},
        }
        return self._call(lambda: _link(self.client.payment_link.create(body)))

    def fetch_payment_link(self, link_id: str) -> PaymentLink:
        _check_id(link_id, "payment link")
        return self._call(lambda: _link(self.client.payment_link.fetch(link_id)))

    def cancel_payment_link(self, link_id: str) -> PaymentLink:
        _check_id(link_id, "payment link")
        return self._call(lambda: _link(self.client.payment_link.cancel(link_id)))

    # ------------------------------------------------------------------ refunds

    def refund(
        self, *, payment_id: str, amount: Decimal, receipt: str, notes: dict[str, str]
    ) -> Refund:
        """A normal-speed refund of ``amount`` of a captured payment.

        ``receipt`` (our refund row's id) is also sent as ``X-Refund-Idempotency`` when it
        fits Razorpay's rule for that key, so repeating a refund whose answer was lost returns
        the first refund instead of a second one.
        """
        _check_id(payment_id, "payment")
        paise = to_paise(amount)
        if not receipt or len(receipt) > REFERENCE_MAX:
            raise ValueError(f"the receipt must be 1 to {REFERENCE_MAX} characters")
        body = {"amount": paise, "speed": "normal", "receipt": receipt, "notes": _notes(notes)}
        headers = {"X-Refund-Idempotency": receipt} if _IDEMPOTENCY_KEY.fullmatch(receipt) else {}
        return self._call(
            lambda: _refund(self.client.payment.refund(payment_id, body, headers=dict(headers)))
        )

    # ------------------------------------------------------------------ plumbing

    def _call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except _Failure as exc:
            raise exc.error from exc
        except SdkBadRequest as exc:
            raise GatewayError(f"Razorpay refused the request: {exc}", retryable=False) from exc
        except (SdkServerError, SdkGatewayError) as exc:
            raise GatewayError(
                f"Razorpay had a problem: {exc}; try again in a few minutes", retryable=True
            ) from exc
        except requests.RequestException as exc:
            raise GatewayError(
                f"Razorpay could not be reached ({type(exc).__name__}); try again",
                retryable=True,
            ) from exc
        except ValueError as exc:  # a 2xx whose body is not what Razorpay documents
            raise GatewayError(
                f"Razorpay's answer could not be read ({exc}); check the Razorpay dashboard",
                retryable=False,
            ) from exc


def _check_id(value: str, what: str) -> None:
    # An id goes into the URL path: never let one reach another endpoint.
    if not value or not re.fullmatch(r"[A-Za-z0-9_]+", value):
        raise ValueError(f"{value!r} is not a Razorpay {what} id")


def _notes(notes: Mapping[str, str]) -> dict[str, str]:
    out = {str(k): str(v) for k, v in notes.items()}
    for key, value in out.items():
        if len(value) > NOTE_MAX:
            raise ValueError(f"the note {key!r} is longer than {NOTE_MAX} characters")
    if len(out) >= 15:  # Razorpay allows 15; one is kept for our reference
        raise ValueError("at most 14 notes can be sent to Razorpay")
    return out


def _text(entity: Any, key: str) -> str:
    value = entity.get(key) if isinstance(entity, dict) else None
    if not isinstance(value, str) or not value:
        raise ValueError(f"no {key} in Razorpay's answer")
    return value


def _refund(answer: Any) -> Refund:
    return Refund(
        id=_text(answer, "id"),
        payment_id=_text(answer, "payment_id"),
        amount=from_paise(answer.get("amount"), "refund amount"),
        status=_text(answer, "status"),
    )


def _link(answer: Any) -> PaymentLink:
    return PaymentLink(
        id=_text(answer, "id"),
        short_url=_text(answer, "short_url"),
        status=_text(answer, "status"),
        amount=from_paise(answer.get("amount"), "payment link amount"),
        reference_id=str(answer.get("reference_id") or ""),
    )


# ---------------------------------------------------------------------------------- webhooks


def sign(raw_body: bytes, secret: str) -> str:
    """The ``X-Razorpay-Signature`` Razorpay sends for ``raw_body``."""
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_signature(raw_body: bytes, signature: str | None, secret: str) -> bool:
    """True only when ``signature`` is the HMAC-SHA256 (hex) of the exact bytes received,
    keyed with the webhook secret. Compared in constant time; never raises."""
    try:
        if not secret or not isinstance(signature, str):
            return False
        given = signature.strip()
        if not _HEX_SIGNATURE.fullmatch(given):
            return False
        return hmac.compare_digest(sign(bytes(raw_body), secret), given.lower())
    except Exception:
        return False


def parse_event(raw_body: bytes, event_id: str | None) -> GatewayEvent:
    """Read a webhook's body (already verified); ``ValueError`` when it is not a Razorpay
    event or the ``X-Razorpay-Event-Id`` header is missing.

    ``reference_id`` is the payment link's, or for an event that names no link (a payment's or
    a refund's) the reference note Razorpay copied from the link onto its payment: a refund
    event gives the refunded payment's reference. ``amount`` is the refund's
    for a refund event, else the payment's, else the link's.
    """
    if not event_id or not event_id.strip():
        raise ValueError("the webhook has no X-Razorpay-Event-Id header")
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the webhook body is not JSON") from None
    if not isinstance(body, dict) or body.get("entity") != "event":
        raise ValueError("the webhook body is not a Razorpay event")
    kind = body.get("event")
    payload = body.get("payload")
    if not isinstance(kind, str) or not kind or not isinstance(payload, dict):
        raise ValueError("the Razorpay event has no event name or payload")

    def entity(name: str) -> dict[str, Any]:
        wrapper = payload.get(name)
        found = wrapper.get("entity") if isinstance(wrapper, dict) else None
        return found if isinstance(found, dict) else {}

    payment, order, link, refund = (
        entity("payment"),
        entity("order"),
        entity("payment_link"),
        entity("refund"),
    )
    payment_notes = payment.get("notes")
    payment_notes = payment_notes if isinstance(payment_notes, dict) else {}

    amount: Decimal | None = None
    for source, what in ((refund, "refund"), (payment, "payment"), (link, "payment link")):
        if source and source.get("amount") is not None:
            amount = from_paise(source["amount"], f"{what} amount")
            break
    error = None
    if payment.get("status") == "failed" or kind == "payment.failed":
        error = _opt(payment.get("error_description")) or "the payment failed"

    return GatewayEvent(
        event_id=event_id.strip(),
        kind=kind,
        payment_id=_opt(payment.get("id")) or _opt(refund.get("payment_id")),
        order_id=_opt(payment.get("order_id"))
        or _opt(order.get("id"))
        or _opt(link.get("order_id")),
        link_id=_opt(link.get("id")),
        refund_id=_opt(refund.get("id")),
        reference_id=_opt(link.get("reference_id")) or _opt(payment_notes.get(REFERENCE_NOTE)),
        amount=amount,
        method=_opt(payment.get("method")),
        error=error,
        raw=body,
    )


def _opt(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
