"""Inbound gateway callbacks: the bearer JWT, the gateway's keys, the REQUEST-ID/TIMESTAMP.

Tokens come from the fake gateway (tests/fakes/abdm_gateway.py), which signs them with keys
it publishes on its certs endpoints; the keys are fetched through the real gateway client.
No database: nothing here takes a fixture from tests/conftest.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opdesk.abdm.callbacks import (
    V05_CERTS_PATH,
    V3_CERTS_PATH,
    CallbackMeta,
    CallbackRefused,
    GatewayKeys,
    Jwk,
    Jwks,
    KeysUnavailable,
    verify_callback,
    verify_token,
)
from opdesk.abdm.gateway import GatewayClient
from tests.fakes.abdm_gateway import (
    FORGERIES,
    Callback,
    FakeAbdmGateway,
    b64url,
    cached_key,
    error_answer,
    public_jwk,
    sign_rs256,
    stamp,
)


class Clock:
    """The key cache's idea of time, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway() -> Iterator[FakeAbdmGateway]:
    with FakeAbdmGateway() as fake:
        yield fake


@pytest.fixture
def client(gateway: FakeAbdmGateway) -> Iterator[GatewayClient]:
    with GatewayClient(gateway.url, gateway.client_id, gateway.client_secret, timeout=2.0) as made:
        yield made


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(client: GatewayClient, clock: Clock) -> GatewayKeys:
    return GatewayKeys.from_gateway(client, ttl=3600, refetch_interval=60, clock=clock)


def now() -> datetime:
    return datetime.now(UTC)


def headers(gateway: FakeAbdmGateway, **changes: str | None) -> dict[str, str]:
    """A genuine callback's headers; a change of None leaves that header out."""
    made = dict(gateway.prepare_callback("http://bridge.invalid/", {}).headers)
    for name, value in changes.items():
        key = name.replace("_", "-").upper()
        key = "Authorization" if key == "AUTHORIZATION" else key
        if value is None:
            made.pop(key, None)
        else:
            made[key] = value
    return made


def refused(reason: str) -> Any:
    return pytest.raises(CallbackRefused, match=reason)


# ---------------------------------------------------------------------- good tokens


def test_a_genuine_token_gives_its_claims(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    claims = verify_token(gateway.mint_token(), keys, now(), issuer=gateway.issuer)

    assert claims["azp"] == "gateway"
    assert claims["iss"] == gateway.issuer
    assert keys.fetches == 1
    assert [a.path for a in gateway.received] == [V3_CERTS_PATH]  # with the session token
    assert gateway.received[0].headers["authorization"].startswith("Bearer ")


def test_a_genuine_callback_gives_its_meta(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    sent = headers(gateway)

    meta = verify_callback(sent, keys, now(), issuer=gateway.issuer)

    assert isinstance(meta, CallbackMeta)
    assert meta.request_id == uuid.UUID(sent["REQUEST-ID"])
    assert abs(meta.timestamp - now()) < timedelta(seconds=5)
    assert meta.timestamp.tzinfo is UTC
    assert meta.hip_id == gateway.hip_id
    assert meta.cm_id == "sbx"
    assert meta.client_id == "gateway"
    assert meta.roles == ("gateway",)


def test_header_names_are_read_in_any_case(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    sent = {name.lower(): value for name, value in headers(gateway).items()}
    assert verify_callback(sent, keys, now()).hip_id == gateway.hip_id


def test_a_missing_x_hip_id_is_not_refused(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    # Only some callbacks name the facility (discover, on-generate-token, on_carecontext...).
    assert verify_callback(headers(gateway, x_hip_id=None), keys, now()).hip_id is None


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("2026-03-01T10:00:00.123Z", datetime(2026, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2026-03-01T10:00:00.123456789", datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-01T15:30:00+05:30", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_in_the_forms_seen_are_read_as_utc(
    gateway: FakeAbdmGateway, keys: GatewayKeys, written: str, meant: datetime
) -> None:
    issued = meant.timestamp()
    token = gateway.mint_token(issued_at=issued)
    sent = headers(gateway, timestamp=written, authorization=f"Bearer {token}")

    assert verify_callback(sent, keys, meant + timedelta(seconds=1)).timestamp == meant


# ---------------------------------------------------------------------- forged tokens

FORGERY_REASONS = {
    "wrong-key": "signature does not verify",
    "alg-none": r"unsigned tokens \(alg none\) are refused",
    "hs256": "signed HS256; only RS256 is accepted",
    "expired": "the token expired at",
    "not-yet-valid": "not valid before",
    "unknown-kid": "no gateway key has kid",
    "tampered": "signature does not verify",
}


def test_every_forgery_has_a_reason() -> None:
    assert set(FORGERY_REASONS) == set(FORGERIES)


@pytest.mark.parametrize("kind", FORGERIES)
def test_forged_tokens_are_refused_with_a_clear_reason(
    gateway: FakeAbdmGateway, keys: GatewayKeys, kind: str
) -> None:
    with refused(FORGERY_REASONS[kind]):
        verify_token(gateway.forged_token(kind), keys, now())


@pytest.mark.parametrize("kind", FORGERIES)
def test_forged_callbacks_are_refused(
    gateway: FakeAbdmGateway, keys: GatewayKeys, kind: str
) -> None:
    sent = headers(gateway, authorization=f"Bearer {gateway.forged_token(kind)}")
    with refused(FORGERY_REASONS[kind]):
        verify_callback(sent, keys, now())


def _segment(value: object) -> str:
    return b64url(json.dumps(value).encode())


GOOD_HEADER = {"alg": "RS256", "typ": "JWT", "kid": "fake-gateway-1"}
TWO_ALGS = b64url(b'{"alg": "RS256", "alg": "none"}')
NAN_EXPIRY = b64url(b'{"exp": NaN}')


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "empty"),
        ("onlyonepart", "1 parts, not 3"),
        ("two.parts", "2 parts, not 3"),
        ("a.b.c.d", "4 parts, not 3"),
        (f"{_segment(GOOD_HEADER)}=.{_segment({})}.c2ln", "header is not unpadded base64url"),
        (f"{_segment(GOOD_HEADER)}.{_segment({})}.c2ln==", "signature is not unpadded base64url"),
        (f"{_segment(GOOD_HEADER)}.e30+.c2ln", "claims is not unpadded base64url"),
        (f"{b64url(b'not json')}.{_segment({})}.c2ln", "header is not JSON"),
        (f"{b64url(bytes([0xFF, 0xFE]))}.{_segment({})}.c2ln", "header is not JSON"),
        (f"{_segment([1, 2])}.{_segment({})}.c2ln", "header is not a JSON object"),
        (f"{_segment(GOOD_HEADER)}.{_segment('text')}.c2ln", "claims is not a JSON object"),
        (f"{TWO_ALGS}.e30.c2ln", "appears twice"),
        (f"{_segment(GOOD_HEADER)}.{NAN_EXPIRY}.c2ln", "claims is not JSON"),
        # "e30" is {}; "e31" decodes to the same bytes with a stray low bit: not canonical.
        (f"{_segment(GOOD_HEADER)}.e31.c2ln", "claims is not unpadded base64url"),
        (f"{_segment({'typ': 'JWT'})}.e30.c2ln", "names no algorithm"),
        (f"{_segment({**GOOD_HEADER, 'alg': 'RS512'})}.e30.c2ln", "signed RS512"),
        (f"{_segment({**GOOD_HEADER, 'alg': 'NONE'})}.e30.", r"alg none"),
        (f"{_segment({**GOOD_HEADER, 'crit': ['exp']})}.e30.c2ln", "critical extensions"),
        (f"{_segment({**GOOD_HEADER, 'typ': 'JWE'})}.e30.c2ln", "type is 'JWE'"),
        (f"{_segment({**GOOD_HEADER, 'kid': 7})}.e30.c2ln", "kid"),
        ("x" * 20_000, "too long"),
    ],
)
def test_malformed_tokens_are_refused_before_any_key_is_fetched(
    keys: GatewayKeys, token: str, reason: str
) -> None:
    with refused(reason):
        verify_token(token, keys, now())
    assert keys.fetches == 0


@pytest.mark.parametrize(
    ("changes", "drop", "reason"),
    [
        ({}, ("exp",), r"no expiry \(exp\)"),
        ({"exp": "tomorrow"}, (), "exp is not a number"),
        ({"exp": True}, (), "exp is not a number"),
        ({"iat": int(time.time()) + 3600}, (), "issued in the future"),
        ({"nbf": "soon"}, (), "nbf is not a number"),
    ],
)
def test_the_time_claims_are_checked(
    gateway: FakeAbdmGateway,
    keys: GatewayKeys,
    changes: dict[str, Any],
    drop: tuple[str, ...],
    reason: str,
) -> None:
    with refused(reason):
        verify_token(gateway.mint_token(claims=changes, drop=drop), keys, now())


def test_the_leeway_forgives_a_little_clock_drift(
    gateway: FakeAbdmGateway, keys: GatewayKeys
) -> None:
    token = gateway.mint_token(issued_at=time.time() - 1230, lifetime=1200)  # expired 30 s ago

    assert verify_token(token, keys, now(), leeway=60)["azp"] == "gateway"
    with refused("expired"):
        verify_token(token, keys, now(), leeway=10)


def test_another_issuer_is_refused(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    token = gateway.mint_token(claims={"iss": "https://evil.example/auth/realms/central-registry"})
    with refused("issued by 'https://evil.example"):
        verify_token(token, keys, now(), issuer=gateway.issuer)


def test_another_integrators_session_token_is_not_the_gateway(
    gateway: FakeAbdmGateway, keys: GatewayKeys
) -> None:
    # Same realm, same key, same issuer: only azp/clientId tell the gateway apart.
    token = gateway.mint_token(claims={"azp": "SBX_0000", "clientId": "SBX_0000"})
    sent = headers(gateway, authorization=f"Bearer {token}")

    with refused("belongs to 'SBX_0000', not to the gateway"):
        verify_callback(sent, keys, now())
    assert verify_callback(sent, keys, now(), allowed_clients=None).client_id == "SBX_0000"
    assert verify_callback(sent, keys, now(), allowed_clients={"gateway", "SBX_0000"})


def test_a_token_naming_two_callers_is_refused(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    token = gateway.mint_token(claims={"clientId": "SBX_0000"})
    with refused("names two callers"):
        verify_callback(headers(gateway, authorization=f"Bearer {token}"), keys, now())


def test_a_token_naming_no_caller_is_refused(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    token = gateway.mint_token(drop=("azp", "clientId"))
    with refused("belongs to None"):
        verify_callback(headers(gateway, authorization=f"Bearer {token}"), keys, now())


# ---------------------------------------------------------------------- which key


def test_a_key_published_for_rs512_does_not_verify_rs256() -> None:
    key = cached_key("gateway-1")
    jwks = Jwks.parse({"keys": [public_jwk("k512", key, alg="RS512")]})
    token = sign_rs256({"alg": "RS256", "kid": "k512"}, {"exp": time.time() + 60}, key)

    with refused("published for RS512"):
        verify_token(token, jwks, now())


def test_without_a_kid_the_only_rs256_key_is_used() -> None:
    key = cached_key("gateway-1")
    other = cached_key("gateway-2")
    claims = {"exp": time.time() + 60}
    token = sign_rs256({"alg": "RS256", "typ": "JWT"}, claims, key)

    # The sandbox publishes an RS256 key and an RS512 one: the RS256 one is unambiguous.
    both = Jwks.parse({"keys": [public_jwk("a", key), public_jwk("b", other, alg="RS512")]})
    assert verify_token(token, both, now()) == claims
    assert verify_token(token, Jwks.parse({"keys": [public_jwk("a", key)]}), now()) == claims

    two = Jwks.parse({"keys": [public_jwk("a", key), public_jwk("b", other)]})
    with refused("names no key"):
        verify_token(token, two, now())


def test_a_key_for_encryption_does_not_verify() -> None:
    key = cached_key("gateway-1")
    jwks = Jwks((Jwk("enc", key.public_key(), "RS256", "enc"),))
    token = sign_rs256({"alg": "RS256", "kid": "enc"}, {"exp": time.time() + 60}, key)
    with refused("use enc"):
        verify_token(token, jwks, now())


def test_the_key_set_keeps_only_usable_rsa_keys() -> None:
    small = {
        "kty": "RSA",
        "kid": "small",
        "n": b64url((2**511 + 1).to_bytes(64, "big")),
        "e": "AQAB",
    }
    document = {
        "keys": [
            public_jwk("good", cached_key("gateway-1")),
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "broken", "n": "not base64!", "e": "AQAB"},
            {"kty": "RSA", "kid": "no-e", "n": "AQAB"},
            small,
            "junk",
        ]
    }
    jwks = Jwks.parse(json.dumps(document))

    assert [jwk.kid for jwk in jwks.keys] == ["good"]
    assert jwks.skipped == 5


@pytest.mark.parametrize("document", [b"<html>", "[]", {"keys": "none"}, {}])
def test_a_key_set_that_is_not_one_is_an_error(document: Any) -> None:
    with pytest.raises(ValueError, match="key set"):
        Jwks.parse(document)


# ---------------------------------------------------------------------- fetching the keys


def test_the_keys_are_fetched_once_and_reused(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    for _ in range(5):
        verify_token(gateway.mint_token(), keys, now())
    assert keys.fetches == 1


def test_the_keys_are_fetched_again_after_their_ttl(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    verify_token(gateway.mint_token(), keys, now())
    clock.now += 3599
    verify_token(gateway.mint_token(), keys, now())
    assert keys.fetches == 1

    clock.now += 2
    verify_token(gateway.mint_token(), keys, now())
    assert keys.fetches == 2


def test_a_rotated_key_is_picked_up_by_one_refetch(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    old = gateway.mint_token()
    verify_token(old, keys, now())
    clock.now += 60  # the set is refetched for a new kid only if the last fetch is this old

    new_kid = gateway.rotate_key()
    new = gateway.mint_token()

    assert verify_token(new, keys, now())["azp"] == "gateway"
    assert keys.fetches == 2
    assert {jwk.kid for jwk in keys.current().keys} == {"fake-gateway-1", new_kid}
    verify_token(old, keys, now())  # the old key is still published, and still held
    assert keys.fetches == 2


def test_a_retired_key_stops_verifying_once_the_set_is_fetched_again(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    old = gateway.mint_token()
    verify_token(old, keys, now())
    gateway.rotate_key(keep_old=False)
    clock.now += 3600

    with refused("no gateway key has kid 'fake-gateway-1'"):
        verify_token(old, keys, now())


def test_unknown_kids_refetch_at_most_once_per_interval(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    verify_token(gateway.mint_token(), keys, now())
    forged = [gateway.mint_token(kid=f"forged-{n}") for n in range(20)]
    clock.now += 60

    with refused("no gateway key has kid 'forged-0'"):
        verify_token(forged[0], keys, now())
    assert keys.fetches == 2  # the one refetch a rotation deserves
    for token in forged[1:]:
        with refused("no gateway key has kid"):
            verify_token(token, keys, now())
    assert keys.fetches == 2  # and no more, however many forged kids arrive

    clock.now += 60
    with refused("no gateway key has kid"):
        verify_token(forged[0], keys, now())
    assert keys.fetches == 3
    assert len([a for a in gateway.received if a.path == V3_CERTS_PATH]) == 3


def test_a_real_rotation_right_after_a_forged_kid_waits_for_the_interval(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    verify_token(gateway.mint_token(), keys, now())
    clock.now += 60
    with refused("no gateway key"):
        verify_token(gateway.mint_token(kid="forged"), keys, now())
    assert keys.fetches == 2
    gateway.rotate_key()
    new = gateway.mint_token()

    with refused("no gateway key"):  # the price of the rate limit: the gateway will retry
        verify_token(new, keys, now())
    clock.now += 60
    assert verify_token(new, keys, now())["azp"] == "gateway"


def test_concurrent_callbacks_with_a_new_kid_fetch_the_set_once(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    verify_token(gateway.mint_token(), keys, now())
    clock.now += 60
    gateway.rotate_key()
    token = gateway.mint_token()
    results: list[str] = []
    start = threading.Barrier(16)

    def verify() -> None:
        start.wait()
        results.append(verify_token(token, keys, now())["azp"])

    threads = [threading.Thread(target=verify) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == ["gateway"] * 16
    assert keys.fetches == 2


def test_no_keys_at_all_is_keys_unavailable_and_not_retried_at_once(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    gateway.answer_next(error_answer("nested", 503, "ABDM-1024", "Dependent service unavailable"))

    with pytest.raises(KeysUnavailable, match="could not be fetched"):
        verify_token(gateway.mint_token(), keys, now())
    with pytest.raises(KeysUnavailable):
        verify_token(gateway.mint_token(), keys, now())
    assert keys.fetches == 1

    clock.now += 60
    assert verify_token(gateway.mint_token(), keys, now())["azp"] == "gateway"
    assert keys.fetches == 2


def test_a_failed_refresh_keeps_the_keys_held(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    verify_token(gateway.mint_token(), keys, now())
    clock.now += 3600
    gateway.answer_next(error_answer("nested", 500, "ABDM-9999", "Unknown exception"))

    assert verify_token(gateway.mint_token(), keys, now())["azp"] == "gateway"
    assert keys.fetches == 2


def test_an_empty_key_set_does_not_replace_the_held_one(
    gateway: FakeAbdmGateway, keys: GatewayKeys, clock: Clock
) -> None:
    verify_token(gateway.mint_token(), keys, now())
    clock.now += 3600
    gateway.answer_next(error_answer("flat", 200, "", ""))  # 200 with no "keys"

    assert verify_token(gateway.mint_token(), keys, now())["azp"] == "gateway"


def test_the_public_v05_set_is_read_with_a_plain_get(gateway: FakeAbdmGateway) -> None:
    public = GatewayKeys.from_url(gateway.url + V05_CERTS_PATH)

    assert verify_token(gateway.mint_token(), public, now())["azp"] == "gateway"
    assert gateway.sessions == []


def test_the_v3_set_needs_the_session_token(gateway: FakeAbdmGateway) -> None:
    unauthenticated = GatewayKeys(lambda: _get_with_headers(gateway.url + V3_CERTS_PATH))
    with pytest.raises(KeysUnavailable):
        verify_token(gateway.mint_token(), unauthenticated, now())
    assert [answer.status for _, answer in gateway.refused] == [401]


def _get_with_headers(url: str) -> bytes:
    import httpx

    response = httpx.get(
        url, headers={"REQUEST-ID": str(uuid.uuid4()), "TIMESTAMP": stamp(), "X-CM-ID": "sbx"}
    )
    response.raise_for_status()
    return response.content


# ---------------------------------------------------------------------- the headers


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"authorization": None}, "no Authorization header"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "not a Bearer token"),
        ({"authorization": "Bearer   "}, "empty Bearer token"),
        ({"request_id": None}, "no REQUEST-ID header"),
        ({"request_id": ""}, "no REQUEST-ID header"),
        ({"request_id": "12345"}, "REQUEST-ID '12345' is not a UUID"),
        ({"request_id": "{" + str(uuid.UUID(int=7)) + "}"}, "is not a UUID"),
        ({"timestamp": None}, "no TIMESTAMP header"),
        ({"timestamp": "yesterday"}, "not an ISO-8601 date and time"),
        ({"timestamp": "2026-02-30T10:00:00.000Z"}, "not a real moment"),
        ({"x_hip_id": "  "}, "X-HIP-ID is present but not a usable identifier"),
        ({"x_hip_id": "IN\n2810000001"}, "X-HIP-ID is present but not a usable identifier"),
    ],
)
def test_bad_headers_are_refused_before_any_key_is_fetched(
    gateway: FakeAbdmGateway, keys: GatewayKeys, changes: dict[str, str | None], reason: str
) -> None:
    with refused(reason):
        verify_callback(headers(gateway, **changes), keys, now())
    assert keys.fetches == 0


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(minutes=-11), "more than 600 s in the past"),
        (timedelta(minutes=3), "more than 120 s in the future"),
    ],
)
def test_a_skewed_timestamp_is_refused(
    gateway: FakeAbdmGateway, keys: GatewayKeys, offset: timedelta, reason: str
) -> None:
    sent = headers(gateway, timestamp=stamp(now() + offset))
    with refused(reason):
        verify_callback(sent, keys, now())


def test_the_timestamp_window_is_configurable(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    sent = headers(gateway, timestamp=stamp(now() - timedelta(minutes=11)))

    assert verify_callback(sent, keys, now(), max_age=3600).hip_id == gateway.hip_id
    with refused("more than 60 s in the past"):
        verify_callback(
            headers(gateway, timestamp=stamp(now() - timedelta(seconds=90))),
            keys,
            now(),
            max_age=60,
        )


def test_a_header_given_twice_is_refused(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    pairs = [*headers(gateway).items(), ("x-hip-id", "IN9999999999")]
    with refused("header x-hip-id is given twice"):
        verify_callback(pairs, keys, now())


def test_now_must_carry_its_zone(gateway: FakeAbdmGateway, keys: GatewayKeys) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_callback(headers(gateway), keys, datetime.now())


# ---------------------------------------------------------------------- over the wire


class Bridge:
    """The HIP's bridge URL: verifies each callback, and deduplicates by REQUEST-ID (the
    caller's job, done in the database in the application; a set here)."""

    def __init__(self, keys: GatewayKeys, issuer: str) -> None:
        self.keys = keys
        self.issuer = issuer
        self.outcomes: list[tuple[str, str]] = []  # (path, "new" / "duplicate" / reason)
        self.order: list[str] = []  # REQUEST-IDs accepted, in arrival order
        self.seen: set[uuid.UUID] = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Bridge:
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def receive(self, path: str, pairs: list[tuple[str, str]]) -> tuple[int, str]:
        try:
            meta = verify_callback(pairs, self.keys, datetime.now(UTC), issuer=self.issuer)
        except KeysUnavailable as exc:
            return self._record(path, 503, exc.reason)
        except CallbackRefused as exc:
            return self._record(path, 401, exc.reason)
        with self.lock:
            fresh = meta.request_id not in self.seen
            self.seen.add(meta.request_id)
            if fresh:
                self.order.append(str(meta.request_id))
        return self._record(path, 202, "new" if fresh else "duplicate")

    def _record(self, path: str, status: int, outcome: str) -> tuple[int, str]:
        with self.lock:
            self.outcomes.append((path, outcome))
        return status, outcome

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                status, outcome = bridge.receive(self.path, list(self.headers.items()))
                body = json.dumps({"outcome": outcome}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def bridge(keys: GatewayKeys, gateway: FakeAbdmGateway) -> Iterator[Bridge]:
    with Bridge(keys, gateway.issuer) as made:
        yield made


DISCOVER = "/api/v3/hip/patient/care-context/discover"


def test_a_callback_over_http_is_accepted(gateway: FakeAbdmGateway, bridge: Bridge) -> None:
    delivery = gateway.deliver(bridge.url + DISCOVER, {"transactionId": str(uuid.uuid4())})

    assert delivery.status == 202
    assert bridge.outcomes == [(DISCOVER, "new")]


def test_a_forged_callback_over_http_is_401(gateway: FakeAbdmGateway, bridge: Bridge) -> None:
    delivery = gateway.deliver(bridge.url + DISCOVER, {}, token=gateway.forged_token("wrong-key"))

    assert delivery.status == 401
    assert "signature does not verify" in bridge.outcomes[0][1]


def test_a_resent_callback_keeps_its_request_id(gateway: FakeAbdmGateway, bridge: Bridge) -> None:
    first = gateway.deliver(bridge.url + DISCOVER, {"n": 1})
    again = gateway.resend(first)

    assert again.callback.request_id == first.callback.request_id
    assert (first.status, again.status) == (202, 202)  # both genuine: the gateway wants a 2xx
    assert [outcome for _, outcome in bridge.outcomes] == ["new", "duplicate"]


def test_callbacks_sent_out_of_order_are_each_verified(
    gateway: FakeAbdmGateway, bridge: Bridge
) -> None:
    made: list[Callback] = [
        gateway.prepare_callback(bridge.url + "/api/v3/hip/token/on-generate-token", {"n": n})
        for n in range(3)
    ]

    deliveries = gateway.send_in_order(made, [2, 0, 1])

    assert [d.status for d in deliveries] == [202, 202, 202]
    assert bridge.order == [made[i].request_id for i in (2, 0, 1)]


def test_a_callback_delivered_too_late_is_refused(gateway: FakeAbdmGateway, bridge: Bridge) -> None:
    late = gateway.prepare_callback(
        bridge.url + DISCOVER, {}, at=datetime.now(UTC) - timedelta(minutes=15)
    )

    delivery = gateway.send(late)

    assert delivery.status == 401
    assert "in the past" in bridge.outcomes[0][1]


def test_a_callback_for_no_facility_is_still_verified(
    gateway: FakeAbdmGateway, bridge: Bridge
) -> None:
    delivery = gateway.deliver(bridge.url + "/api/v3/consent/request/hip/notify", {}, hip_id=None)
    assert delivery.status == 202


def test_the_bridge_answers_503_while_the_keys_cannot_be_had(
    gateway: FakeAbdmGateway, bridge: Bridge
) -> None:
    gateway.answer_next(error_answer("nested", 503, "ABDM-1024", "Dependent service unavailable"))
    delivery = gateway.deliver(bridge.url + DISCOVER, {})
    assert delivery.status == 503


def test_an_ec_key_is_not_an_rsa_key() -> None:
    # Only RSA keys are ever read: a key set of other types leaves nothing to verify with.
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    document = {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "kid": "ec",
                "x": b64url(numbers.x.to_bytes(32, "big")),
                "y": b64url(numbers.y.to_bytes(32, "big")),
            }
        ]
    }
    assert Jwks.parse(document).keys == ()
