"""A stand-in for the ABDM gateway (HIE-CM v3), for the gateway client's tests.

It checks what the real gateway checks of every call: a UUID ``REQUEST-ID`` never seen
before, a ``TIMESTAMP`` in UTC with milliseconds and a Z, an ``X-CM-ID``, and (for all but
the sessions call) a bearer token it issued that has neither expired nor been revoked.

* ``POST /api/hiecm/gateway/v3/sessions`` (and ``/gateway/v0.5/sessions``): the right
  ``clientId``/``clientSecret`` get ``{"accessToken", "expiresIn", "refreshExpiresIn",
  "refreshToken", "tokenType": "bearer"}``; tokens die after ``token_ttl`` seconds (real
  time on the fake's side). Wrong credentials get 401; NHA's specification records no error
  code for the sessions module, so the body here is a stand-in in the gateway's shape.
* Any other path records the call (``received``) and answers 202 with no body, the way
  the gateway accepts an asynchronous request; ``answer_next`` scripts other answers.
* ``error_answer(shape, ...)`` builds a refusal in each shape ABDM services are known to
  use, for ``answer_next``.

It does not speak the real header checks' error codes for certain beyond the names in the
HIE-CM v3 error list (ABDM-1016 Invalid TimeStamp, ABDM-1030 Invalid request ID, ABDM-1032
Invalid header, ABDM-1064 request id already exists); their statuses are guesses (400).

Callbacks, the gateway's side of them:

* ``GET /api/hiecm/gateway/v3/certs`` (token required, as on the sandbox) and
  ``GET /gateway/v0.5/certs`` (public) answer the JWKS of the fake's signing keys: RSA,
  ``alg: RS256``, ``use: sig``, a ``kid`` each. ``rotate_key()`` publishes a new key and signs
  with it from then on (the old one stays published unless told otherwise).
* ``mint_token()`` signs a callback bearer with the claims a captured sandbox callback
  carried (``iss`` = ``<fake url>/auth/realms/central-registry``, ``azp``/``clientId`` =
  ``gateway``, ``aud`` = ``account``, ``exp``, ``iat``, ``realm_access.roles``...);
  ``forged_token(kind)`` makes the ones a bridge must refuse (``FORGERIES``).
* ``prepare_callback()`` fixes a callback's headers (fresh REQUEST-ID, TIMESTAMP, X-HIP-ID,
  X-CM-ID, the bearer) when it is made; ``send()`` POSTs it to the bridge whenever asked,
  so a callback prepared early and sent late is a late one, and sending in another order
  than preparing is out of order. ``resend()`` delivers the same REQUEST-ID again, as the
  gateway does when it retries.

The ABHA v3 profile login (served under any prefix, e.g. ``/abha/api``): ``GET
.../v3/profile/public/certificate`` answers the fake's RSA key as base64 DER; ``POST
.../v3/profile/login/request/otp`` and ``.../v3/profile/login/verify`` really decrypt
``loginId`` and ``otpValue`` with RSA-OAEP (SHA-1, MGF1-SHA-1), so a client with another
padding fails here as it does on the sandbox. The OTP is always ``TEST_OTP``; a wrong or
expired one gets the sandbox's 200 ``authResult: failed`` answer (UIDAI's 422 ABDM-1204 on
the Aadhaar scope). Bodies whose real shape nobody has published (an unknown txnId, an
undecryptable OTP) are stand-ins in the service's usual shapes and say so below.

HIP-initiated linking: ``generate-token`` is accepted (202) and counted per ABHA address;
an address asked for more than ``token_ask_limit`` times within a day is blocked for 24
hours (429, ABDM-1022), as ABDM documents it blocks a client that keeps asking. The token
itself comes by callback: ``issue_link_token(address)`` makes one the fake then accepts
in ``link/carecontext``'s ``X-LINK-TOKEN``; any other token there gets 400 "Invalid
X-LINK-TOKEN" (the real code and status for a bad link token are not published: a
stand-in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SESSIONS_PATHS = ("/api/hiecm/gateway/v3/sessions", "/gateway/v0.5/sessions")
TIMESTAMP_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
V3_CERTS_PATH = "/api/hiecm/gateway/v3/certs"
V05_CERTS_PATH = "/gateway/v0.5/certs"
PUBLIC_PATHS = (V05_CERTS_PATH,)  # answered without a token, like the real v0.5 set
REALM_PATH = "/auth/realms/central-registry"

ABHA_PREFIX = "/abha/api"  # the sandbox's, for AbhaClient(abha_url=fake.url + ABHA_PREFIX)
CERTIFICATE_SUFFIX = "/v3/profile/public/certificate"
REQUEST_OTP_SUFFIX = "/v3/profile/login/request/otp"
VERIFY_OTP_SUFFIX = "/v3/profile/login/verify"
GENERATE_TOKEN_PATH = "/api/hiecm/v3/token/generate-token"
LINK_CARECONTEXT_PATH = "/api/hiecm/hip/v3/link/carecontext"
TOKEN_BLOCK_SECONDS = 24 * 3600
ENCRYPTION_ALGORITHM = "RSA/ECB/OAEPWithSHA-1AndMGF1Padding"
TEST_OTP = "123456"
# The sandbox's words for a wrong (or expired) ABDM OTP, answered with HTTP 200.
WRONG_OTP_MESSAGE = "Please enter a valid OTP. Entered OTP is either expired or incorrect."
UIDAI_WRONG_OTP = "UIDAI Error code : 400 : Invalid Aadhaar OTP value."
SCOPES = {"mobile-verify": "abdm", "aadhaar-verify": "aadhaar"}  # scope -> its otpSystem
DASHED_ABHA = re.compile(r"^\d{2}-\d{4}-\d{4}-\d{4}$")

# What forged_token() can make; each one a bridge must refuse.
FORGERIES = (
    "wrong-key",  # signed by a key the gateway never published, under a published kid
    "alg-none",  # unsigned, "alg": "none"
    "hs256",  # HMAC-SHA256 keyed with the gateway's public key (the alg confusion attack)
    "expired",
    "not-yet-valid",  # nbf an hour ahead
    "unknown-kid",  # a kid no published key has (signed by an unpublished key)
    "tampered",  # claims changed after signing
)

_KEYS: dict[str, rsa.RSAPrivateKey] = {}
_KEYS_LOCK = threading.Lock()


def cached_key(name: str) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key per name, made once per process: key generation is the slow part."""
    with _KEYS_LOCK:
        if name not in _KEYS:
            _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _KEYS[name]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _json_part(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def sign_rs256(header: Mapping[str, Any], claims: Mapping[str, Any], key: rsa.RSAPrivateKey) -> str:
    signing_input = f"{_json_part(header)}.{_json_part(claims)}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def sign_hs256(header: Mapping[str, Any], claims: Mapping[str, Any], secret: bytes) -> str:
    signing_input = f"{_json_part(header)}.{_json_part(claims)}"
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def public_jwk(kid: str, key: rsa.RSAPrivateKey, alg: str = "RS256") -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": alg,
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
    }


def stamp(moment: datetime | None = None) -> str:
    """A TIMESTAMP as the gateway writes it: UTC, milliseconds, a Z."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def luhn_complete(first_13: str) -> str:
    """The 14-digit ABHA number whose check digit completes ``first_13`` (Luhn)."""
    for check in "0123456789":
        digits = first_13 + check
        total = 0
        for position, char in enumerate(reversed(digits)):
            value = int(char) * (2 if position % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def dashed(digits: str) -> str:
    return f"{digits[:2]}-{digits[2:6]}-{digits[6:10]}-{digits[10:]}"


TEST_ABHA = luhn_complete("9112345678901")  # the account the fake knows by default


@dataclass
class Arrival:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(body).encode(), "application/json", headers or {})


def error_answer(
    shape: str,
    status: int,
    code: str | int,
    message: str,
    *,
    retry_after: str | None = None,
) -> Answer:
    """A refusal in one of the shapes ABDM services send (see ``ERROR_SHAPES``)."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if shape == "text":
        return Answer(status, f"{code}: {message}".encode(), "text/plain", headers)
    if shape == "empty":
        return Answer(status, b"", "application/json", headers)
    return json_answer(status, ERROR_SHAPES[shape](code, message), headers)


# name -> body; where each is seen: the gateway's {"error": {...}} (HIE-CM v3 and v0.5,
# where the code can be a number); ABHA v3's bare {"code", "message"}; a list of errors;
# the legacy ABHA shape with the real code under "details"; a code with a trailing
# separator ("ABDM-1001: ", NHA's integrator notes); Spring's default error page.
ERROR_SHAPES: dict[str, Callable[[Any, str], Any]] = {
    "nested": lambda code, message: {"error": {"code": code, "message": message}},
    "flat": lambda code, message: {"code": code, "message": message},
    "errors-list": lambda code, message: {"errors": [{"code": code, "message": message}]},
    "details": lambda code, message: {
        "code": "HIS-400",
        "message": "Request failed",
        "details": [{"code": code, "message": message, "attribute": None}],
    },
    "separator": lambda code, message: {"error": {"code": f"{code}: ", "message": message}},
    "numeric": lambda code, message: {"error": {"code": int(code), "message": message}},
}


@dataclass
class Callback:
    """One callback as the gateway made it: its headers are fixed when it is prepared."""

    url: str
    body: Any
    headers: dict[str, str]

    @property
    def request_id(self) -> str:
        return self.headers["REQUEST-ID"]


@dataclass
class Delivery:
    callback: Callback
    status: int
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class AbhaTxn:
    abha_number: str  # 14 digits
    scope: str  # mobile-verify or aadhaar-verify
    started: float = field(default_factory=time.monotonic)
    used: bool = False
    expired: bool = False  # forced by expire_abha_txns()
    attempts: int = 0


class FakeAbdmGateway:
    def __init__(
        self,
        *,
        client_id: str = "SBX_0000",
        client_secret: str = "sandbox-secret",  # noqa: S107 (a fake's own credential)
        token_ttl: float = 1200.0,
        abha_txn_ttl: float = 600.0,
        hip_id: str = "IN2810000001",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.delay = 0.0  # seconds every call waits before it is answered (a hung gateway)
        self.received: list[Arrival] = []
        self.sessions: list[Arrival] = []
        self.refused: list[tuple[Arrival, Answer]] = []
        self.lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> when it dies (monotonic)
        self._request_ids: set[str] = set()
        self._script: list[Answer] = []
        # Callbacks: signing keys (made on first use), newest last; the last one signs.
        self.hip_id = hip_id
        self._signers: list[tuple[str, rsa.RSAPrivateKey]] = []
        self._generation = 0
        self.delivered: list[Delivery] = []
        # ABHA: accounts by their 14 digits, transactions by txnId, and every plaintext the
        # fake decrypted (so a test can see what the client really sent).
        self.abha_otp = TEST_OTP
        self.abha_txn_ttl = abha_txn_ttl
        self.abha_accounts: dict[str, dict[str, Any]] = {}
        self.abha_txns: dict[str, AbhaTxn] = {}
        self.abha_plaintexts: list[str] = []
        self.add_abha_account(TEST_ABHA)
        # Linking: when each ABHA address asked for a link token, and the tokens issued.
        self.token_ask_limit = 3
        self.token_asks: dict[str, list[float]] = {}  # "<X-HIP-ID>/<address>" -> times
        self.link_tokens: dict[str, str] = {}  # token -> the ABHA address it is for
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def start(self) -> FakeAbdmGateway:
        # shutdown() waits for the loop's next poll: the default half second, per test.
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeAbdmGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def answer_next(self, answer: Answer, *, times: int = 1) -> None:
        """The next ``times`` authorised calls (not sessions calls) get ``answer``."""
        with self.lock:
            self._script.extend([answer] * times)

    def accept_tokens_of(self, issuer: FakeAbdmGateway) -> None:
        """Take the tokens ``issuer`` hands out as this server's own (one ABDM session
        serves several hosts: the gateway issues it, the ABHA service accepts it)."""
        self._tokens = issuer._tokens

    def revoke_tokens(self) -> None:
        """Every token issued so far is now refused with 401 (a session ended early)."""
        with self.lock:
            self._tokens.clear()

    # ------------------------------------------------------------------ signing keys

    @property
    def issuer(self) -> str:
        return self.url + REALM_PATH

    @property
    def active_kid(self) -> str:
        return self._published()[-1][0]

    def _published(self) -> list[tuple[str, rsa.RSAPrivateKey]]:
        with self.lock:
            if not self._signers:
                self._add_signer()
            return list(self._signers)

    def _add_signer(self) -> str:
        self._generation += 1
        kid = f"fake-gateway-{self._generation}"
        self._signers.append((kid, cached_key(f"gateway-{self._generation}")))
        return kid

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Publish a new signing key and sign with it from now on; its kid."""
        self._published()
        with self.lock:
            kid = self._add_signer()
            if not keep_old:
                self._signers = self._signers[-1:]
            return kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(kid, key) for kid, key in self._published()]}

    def gateway_claims(
        self, *, lifetime: float = 1200.0, issued_at: float | None = None
    ) -> dict[str, Any]:
        """The claims of a genuine callback bearer (as captured on the sandbox, and as
        ProjectEKA's verifier requires: sub, iat, exp, scope, clientId, realm_access)."""
        iat = time.time() if issued_at is None else issued_at
        return {
            "exp": int(iat + lifetime),
            "iat": int(iat),
            "jti": str(uuid.uuid4()),
            "iss": self.issuer,
            "aud": "account",
            "sub": str(uuid.uuid4()),
            "typ": "Bearer",
            "azp": "gateway",
            "clientId": "gateway",
            "scope": "openid",
            "realm_access": {"roles": ["gateway"]},
        }

    def mint_token(
        self,
        *,
        claims: Mapping[str, Any] | None = None,
        drop: Iterable[str] = (),
        lifetime: float = 1200.0,
        issued_at: float | None = None,
        kid: str | None = "",
        key: rsa.RSAPrivateKey | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """A bearer signed RS256 by the active key; ``claims`` override, ``drop`` removes.

        ``kid`` "" means the active key's kid, None leaves the kid out; ``key`` signs with
        another key (a forger's); ``header`` overrides header members.
        """
        published = self._published()
        signer_kid, signer = published[-1]
        body = {**self.gateway_claims(lifetime=lifetime, issued_at=issued_at), **(claims or {})}
        for name in drop:
            body.pop(name, None)
        head: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
        if kid == "":
            head["kid"] = signer_kid
        elif kid is not None:
            head["kid"] = kid
        head.update(header or {})
        return sign_rs256(head, body, key or signer)

    def forged_token(self, kind: str) -> str:
        """A token a bridge must refuse; ``kind`` is one of ``FORGERIES``."""
        if kind == "wrong-key":
            return self.mint_token(key=cached_key("forger"))
        if kind == "alg-none":
            head = {"alg": "none", "typ": "JWT", "kid": self.active_kid}
            return f"{_json_part(head)}.{_json_part(self.gateway_claims())}."
        if kind == "hs256":
            kid, key = self._published()[-1]
            pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return sign_hs256(
                {"alg": "HS256", "typ": "JWT", "kid": kid}, self.gateway_claims(), pem
            )
        if kind == "expired":
            return self.mint_token(issued_at=time.time() - 7200, lifetime=1200)
        if kind == "not-yet-valid":
            return self.mint_token(claims={"nbf": int(time.time()) + 3600})
        if kind == "unknown-kid":
            return self.mint_token(kid="not-" + self.active_kid, key=cached_key("forger"))
        if kind == "tampered":
            header, _, signature = self.mint_token().split(".")
            claims = {**self.gateway_claims(), "azp": "gateway", "sub": "someone-else"}
            return f"{header}.{_json_part(claims)}.{signature}"
        raise ValueError(f"no forgery called {kind!r}; choose from {FORGERIES}")

    # ------------------------------------------------------------------ callbacks out

    def prepare_callback(
        self,
        url: str,
        body: Any,
        *,
        hip_id: str | None = "",
        request_id: str | None = None,
        at: datetime | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Callback:
        """A callback to ``url`` with its headers fixed now (``at`` for another TIMESTAMP).

        ``hip_id`` "" means the fake's own HIP id, None leaves X-HIP-ID out.
        """
        made = {
            "content-type": "application/json",
            "REQUEST-ID": request_id or str(uuid.uuid4()),
            "TIMESTAMP": stamp(at),
            "X-CM-ID": "sbx",
            "Authorization": f"Bearer {token or self.mint_token()}",
        }
        if hip_id is not None:
            made["X-HIP-ID"] = hip_id or self.hip_id
        made.update(headers or {})
        return Callback(url, body, made)

    def send(self, callback: Callback, *, timeout: float = 5.0) -> Delivery:
        response = httpx.post(
            callback.url,
            content=json.dumps(callback.body).encode(),
            headers=callback.headers,
            timeout=timeout,
        )
        delivery = Delivery(callback, response.status_code, response.content)
        with self.lock:
            self.delivered.append(delivery)
        return delivery

    def deliver(self, url: str, body: Any, **options: Any) -> Delivery:
        """Prepare and send at once: the ordinary, timely callback."""
        return self.send(self.prepare_callback(url, body, **options))

    def resend(self, sent: Callback | Delivery) -> Delivery:
        """The same callback again (same REQUEST-ID and headers): the gateway's retry."""
        return self.send(sent.callback if isinstance(sent, Delivery) else sent)

    def send_in_order(
        self, callbacks: Sequence[Callback], order: Sequence[int] | None = None
    ) -> list[Delivery]:
        """Send ``callbacks`` in ``order`` (indexes; default: as given), e.g. ``[1, 0]``."""
        picks = range(len(callbacks)) if order is None else order
        return [self.send(callbacks[i]) for i in picks]

    # ------------------------------------------------------------------ ABHA accounts

    def add_abha_account(self, abha_number: str, **fields: Any) -> dict[str, Any]:
        """An account the login can find, by its 14 digits; ``fields`` override the rest."""
        account = {
            "ABHANumber": dashed(abha_number),
            "preferredAbhaAddress": "asha.verma@sbx",
            "name": "Asha Verma",
            "gender": "F",
            "dob": "14-08-1990",
            "verifiedStatus": "VERIFIED",
            "verificationType": "AADHAAR",
            "status": "ACTIVE",
            "profilePhoto": None,
            "kycVerified": True,
            "mobileVerified": True,
            **fields,
        }
        with self.lock:
            self.abha_accounts[abha_number] = account
        return account

    def expire_abha_txns(self) -> None:
        """Every OTP transaction so far is now past its time."""
        with self.lock:
            for txn in self.abha_txns.values():
                txn.expired = True

    @property
    def abha_key(self) -> rsa.RSAPrivateKey:
        return cached_key("abha")

    # ------------------------------------------------------------------ handling

    def handle(self, arrival: Arrival) -> Answer:
        if _bare(arrival.path) in PUBLIC_PATHS:  # no headers, no token: anyone may read it
            with self.lock:
                self.received.append(arrival)
            return self._serve_builtin(arrival) or Answer(404)
        refused = self._check_headers(arrival)
        if refused is None and arrival.path in SESSIONS_PATHS:
            return self._session(arrival)
        if refused is None:
            refused = self._check_token(arrival)
        if refused is not None:
            with self.lock:
                self.refused.append((arrival, refused))
            return refused
        with self.lock:
            self._request_ids.add(arrival.headers["request-id"])
            self.received.append(arrival)
            scripted = self._script.pop(0) if self._script else None
        return scripted or self._serve_builtin(arrival) or Answer(202)

    def _check_headers(self, arrival: Arrival) -> Answer | None:
        request_id = arrival.headers.get("request-id", "")
        try:
            uuid.UUID(request_id)
        except ValueError:
            return _refusal(400, "ABDM-1030", "Invalid request ID")
        with self.lock:
            if request_id in self._request_ids:
                return _refusal(400, "ABDM-1064", "request with this request id already exists")
        if not TIMESTAMP_FORM.match(arrival.headers.get("timestamp", "")):
            return _refusal(400, "ABDM-1016", "Invalid TimeStamp")
        if not arrival.headers.get("x-cm-id"):
            return _refusal(400, "ABDM-1032", "Invalid header")
        return None

    def _check_token(self, arrival: Arrival) -> Answer | None:
        scheme, _, token = arrival.headers.get("authorization", "").partition(" ")
        with self.lock:
            dies = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if dies is None or time.monotonic() >= dies:
            return _refusal(401, "ABDM-1066", "Invalid JWT token")
        return None

    def _session(self, arrival: Arrival) -> Answer:
        body = arrival.body if isinstance(arrival.body, dict) else {}
        with self.lock:
            self.sessions.append(arrival)
            self._request_ids.add(arrival.headers["request-id"])
        if (body.get("clientId"), body.get("clientSecret")) != (
            self.client_id,
            self.client_secret,
        ):
            return _refusal(401, "ABDM-1023", "Invalid client credentials")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
        return json_answer(
            200,
            {
                "accessToken": token,
                "expiresIn": self.token_ttl,
                "refreshExpiresIn": self.token_ttl * 2,
                "refreshToken": secrets.token_urlsafe(24),
                "tokenType": "bearer",
            },
        )

    # ------------------------------------------------------------------ built-in answers

    def _serve_builtin(self, arrival: Arrival) -> Answer | None:
        path = _bare(arrival.path)
        if arrival.method == "GET" and path in (V3_CERTS_PATH, V05_CERTS_PATH):
            return json_answer(200, self.jwks())
        if arrival.method == "GET" and path.endswith(CERTIFICATE_SUFFIX):
            return self._abha_certificate()
        body = arrival.body if isinstance(arrival.body, dict) else {}
        if arrival.method == "POST" and path.endswith(REQUEST_OTP_SUFFIX):
            return self._abha_request_otp(body)
        if arrival.method == "POST" and path.endswith(VERIFY_OTP_SUFFIX):
            return self._abha_verify(body)
        if arrival.method == "POST" and path == GENERATE_TOKEN_PATH:
            return self._generate_token(arrival.headers.get("x-hip-id", ""), body)
        if arrival.method == "POST" and path == LINK_CARECONTEXT_PATH:
            return self._link_carecontext(arrival, body)
        return None

    # ------------------------------------------------------------------ linking

    def issue_link_token(self, abha_address: str) -> str:
        """A link token for ``abha_address``, as on-generate-token would carry it."""
        token = "lt." + secrets.token_urlsafe(32)
        with self.lock:
            self.link_tokens[token] = abha_address
        return token

    def _generate_token(self, hip_id: str, body: dict[str, Any]) -> Answer:
        """Counted per facility and ABHA address: one facility's asking blocks it alone."""
        address = str(body.get("abhaAddress", ""))
        key = f"{hip_id}/{address}"
        now = time.monotonic()
        with self.lock:
            asks = [t for t in self.token_asks.get(key, []) if now - t < TOKEN_BLOCK_SECONDS]
            asks.append(now)
            self.token_asks[key] = asks
        if len(asks) > self.token_ask_limit:
            return _refusal(429, "ABDM-1022", "Too many requests: blocked for 24 hours")
        return Answer(202)

    def _link_carecontext(self, arrival: Arrival, body: dict[str, Any]) -> Answer:
        token = arrival.headers.get("x-link-token", "")
        with self.lock:
            address = self.link_tokens.get(token)
        if address is None or address != body.get("abhaAddress"):
            return _refusal(400, "ABDM-1094", "Invalid X-LINK-TOKEN")
        return Answer(202)

    def _abha_certificate(self) -> Answer:
        der = self.abha_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return json_answer(
            200,
            {
                "publicKey": base64.b64encode(der).decode("ascii"),
                "encryptionAlgorithm": ENCRYPTION_ALGORITHM,
            },
        )

    def _decrypt(self, value: Any) -> str | None:
        """The plaintext, if ``value`` is base64 RSA-OAEP (SHA-1, MGF1-SHA-1) for our key."""
        if not isinstance(value, str):
            return None
        try:
            raw = self.abha_key.decrypt(
                base64.b64decode(value, validate=True),
                padding.OAEP(
                    mgf=padding.MGF1(hashes.SHA1()),  # noqa: S303 (ABDM's scheme)
                    algorithm=hashes.SHA1(),  # noqa: S303
                    label=None,
                ),
            )
            text = raw.decode("utf-8")
        except ValueError:
            return None
        with self.lock:
            self.abha_plaintexts.append(text)
        return text

    def _abha_request_otp(self, body: dict[str, Any]) -> Answer:
        scope = _login_scope(body.get("scope"))
        if scope is None or body.get("otpSystem") != SCOPES[scope]:
            return _refusal(400, "ABDM-1107", "Invalid combinations of scopes")
        if body.get("loginHint") != "abha-number":
            # The array shape, with the code's trailing separator, as the sandbox sends it.
            return json_answer(400, [{"code": "ABDM-9999: ", "message": "Invalid Login Hint"}])
        login_id = self._decrypt(body.get("loginId"))
        if login_id is None:  # wrong padding or wrong key: the sandbox's answer
            return json_answer(400, {"loginId": "Invalid LoginId", "timestamp": _now_text()})
        if not DASHED_ABHA.match(login_id):  # bare digits, say: also the sandbox's answer
            return json_answer(400, {"loginId": "LoginId is invalid", "timestamp": _now_text()})
        digits = login_id.replace("-", "")
        with self.lock:
            known = digits in self.abha_accounts
        if not known:
            return _refusal(404, "ABDM-1114", "User not found.")
        txn_id = str(uuid.uuid4())
        with self.lock:
            self.abha_txns[txn_id] = AbhaTxn(digits, scope)
        return json_answer(
            200,
            {"txnId": txn_id, "message": "OTP is sent to Mobile number ending with ******7890"},
        )

    def _abha_verify(self, body: dict[str, Any]) -> Answer:
        scope = _login_scope(body.get("scope"))
        auth = _object(body.get("authData"))
        otp = _object(auth.get("otp"))
        if scope is None or auth.get("authMethods") != ["otp"]:
            return _refusal(400, "ABDM-1107", "Invalid combinations of scopes")
        txn_id = otp.get("txnId")
        with self.lock:
            txn = self.abha_txns.get(txn_id) if isinstance(txn_id, str) else None
        if txn is None or txn.scope != scope:
            # A stand-in: the code is the M1 list's, the status and shape a guess.
            return _refusal(400, "ABDM-1017", "Invalid Transaction Id")
        value = self._decrypt(otp.get("otpValue"))
        if value is None:  # a stand-in too: no one has published this refusal
            return json_answer(400, {"otpValue": "Invalid OTP value", "timestamp": _now_text()})
        with self.lock:
            txn.attempts += 1
            late = txn.expired or time.monotonic() - txn.started >= self.abha_txn_ttl
            good = value == self.abha_otp and not late and not txn.used
            if good:
                txn.used = True
            account = dict(self.abha_accounts[txn.abha_number])
        if not good and scope == "aadhaar-verify":
            return _refusal(422, "ABDM-1204", UIDAI_WRONG_OTP)
        if not good:
            return json_answer(
                200,
                {
                    "txnId": txn_id,
                    "authResult": "failed",
                    "message": WRONG_OTP_MESSAGE,
                    "accounts": [],
                },
            )
        answer: dict[str, Any] = {
            "txnId": txn_id,
            "authResult": "success",
            "message": "OTP verified successfully",
            "token": secrets.token_urlsafe(32),
            "expiresIn": 300,  # a transfer token after the ABDM OTP
            "accounts": [account],
        }
        if scope == "aadhaar-verify":  # the final token, with its refresh token
            answer.update(expiresIn=1800, refreshToken=secrets.token_urlsafe(32))
            answer["refreshExpiresIn"] = 1296000
        return json_answer(200, answer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, each call costs 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def do_PATCH(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                arrival = Arrival(self.command, self.path, headers, body)
                if fake.delay:
                    time.sleep(fake.delay)
                self._answer(fake.handle(arrival))

            def _answer(self, answer: Answer) -> None:
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(answer.body)))
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(answer.body)

        return Handler


def _refusal(status: int, code: str, message: str) -> Answer:
    return json_answer(status, {"error": {"code": code, "message": message}})


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bare(path: str) -> str:
    return path.split("?", 1)[0]


def _login_scope(scope: Any) -> str | None:
    """mobile-verify or aadhaar-verify, from a login scope list; None if it is not one."""
    if not isinstance(scope, list) or len(scope) != 2 or scope[0] != "abha-login":
        return None
    return scope[1] if scope[1] in SCOPES else None


def _now_text() -> str:
    # The ABHA service's field-keyed errors carry a "yyyy-MM-dd HH:mm:ss" time beside them.
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
