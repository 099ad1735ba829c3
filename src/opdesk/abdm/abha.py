"""Verify a patient's ABHA number with an OTP: the ABHA v3 profile login (M1, a subset).

The flow, as NHA documents it (nha-in/docs ``catalogue/hiecm/endpoints/
m1-get-public-certificate.md``, ``m1-login-request-otp.md``, ``m1-login-verify.md``):

1. ``GET {abha}/v3/profile/public/certificate`` answers ``{"publicKey": "<base64 DER
   SubjectPublicKeyInfo, RSA-4096, no PEM armour>"}``, some answers adding
   ``"encryptionAlgorithm": "RSA/ECB/OAEPWithSHA-1AndMGF1Padding"``.
2. ``POST {abha}/v3/profile/login/request/otp`` with ``scope: ["abha-login",
   "mobile-verify"]`` (OTP to the mobile on the account, ``otpSystem: "abdm"``) or
   ``["abha-login", "aadhaar-verify"]`` (OTP from UIDAI, ``otpSystem: "aadhaar"``),
   ``loginHint: "abha-number"`` and ``loginId``: the ABHA number *with its dashes*
   (``91-1234-5678-9015``; the 14 bare digits are refused with ``400 {"loginId": "LoginId is
   invalid"}``), encrypted. Answers ``{"txnId", "message"}``.
3. ``POST {abha}/v3/profile/login/verify`` with the same scope and ``authData:
   {"authMethods": ["otp"], "otp": {"txnId", "otpValue": <the OTP, encrypted>}}``. Answers
   ``{"txnId", "authResult": "success", "message", "token", "expiresIn", "accounts": [...]}``,
   each account with ``ABHANumber``, ``preferredAbhaAddress``, ``name``, ``gender``, ``dob``
   (``DD-MM-YYYY``), ``status``, ``kycVerified``, ``mobileVerified``...

Every call carries the gateway session token (``Authorization: Bearer``) and the usual
``REQUEST-ID``/``TIMESTAMP``; the sandbox host is ``https://abhasbx.abdm.gov.in/abha/api``.

The encryption is Java's ``RSA/ECB/OAEPWithSHA-1AndMGF1Padding``: OAEP with SHA-1 as the
digest *and* MGF1 over SHA-1 (Java's ``OAEPParameterSpec.DEFAULT``), no label, then base64.
NHA's page says so ("SHA-1 for both the digest and the mask generation function"), and
integrators probing the sandbox found that PKCS#1 v1.5 and OAEP-SHA-256 are both refused
with ``400 {"loginId": "Invalid LoginId"}`` while OAEP-SHA-1 gets through.

A wrong OTP is not an HTTP error: with the ABDM OTP the sandbox answers **200** with
``"authResult": "failed"`` and ``"message": "Please enter a valid OTP. Entered OTP is either
expired or incorrect."`` (observed by integrators; no code is given, and a wrong and an
expired OTP read the same). With the Aadhaar OTP, UIDAI's refusal comes back as ``422
{"error": {"code": "ABDM-1204", "message": "UIDAI Error code : 400 : Invalid Aadhaar OTP
value."}}``. Both become ``OtpRejected`` here, a ``GatewayError``.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from opdesk.abdm.gateway import GatewayClient, GatewayError, GatewayResponse
from opdesk.patients.schemas import abha_digits
from opdesk.validation import ascii_digits

ABHA_SANDBOX_URL = "https://abhasbx.abdm.gov.in/abha/api"
CERTIFICATE_PATH = "/v3/profile/public/certificate"
REQUEST_OTP_PATH = "/v3/profile/login/request/otp"
VERIFY_OTP_PATH = "/v3/profile/login/verify"

ENCRYPTION_ALGORITHM = "RSA/ECB/OAEPWithSHA-1AndMGF1Padding"
MIN_KEY_BITS = 2048

OtpSystem = Literal["abdm", "aadhaar"]
# The scope names which system sends the OTP; otpSystem must agree with it.
SCOPES: dict[str, list[str]] = {
    "abdm": ["abha-login", "mobile-verify"],
    "aadhaar": ["abha-login", "aadhaar-verify"],
}
UIDAI_FAILURE = "ABDM-1204"  # UIDAI's own refusal, its code and text inside the message
TOO_MANY_OTPS = "ABDM-1100"  # "requested multiple OTPs or exceeded maximum attempts"
_OTP = re.compile(r"^[0-9]{6}$")  # ASCII: \d would take other scripts' digits
_UIDAI_OTP = re.compile(r"\bOTP\b", re.IGNORECASE)
_MASKED = frozenset("Xx*")


class OtpRejected(GatewayError):
    """The OTP was wrong, or expired: ask the patient again or send a new one."""


def oaep_sha1() -> padding.OAEP:
    """Java's OAEPWithSHA-1AndMGF1Padding: SHA-1 digest, MGF1 over SHA-1, empty label."""
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303


def load_public_key(value: str | bytes | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """ABDM's key as it is published: base64 DER (no armour), PEM, or an X.509 certificate."""
    if isinstance(value, rsa.RSAPublicKey):
        key: object = value
    else:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        text = text.strip()
        try:
            if "-----BEGIN CERTIFICATE" in text:
                key = x509.load_pem_x509_certificate(text.encode()).public_key()
            elif "-----BEGIN" in text:
                key = serialization.load_pem_public_key(text.encode())
            else:
                der = base64.b64decode("".join(text.split()), validate=True)
                try:
                    key = serialization.load_der_public_key(der)
                except ValueError:
                    key = x509.load_der_x509_certificate(der).public_key()
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"not an RSA public key ABDM would publish: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("ABDM's encryption key must be an RSA key")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"an RSA key of {key.key_size} bits is too small")
    return key


def encrypt_for_abha(public_key: str | bytes | rsa.RSAPublicKey, text: str) -> str:
    """``text`` encrypted the way the ABHA service decrypts it, as base64."""
    key = load_public_key(public_key)
    return base64.b64encode(key.encrypt(text.encode("utf-8"), oaep_sha1())).decode("ascii")


def dashed(digits: str) -> str:
    """``91123456789015`` -> ``91-1234-5678-9015``: the form the login call decrypts."""
    return f"{digits[:2]}-{digits[2:6]}-{digits[6:10]}-{digits[10:]}"


@dataclass(frozen=True)
class VerifiedAbha:
    """The account the OTP proved; strings as ABDM sent them, the number as 14 digits."""

    abha_number: str | None  # None only if ABDM masked it and we were not told which it is
    abha_addresses: tuple[str, ...]
    name: str
    gender: str | None
    dob: date | None
    year_of_birth: int | None
    mobile: str | None
    kyc_verified: bool | None
    token: str | None = field(default=None, repr=False)  # X-token or T-token; see the docs
    token_expires_in: float | None = None

    @property
    def abha_address(self) -> str | None:
        return self.abha_addresses[0] if self.abha_addresses else None


class AbhaClient:
    """The ABHA v3 profile login, over the HIP's gateway session.

    ``gateway`` supplies the session token. The ABHA service lives on its own host
    (``abha_url``); pass None when it is served under the gateway's own base URL (as the test
    fake does). The public key is fetched on first use and kept ``key_ttl`` seconds.
    """

    def __init__(
        self,
        gateway: GatewayClient,
        *,
        abha_url: str | None = ABHA_SANDBOX_URL,
        otp_system: OtpSystem = "abdm",
        key_ttl: float = 3600.0,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if otp_system not in SCOPES:
            raise ValueError(f"otp_system must be one of {sorted(SCOPES)}")
        self.otp_system = otp_system
        self.key_ttl = key_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._key: rsa.RSAPublicKey | None = None
        self._key_until = 0.0
        same_host = abha_url is None or abha_url.rstrip("/") == gateway.base_url
        self._calls = gateway if same_host else gateway.on_host(abha_url or "", http=http)

    def close(self) -> None:
        """Nothing of its own to close: the connections are the gateway client's."""

    def __enter__(self) -> AbhaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the key

    def public_key(self) -> rsa.RSAPublicKey:
        with self._lock:
            if self._key is None or self._clock() >= self._key_until:
                self._key = self._fetch_key()
                self._key_until = self._clock() + self.key_ttl
            return self._key

    def forget_public_key(self) -> None:
        """Fetch the key again on next use (ABDM rotated it: every value is refused)."""
        with self._lock:
            self._key = None

    def _fetch_key(self) -> rsa.RSAPublicKey:
        answer = self._calls.get(CERTIFICATE_PATH)
        body = answer.body if isinstance(answer.body, dict) else {}
        published = body.get("publicKey")
        if not isinstance(published, str) or not published.strip():
            raise GatewayError(answer.status, None, "the certificate answer has no publicKey")
        algorithm = body.get("encryptionAlgorithm")
        if algorithm is not None and algorithm != ENCRYPTION_ALGORITHM:
            # A value we do not recognise is a reason to stop, not to guess (NHA's advice).
            raise GatewayError(
                answer.status, None, f"ABDM now asks for {algorithm!r} encryption; not supported"
            )
        try:
            return load_public_key(published)
        except ValueError as exc:
            message = f"the published key is unusable: {exc}"
            raise GatewayError(answer.status, None, message) from exc

    # ------------------------------------------------------------------ the login

    def request_otp(self, abha_number: str) -> str:
        """Send a login OTP for ``abha_number``; the ``txnId`` to verify it with.

        A malformed ABHA number raises ``ValueError`` before anything is sent.
        """
        digits = abha_digits(abha_number)
        body = {
            "scope": SCOPES[self.otp_system],
            "loginHint": "abha-number",
            "loginId": encrypt_for_abha(self.public_key(), dashed(digits)),
            "otpSystem": self.otp_system,
        }
        answer = self._calls.post(REQUEST_OTP_PATH, body)
        txn_id = answer.body.get("txnId") if isinstance(answer.body, dict) else None
        if not isinstance(txn_id, str) or not txn_id:
            raise GatewayError(answer.status, None, "the OTP request answer has no txnId")
        return txn_id

    def verify_otp(self, txn_id: str, otp: str, *, abha_number: str | None = None) -> VerifiedAbha:
        """The account that ``otp`` proves, or ``OtpRejected`` (wrong or expired OTP).

        Give ``abha_number`` (the one the OTP was requested for) to pick it out when the
        answer lists several accounts, or names it masked.
        """
        otp = otp.strip()
        if not _OTP.match(otp):
            raise ValueError("enter the 6-digit OTP")
        if not txn_id or not txn_id.strip():
            raise ValueError("the txnId of the OTP request is required")
        wanted = abha_digits(abha_number) if abha_number is not None else None
        body = {
            "scope": SCOPES[self.otp_system],
            "authData": {
                "authMethods": ["otp"],
                "otp": {"txnId": txn_id, "otpValue": encrypt_for_abha(self.public_key(), otp)},
            },
        }
        try:
            answer = self._calls.post(VERIFY_OTP_PATH, body)
        except GatewayError as exc:
            if exc.code == UIDAI_FAILURE and _UIDAI_OTP.search(exc.message):
                raise OtpRejected(
                    exc.status, exc.code, exc.message, request_id=exc.request_id
                ) from exc
            raise
        return _verified(answer, wanted)


def _verified(answer: GatewayResponse, wanted: str | None) -> VerifiedAbha:
    body = answer.body if isinstance(answer.body, dict) else {}
    result = body.get("authResult")
    if isinstance(result, str) and result.lower() != "success":
        message = body.get("message")
        raise OtpRejected(
            answer.status,
            None,
            message if isinstance(message, str) and message else f"authResult {result}",
            request_id=answer.request_id,
        )
    accounts = [a for a in _list(body.get("accounts") or body.get("users")) if isinstance(a, dict)]
    if not accounts:
        raise GatewayError(answer.status, None, "the verify answer lists no ABHA account")
    if wanted is not None:
        matching = [a for a in accounts if _same_number(a, wanted)]
        if not matching:
            raise GatewayError(
                answer.status, None, "the verified accounts do not include that ABHA number"
            )
        account = matching[0]
    elif len(accounts) == 1:
        account = accounts[0]
    else:
        raise GatewayError(
            answer.status,
            None,
            f"the OTP proves {len(accounts)} accounts; say which ABHA number is meant",
        )
    token = body.get("token")
    if token is None and isinstance(body.get("tokens"), dict):
        token = body["tokens"].get("token")
    return _account(account, wanted, token, body.get("expiresIn"))


def _account(
    account: Mapping[str, Any], wanted: str | None, token: Any, expires_in: Any
) -> VerifiedAbha:
    shown = _number_of(account)
    number = shown if shown is not None and ascii_digits(shown) else wanted
    addresses = _addresses(account)
    dob, year = _birth(account)
    kyc = account.get("kycVerified")
    return VerifiedAbha(
        abha_number=number,
        abha_addresses=addresses,
        name=_name(account),
        gender=_text(account.get("gender")),
        dob=dob,
        year_of_birth=year,
        mobile=_text(account.get("mobile")),
        kyc_verified=kyc if isinstance(kyc, bool) else None,
        token=token if isinstance(token, str) and token else None,
        token_expires_in=float(expires_in) if isinstance(expires_in, int | float) else None,
    )


def _number_of(account: Mapping[str, Any]) -> str | None:
    for key in ("ABHANumber", "abhaNumber", "healthIdNumber"):
        value = account.get(key)
        if isinstance(value, str) and value.strip():
            shown = "".join(c for c in value if c not in " -")
            return shown if len(shown) == 14 else None
    return None


def _same_number(account: Mapping[str, Any], wanted: str) -> bool:
    """Whether the account's number is ``wanted``, reading ABDM's X or * as any digit."""
    shown = _number_of(account)
    if shown is None:
        return False
    return all(s == w or s in _MASKED for s, w in zip(shown, wanted, strict=True))


def _addresses(account: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for key in ("preferredAbhaAddress", "abhaAddress", "phrAddress", "abhaAddresses"):
        value = account.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item.strip() and item.strip() not in found:
                found.append(item.strip())
    return tuple(found)


def _name(account: Mapping[str, Any]) -> str:
    name = _text(account.get("name")) or _text(account.get("fullName"))
    if name:
        return name
    parts = (_text(account.get(k)) for k in ("firstName", "middleName", "lastName"))
    return " ".join(p for p in parts if p)


def _birth(account: Mapping[str, Any]) -> tuple[date | None, int | None]:
    """``dob`` is ``DD-MM-YYYY`` on the login answer; the profile splits it in three."""
    text = _text(account.get("dob")) or _text(account.get("dateOfBirth"))
    if text:
        found = re.match(r"^(\d{1,2})[-/](\d{1,2})[-/](\d{4})$", text) or re.match(
            r"^(\d{4})-(\d{1,2})-(\d{1,2})$", text
        )
        if found:
            a, b, c = (int(g) for g in found.groups())
            day, month, year = (a, b, c) if c > 31 else (c, b, a)
            try:
                return date(year, month, day), year
            except ValueError:
                return None, year
    born = _int(account.get("yearOfBirth"))
    in_month, on_day = _int(account.get("monthOfBirth")), _int(account.get("dayOfBirth"))
    if born and in_month and on_day:
        try:
            return date(born, in_month, on_day), born
        except ValueError:
            pass
    return None, born


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and ascii_digits(value.strip()):
        return int(value.strip())
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()
