"""Is this inbound call really from the ABDM gateway? Checks for the HIP's bridge URL.

The gateway posts its callbacks (discovery, link, consent notify, health-information request,
the results of our own asynchronous calls) to the bridge URL with:

* ``Authorization: Bearer <JWT>``, an RS256 JWT whose header names a ``kid``. Captured
  sandbox headers read ``{"alg": "RS256", "typ": "JWT", "kid": "AlRb5W..."}``; the claims
  carry ``iss`` = ``https://dev.abdm.gov.in/auth/realms/central-registry`` (the gateway's
  Keycloak realm), ``azp`` = ``gateway``, ``aud`` = ``account``, ``exp`` and ``iat``.
  ProjectEKA's own verifier (ProjectEKA/health-information-user, ``GatewayTokenVerifier``)
  requires ``sub``, ``iat``, ``exp``, ``scope``, ``clientId`` and ``realm_access`` and reads
  the caller from ``clientId``.
* ``REQUEST-ID`` (a UUID: the key the caller deduplicates deliveries on, since the gateway
  retries), ``TIMESTAMP`` (UTC) and, on the HIP-facing M2 callbacks that NHA documents
  (discover, on-generate-token, on_carecontext, links/context/on-notify,
  patients/sms/on-notify), ``X-HIP-ID``: the facility the callback is for, which is how one
  bridge URL serves many facilities. NHA publishes no header list for link init/confirm,
  consent notify or the health-information request, so its absence is not refused here.

The keys: ``GET /api/hiecm/gateway/v3/certs`` (a JWKS; it answers 401 without the gateway
session token and the usual headers, so it is fetched through ``GatewayClient``). The older
``GET /gateway/v0.5/certs`` is public but, per NHA's integrator notes, is not the set that
signs v3 callbacks. The sandbox set holds one RS256 key and one RS512 key.

Sources: nha-in/docs ``catalogue/hiecm/concepts/callback-authenticity.md``,
``catalogue/openapi/.raw/nha-2026-09-01/hiecm/gateway.yaml`` (the certs schema),
``catalogue/annexure/integration-learnings-2026-09-16.md`` (1.5: v3 certs and RS256 bearer
observed), ``catalogue/hiecm/callbacks/*.md`` (the headers of each callback).

Why the caller check (``allowed_clients``) matters: the gateway's realm signs every session
token it hands out, our own included, with the same key and issuer. A signature and an
issuer therefore prove only "someone with ABDM credentials"; ``azp``/``clientId`` tell the
gateway's own service account apart from any other integrator's. Even so, a bearer token is
not bound to the request it rides on: whoever receives a genuine callback holds a token that
verifies until it expires. The REQUEST-ID deduplication and the TIMESTAMP window narrow,
but do not close, that gap.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from opdesk.abdm.gateway import GatewayClient, GatewayError

V3_CERTS_PATH = "/api/hiecm/gateway/v3/certs"
V05_CERTS_PATH = "/gateway/v0.5/certs"
# The realm on every genuine sandbox callback seen (see the module docstring). Production's
# is not confirmed from a captured token, so it is not guessed here.
SANDBOX_ISSUER = "https://dev.abdm.gov.in/auth/realms/central-registry"
GATEWAY_CLIENT = "gateway"  # azp / clientId of the gateway's own service account

ALGORITHM = "RS256"
MIN_KEY_BITS = 2048
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# ISO-8601 as ABDM writes it: milliseconds and a Z on our side; other senders have used more
# fraction digits or no zone at all (read as UTC, which is what ABDM says the header is).
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
_MAX_TOKEN = 16_384  # a Keycloak access token is 1-2 kB; anything far larger is refused early


class CallbackRefused(Exception):
    """The call cannot be shown to come from the gateway; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(CallbackRefused):
    """The gateway's keys could not be fetched: the call may be genuine, so answer 503."""


# ---------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Jwk:
    kid: str | None
    key: rsa.RSAPublicKey = field(repr=False)
    alg: str | None = None
    use: str | None = None

    def signs(self, algorithm: str) -> bool:
        """Whether this key may verify ``algorithm`` (a key declared for RS512 may not)."""
        return self.alg in (None, algorithm) and self.use in (None, "sig")


class KeySource(Protocol):
    def key_for(self, kid: str | None) -> Jwk: ...


@dataclass(frozen=True)
class Jwks:
    """The RSA keys of a JSON Web Key Set; other key types and unusable keys are skipped."""

    keys: tuple[Jwk, ...]
    skipped: int = 0

    @classmethod
    def parse(cls, document: Any) -> Jwks:
        if isinstance(document, bytes | str):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise ValueError("the key set is not JSON") from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError('the key set has no "keys" list')
        keys: list[Jwk] = []
        for entry in entries:
            jwk = _rsa_jwk(entry)
            if jwk is not None:
                keys.append(jwk)
        return cls(tuple(keys), skipped=len(entries) - len(keys))

    def find(self, kid: str | None) -> Jwk | None:
        if kid is None:
            # No kid: only a set with exactly one key that could have signed RS256 is
            # unambiguous (the sandbox's RS512 key cannot, so it does not count).
            usable = [jwk for jwk in self.keys if jwk.signs(ALGORITHM)]
            return usable[0] if len(usable) == 1 else None
        return next((jwk for jwk in self.keys if jwk.kid == kid), None)

    def key_for(self, kid: str | None) -> Jwk:
        found = self.find(kid)
        if found is None:
            raise CallbackRefused(_unknown_kid(kid, self))
        return found


def _rsa_jwk(entry: Any) -> Jwk | None:
    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
        return None
    try:
        n = int.from_bytes(_b64url_bytes(entry.get("n")), "big")
        e = int.from_bytes(_b64url_bytes(entry.get("e")), "big")
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        return None
    if key.key_size < MIN_KEY_BITS:
        return None
    kid, alg, use = (entry.get(name) for name in ("kid", "alg", "use"))
    return Jwk(
        kid if isinstance(kid, str) and kid else None,
        key,
        alg if isinstance(alg, str) else None,
        use if isinstance(use, str) else None,
    )


def _b64url_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError("not a base64url string")
    return _b64url_decode(value)


def _unknown_kid(kid: str | None, jwks: Jwks) -> str:
    if kid is None:
        return f"the token names no key (kid) and the gateway publishes {len(jwks.keys)} keys"
    return f"no gateway key has kid {kid!r}"


class GatewayKeys:
    """The gateway's JWKS, cached; safe to share between threads.

    The set is fetched on first use and again once it is ``ttl`` seconds old. A token naming
    a kid the set lacks (the gateway rotated its key) makes it fetch again, but at most once
    every ``refetch_interval`` seconds: a stream of forged kids cannot make us hammer the
    gateway. A failed refresh keeps the keys already held; with none held, the call is
    refused with ``KeysUnavailable`` (answer 503 so that the gateway retries).
    """

    def __init__(
        self,
        fetch: Callable[[], Any],
        *,
        ttl: float = 3600.0,
        refetch_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._jwks: Jwks | None = None
        self._fetched_at = -math.inf  # the last successful fetch
        self._tried_at = -math.inf  # the last attempt, successful or not
        self.fetches = 0  # attempts, for monitoring and tests

    @classmethod
    def from_gateway(
        cls, gateway: GatewayClient, path: str = V3_CERTS_PATH, **options: Any
    ) -> GatewayKeys:
        """Fetch through the gateway client: the v3 set needs its token and headers."""
        return cls(lambda: gateway.get(path).body, **options)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        **options: Any,
    ) -> GatewayKeys:
        """Fetch a public set with a plain GET (the v0.5 certs, a Keycloak certs URL)."""
        get = http.get if http is not None else httpx.get

        def fetch() -> Any:
            response = get(url, timeout=timeout, headers={"accept": "application/json"})
            response.raise_for_status()
            return response.content

        return cls(fetch, **options)

    def current(self) -> Jwks:
        with self._lock:
            return self._held(refetch=False)

    def key_for(self, kid: str | None) -> Jwk:
        with self._lock:
            jwks = self._held(refetch=False)
            found = jwks.find(kid)
            if found is None and self._may_try():
                jwks = self._held(refetch=True)
                found = jwks.find(kid)
            if found is None:
                raise CallbackRefused(_unknown_kid(kid, jwks))
            return found

    # Both below run under the lock: one thread fetches, the others wait for its answer.

    def _held(self, *, refetch: bool) -> Jwks:
        stale = self._clock() - self._fetched_at >= self.ttl
        if self._jwks is None or refetch or (stale and self._may_try()):
            self._refresh()
        if self._jwks is None:
            raise KeysUnavailable("the gateway's keys could not be fetched")
        return self._jwks

    def _may_try(self) -> bool:
        return self._clock() - self._tried_at >= self.refetch_interval

    def _refresh(self) -> None:
        if self._jwks is None and not self._may_try():
            return  # the last attempt failed moments ago; do not pile on a struggling gateway
        self._tried_at = self._clock()
        self.fetches += 1
        try:
            jwks = Jwks.parse(self._fetch())
        except (GatewayError, httpx.HTTPError, ValueError):
            return  # keep what is held; _held raises if that is nothing
        if not jwks.keys:
            return
        self._jwks = jwks
        self._fetched_at = self._clock()


# ---------------------------------------------------------------------------- the token


def verify_token(
    token: str,
    keys: KeySource,
    now: datetime,
    *,
    leeway: float = 60.0,
    issuer: str | None = None,
) -> dict[str, Any]:
    """The claims of ``token``, a compact RS256 JWS, or ``CallbackRefused`` saying why not.

    Strict on purpose: the header must say ``alg: RS256`` (never ``none``, never an HMAC
    that would take the public key as its secret), the key is the one the ``kid`` names,
    ``exp`` is required, and ``nbf``/``iat`` may not lie in the future beyond ``leeway``.
    """
    if not isinstance(token, str) or not token:
        raise CallbackRefused("the bearer token is empty")
    if len(token) > _MAX_TOKEN:
        raise CallbackRefused("the bearer token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise CallbackRefused(f"the token has {len(parts)} parts, not 3 (header.claims.signature)")
    header_part, claims_part, signature_part = parts
    header = _json_part(header_part, "header")
    _check_header(header)
    claims = _json_part(claims_part, "claims")
    signature = _b64url_part(signature_part, "signature")

    kid = header.get("kid")
    jwk = keys.key_for(kid)
    if not jwk.signs(ALGORITHM):
        raise CallbackRefused(
            f"key {jwk.kid!r} is published for {jwk.alg or '?'} (use {jwk.use or '?'}), "
            f"not {ALGORITHM} signatures"
        )
    try:
        jwk.key.verify(
            signature,
            f"{header_part}.{claims_part}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        raise CallbackRefused(f"the signature does not verify with key {jwk.kid!r}") from None
    _check_times(claims, now, leeway)
    if issuer is not None and claims.get("iss") != issuer:
        raise CallbackRefused(f"the token was issued by {claims.get('iss')!r}, not {issuer!r}")
    return claims


def _check_header(header: dict[str, Any]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise CallbackRefused("the token header names no algorithm")
    if alg.lower() == "none":
        raise CallbackRefused("unsigned tokens (alg none) are refused")
    if alg != ALGORITHM:
        raise CallbackRefused(f"the token is signed {alg}; only {ALGORITHM} is accepted")
    if "crit" in header:
        raise CallbackRefused("the token header has critical extensions (crit) we do not know")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise CallbackRefused(f"the token type is {typ!r}, not JWT")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise CallbackRefused("the token's key id (kid) is not a non-empty string")


def _check_times(claims: dict[str, Any], now: datetime, leeway: float) -> None:
    moment = now.timestamp()
    exp = _numeric(claims, "exp")
    if exp is None:
        raise CallbackRefused("the token has no expiry (exp)")
    if moment >= exp + leeway:
        raise CallbackRefused(f"the token expired at {_iso(exp)}")
    nbf = _numeric(claims, "nbf")
    if nbf is not None and moment + leeway < nbf:
        raise CallbackRefused(f"the token is not valid before {_iso(nbf)}")
    iat = _numeric(claims, "iat")
    if iat is not None and moment + leeway < iat:
        raise CallbackRefused(f"the token claims to be issued in the future, at {_iso(iat)}")


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CallbackRefused(f"the token's {name} is not a number of seconds")
    return float(value)


def _iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s"


def _json_part(part: str, what: str) -> dict[str, Any]:
    raw = _b64url_part(part, what)
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CallbackRefused(f"the token {what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CallbackRefused(f"the token {what} is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"member {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _b64url_part(part: str, what: str) -> bytes:
    try:
        return _b64url_decode(part)
    except ValueError:
        raise CallbackRefused(f"the token {what} is not unpadded base64url") from None


def _b64url_decode(text: str) -> bytes:
    """Unpadded, canonical base64url only: one token, one spelling."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise ValueError("not canonical base64url")  # stray low bits in the last character
    return raw


# ---------------------------------------------------------------------------- the call


@dataclass(frozen=True)
class CallbackMeta:
    """What a verified callback says about itself; the body is the caller's to read."""

    request_id: uuid.UUID  # deduplicate deliveries on this (in the database)
    timestamp: datetime  # aware, UTC
    hip_id: str | None  # X-HIP-ID: the facility it is for, when the callback names one
    cm_id: str | None  # X-CM-ID, when sent
    client_id: str | None  # who holds the token: azp / clientId
    claims: Mapping[str, Any] = field(repr=False)

    @property
    def roles(self) -> tuple[str, ...]:
        access = self.claims.get("realm_access")
        roles = access.get("roles") if isinstance(access, dict) else None
        return tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()


def verify_callback(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    keys: KeySource,
    now: datetime,
    *,
    issuer: str | None = None,
    allowed_clients: Collection[str] | None = (GATEWAY_CLIENT,),
    leeway: float = 60.0,
    max_age: float = 600.0,
    max_ahead: float = 120.0,
) -> CallbackMeta:
    """Check an inbound call's headers and bearer token; ``CallbackRefused`` says why not.

    ``max_age``/``max_ahead`` bound how far the TIMESTAMP may lie behind/ahead of ``now``
    (seconds). ``allowed_clients`` are the accepted ``azp``/``clientId`` values (None: any
    holder of a token from the realm, which is every ABDM integrator). The cheap header checks
    come first, so junk never costs a key fetch.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    named = _headers(headers)
    token = _bearer(named.get("authorization"))
    request_id = _request_id(named.get("request-id"))
    stamp = _timestamp(named.get("timestamp"))
    if stamp < now - timedelta(seconds=max_age):
        raise CallbackRefused(
            f"TIMESTAMP {stamp.isoformat()} is more than {max_age:g} s in the past"
        )
    if stamp > now + timedelta(seconds=max_ahead):
        raise CallbackRefused(
            f"TIMESTAMP {stamp.isoformat()} is more than {max_ahead:g} s in the future"
        )
    hip_id = _optional_id(named.get("x-hip-id"), "X-HIP-ID")
    cm_id = _optional_id(named.get("x-cm-id"), "X-CM-ID")
    claims = verify_token(token, keys, now, leeway=leeway, issuer=issuer)
    client_id = _caller(claims, allowed_clients)
    return CallbackMeta(request_id, stamp, hip_id, cm_id, client_id, claims)


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    named: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key in named and named[key] != value:
            raise CallbackRefused(f"header {name} is given twice")
        named[key] = value
    return named


def _bearer(value: str | None) -> str:
    if value is None:
        raise CallbackRefused("no Authorization header")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise CallbackRefused("the Authorization header is not a Bearer token")
    token = token.strip()
    if not token:
        raise CallbackRefused("the Authorization header has an empty Bearer token")
    return token


def _request_id(value: str | None) -> uuid.UUID:
    if value is None or not value.strip():
        raise CallbackRefused("no REQUEST-ID header")
    if not _UUID.match(value.strip()):
        raise CallbackRefused(f"REQUEST-ID {value[:60]!r} is not a UUID")
    return uuid.UUID(value.strip())


def _timestamp(value: str | None) -> datetime:
    if value is None or not value.strip():
        raise CallbackRefused("no TIMESTAMP header")
    found = _TIMESTAMP.match(value.strip())
    if found is None:
        raise CallbackRefused(f"TIMESTAMP {value[:60]!r} is not an ISO-8601 date and time")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_zone(zone),
        )
    except ValueError as exc:
        raise CallbackRefused(f"TIMESTAMP {value[:60]!r} is not a real moment: {exc}") from None
    return moment.astimezone(UTC)


def _zone(text: str | None) -> timezone:
    if text is None or text in "Zz":
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-offset if text[0] == "-" else offset)


def _optional_id(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 128 or not value.isprintable():
        raise CallbackRefused(f"{name} is present but not a usable identifier")
    return value


def _caller(claims: Mapping[str, Any], allowed: Collection[str] | None) -> str | None:
    named = [claims.get(name) for name in ("azp", "clientId")]
    present = [value for value in named if isinstance(value, str) and value]
    if len(set(present)) > 1:
        raise CallbackRefused(
            f"the token names two callers: azp {named[0]!r}, clientId {named[1]!r}"
        )
    caller = present[0] if present else None
    if allowed is not None and caller not in allowed:
        raise CallbackRefused(
            f"the token belongs to {caller!r}, not to the gateway ({', '.join(sorted(allowed))})"
        )
    return caller
