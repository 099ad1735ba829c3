"""The ABDM gateway client against a fake gateway on a real local socket.

No database: nothing here takes a fixture from tests/conftest.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from opdesk.abdm.gateway import (
    V05_SESSIONS_PATH,
    GatewayClient,
    GatewayError,
    parse_error,
    timestamp,
)
from opdesk.notifications.providers.http import retry_after_seconds
from tests.fakes.abdm_gateway import (
    ERROR_SHAPES,
    TIMESTAMP_FORM,
    Answer,
    FakeAbdmGateway,
    error_answer,
)

CALL = "/api/hiecm/link/v3/link/carecontext"


class Clock:
    """The client's idea of time, moved by hand: expiry tests need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway() -> Iterator[FakeAbdmGateway]:
    with FakeAbdmGateway() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(gateway: FakeAbdmGateway, clock: Clock) -> Iterator[GatewayClient]:
    with GatewayClient(
        gateway.url, gateway.client_id, gateway.client_secret, timeout=2.0, clock=clock
    ) as made:
        yield made


# ---------------------------------------------------------------------- the token


def test_the_token_is_fetched_once_and_reused(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    for n in range(3):
        assert client.post(CALL, {"n": n}).status == 202

    assert len(gateway.sessions) == 1
    session = gateway.sessions[0]
    assert session.body == {
        "clientId": gateway.client_id,
        "clientSecret": gateway.client_secret,
        "grantType": "client_credentials",
    }
    assert "authorization" not in session.headers
    tokens = {arrival.headers["authorization"] for arrival in gateway.received}
    assert len(tokens) == 1
    assert tokens.pop().startswith("Bearer ")


def test_the_token_is_refreshed_shortly_before_it_expires(clock: Clock) -> None:
    with (
        FakeAbdmGateway(token_ttl=300) as gateway,
        GatewayClient(gateway.url, gateway.client_id, gateway.client_secret, clock=clock) as client,
    ):
        client.post(CALL, {})
        clock.now += 300 - 61  # still more than the 60 s margin left
        client.post(CALL, {})
        assert len(gateway.sessions) == 1

        clock.now += 2  # inside the margin: fetched again before the gateway refuses it
        client.post(CALL, {})

        assert len(gateway.sessions) == 2
        assert gateway.refused == []
        first, _, third = (a.headers["authorization"] for a in gateway.received)
        assert first != third


def test_a_401_fetches_a_new_token_and_retries_once(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    client.post(CALL, {"n": 1})
    gateway.revoke_tokens()  # the gateway ended the session early; the client can't know

    assert client.post(CALL, {"n": 2}).status == 202

    assert len(gateway.sessions) == 2
    assert [arrival.body for arrival in gateway.received] == [{"n": 1}, {"n": 2}]
    assert [answer.status for _, answer in gateway.refused] == [401]


def test_a_client_for_another_host_shares_the_session_and_its_refresh(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    with FakeAbdmGateway() as other:
        # The other host accepts the first gateway's tokens, as ABHA accepts the gateway's.
        other.accept_tokens_of(gateway)
        abha = client.on_host(other.url + "/abha/api/")
        assert abha.base_url == other.url + "/abha/api"
        client.post(CALL, {"n": 1})
        abha.post(CALL, {"n": 2})
        assert len(gateway.sessions) == 1 and other.sessions == []
        assert other.received[0].path == "/abha/api" + CALL
        gateway.revoke_tokens()
        abha.post(CALL, {"n": 3})  # the 401 renews the one session, at the gateway
        client.post(CALL, {"n": 4})
        assert len(gateway.sessions) == 2 and other.sessions == []
        abha.close()  # the connections are the gateway client's: still usable
        assert client.post(CALL, {"n": 5}).status == 202


def test_a_token_that_died_on_the_gateway_s_clock_is_replaced(clock: Clock) -> None:
    with (
        FakeAbdmGateway(token_ttl=0.2) as gateway,
        GatewayClient(
            gateway.url,
            gateway.client_id,
            gateway.client_secret,
            refresh_margin=0,
            clock=clock,  # never moves: the client believes its token is fresh
        ) as client,
    ):
        client.post(CALL, {})
        time.sleep(0.3)
        client.post(CALL, {})

        assert len(gateway.sessions) == 2
        assert len(gateway.received) == 2


def test_a_second_401_is_an_error_not_a_loop(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    client.post(CALL, {})
    gateway.answer_next(error_answer("nested", 401, "ABDM-1066", "Invalid JWT token"), times=5)
    gateway.revoke_tokens()

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert raised.value.status == 401
    assert not raised.value.retryable
    assert len(gateway.sessions) == 2
    assert len(gateway.received) == 2  # the first call, and the one retry


def test_wrong_credentials_are_refused_and_not_retryable(gateway: FakeAbdmGateway) -> None:
    with (
        GatewayClient(gateway.url, gateway.client_id, "wrong", timeout=2.0) as client,
        pytest.raises(GatewayError) as raised,
    ):
        client.post(CALL, {})

    assert raised.value.status == 401
    assert raised.value.code == "ABDM-1023"
    assert not raised.value.retryable
    assert len(gateway.sessions) == 1
    assert gateway.received == []


def test_the_v05_sessions_path_is_a_constructor_argument(gateway: FakeAbdmGateway) -> None:
    with GatewayClient(
        gateway.url,
        gateway.client_id,
        gateway.client_secret,
        sessions_path=V05_SESSIONS_PATH,
    ) as client:
        client.post(CALL, {})

    assert gateway.sessions[0].path == V05_SESSIONS_PATH


# ---------------------------------------------------------------------- the headers


def test_every_request_has_a_fresh_request_id_and_a_valid_timestamp(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    answers = [client.post(CALL, {"n": n}) for n in range(5)]
    after = datetime.now(UTC) + timedelta(seconds=1)

    arrivals = gateway.sessions + gateway.received
    ids = [arrival.headers["request-id"] for arrival in arrivals]
    assert len(set(ids)) == len(arrivals) == 6
    assert all(uuid.UUID(value).version == 4 for value in ids)
    assert [answer.request_id for answer in answers] == ids[1:]
    for arrival in arrivals:
        stamp = arrival.headers["timestamp"]
        assert TIMESTAMP_FORM.match(stamp), stamp
        assert before <= datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= after
        assert arrival.headers["x-cm-id"] == "sbx"


def test_the_cm_id_and_extra_headers_are_sent(gateway: FakeAbdmGateway) -> None:
    with GatewayClient(
        gateway.url, gateway.client_id, gateway.client_secret, cm_id="abdm"
    ) as client:
        client.post(CALL, {}, headers={"X-HIP-ID": "IN2810000001"})

    arrival = gateway.received[0]
    assert arrival.headers["x-cm-id"] == "abdm"
    assert arrival.headers["x-hip-id"] == "IN2810000001"
    assert arrival.headers["content-type"] == "application/json"


def test_a_pinned_request_id_is_kept_for_the_callback(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    pinned = str(uuid.uuid4())
    assert client.post(CALL, {}, request_id=pinned).request_id == pinned
    assert gateway.received[0].headers["request-id"] == pinned


def test_timestamps_have_milliseconds_and_a_z() -> None:
    moment = datetime(2022, 10, 6, 15, 10, 0, 587_999, tzinfo=UTC)
    assert timestamp(moment) == "2022-10-06T15:10:00.587Z"
    assert timestamp(datetime(2022, 10, 6, 20, 40, tzinfo=UTC)) == "2022-10-06T20:40:00.000Z"


# ---------------------------------------------------------------------- the errors


@pytest.mark.parametrize("shape", sorted(ERROR_SHAPES))
def test_each_error_shape_becomes_a_gateway_error_with_its_code(
    gateway: FakeAbdmGateway, client: GatewayClient, shape: str
) -> None:
    gateway.answer_next(error_answer(shape, 400, "1017", "Invalid TransactionId"))

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert raised.value.status == 400
    assert raised.value.code == "1017"
    assert raised.value.message == "Invalid TransactionId"
    assert not raised.value.retryable
    assert raised.value.request_id == gateway.received[0].headers["request-id"]


def test_a_plain_text_error_keeps_its_text_and_any_code_in_it(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    gateway.answer_next(error_answer("text", 400, "ABDM-1001", "No data found"))

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert (raised.value.code, raised.value.message) == ("ABDM-1001", "ABDM-1001: No data found")


def test_an_empty_error_body_is_named_by_its_status(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    gateway.answer_next(error_answer("empty", 404, "", ""))

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert (raised.value.status, raised.value.code, raised.value.message) == (
        404,
        None,
        "Not Found",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Spring's default error page: "error" is a phrase, not an object.
        (
            b'{"timestamp":"2024-01-01T00:00:00.000+00:00","status":400,'
            b'"error":"Bad Request","path":"/v3/x"}',
            (None, "Bad Request"),
        ),
        (
            b'{"code":"900901","error_message":"Invalid Credentials"}',
            ("900901", "Invalid Credentials"),
        ),
        (b'[{"code":"ABDM-1006","message":"Bad Request"}]', ("ABDM-1006", "Bad Request")),
        (b'{"loginId":"Invalid LoginId"}', (None, '{"loginId":"Invalid LoginId"}')),
        (b"<html>502 Bad Gateway</html>", (None, "<html>502 Bad Gateway</html>")),
        (b'{"message":"ABDM-1204: Invalid OTP"}', ("ABDM-1204", "ABDM-1204: Invalid OTP")),
    ],
)
def test_other_bodies_still_give_a_message(raw: bytes, expected: tuple[str | None, str]) -> None:
    assert parse_error(400, raw) == expected


def test_429_is_retryable_with_its_retry_after(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    gateway.answer_next(
        error_answer("nested", 429, "ABDM-1022", "Too many requests", retry_after="7")
    )

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert raised.value.retryable
    assert raised.value.retry_after == 7.0
    assert raised.value.code == "ABDM-1022"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retryable(gateway: FakeAbdmGateway, client: GatewayClient, status: int) -> None:
    gateway.answer_next(error_answer("nested", status, "ABDM-9999", "Unknown exception"))

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert raised.value.retryable
    assert raised.value.retry_after is None


@pytest.mark.parametrize(
    ("code", "retryable"),
    [("ABDM-1022", True), ("2429", True), ("ABDM-1019", True), ("ABDM-1006", False)],
)
def test_a_rate_limit_or_outage_code_is_retryable_whatever_the_status(
    gateway: FakeAbdmGateway, client: GatewayClient, code: str, retryable: bool
) -> None:
    gateway.answer_next(error_answer("flat", 400, code, "refused"))

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert raised.value.retryable is retryable


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_other_4xx_are_not_retryable(
    gateway: FakeAbdmGateway, client: GatewayClient, status: int
) -> None:
    gateway.answer_next(error_answer("nested", status, "ABDM-1006", "Bad Request"))

    with pytest.raises(GatewayError) as raised:
        client.post(CALL, {})

    assert not raised.value.retryable


def test_200_and_204_are_accepted_too(gateway: FakeAbdmGateway, client: GatewayClient) -> None:
    gateway.answer_next(Answer(200, b'{"keys": []}'))
    gateway.answer_next(Answer(204))

    assert client.get("/api/hiecm/gateway/v3/certs").body == {"keys": []}
    assert client.post(CALL, {}).body is None


def test_retry_after_as_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    seconds = retry_after_seconds(later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None and 28 <= seconds <= 30
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# ---------------------------------------------------------------------- no answer


def test_a_hung_gateway_times_out_quickly_and_is_retryable() -> None:
    with FakeAbdmGateway() as gateway:
        gateway.delay = 3.0
        with GatewayClient(
            gateway.url, gateway.client_id, gateway.client_secret, timeout=0.3
        ) as client:
            started = time.monotonic()
            with pytest.raises(GatewayError) as raised:
                client.post(CALL, {})
            elapsed = time.monotonic() - started

    assert elapsed < 1.5
    assert raised.value.status is None
    assert raised.value.retryable
    assert "no answer within 0.3 s" in raised.value.message


def test_a_closed_port_is_a_retryable_error() -> None:
    with FakeAbdmGateway() as gateway:
        url = gateway.url
    with (
        GatewayClient(url, "id", "secret", timeout=1.0) as client,
        pytest.raises(GatewayError) as raised,
    ):
        client.post(CALL, {})

    assert raised.value.status is None
    assert raised.value.retryable
