"""The fake HIU's own round trip, driven by the HIP side's real message builders.

The fake issues an HI request, the HIP's parser reads it, the HIP's builders encrypt and
package the bundles, and httpx pushes them over TLS to the fake, which must decrypt exactly
what was sent and refuse what was tampered with.

No database: nothing here takes a fixture from tests/conftest.py.
"""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from opdesk.abdm import fidelius, messages
from tests.fakes.abdm_hiu import FakeHiu, ReceivedEntry

CONSENT_ID = "5f0e1c2a-6b1d-4c43-9d0a-2f1f3c4b5a6d"
DATE_FROM = datetime(2024, 1, 1, tzinfo=UTC)
DATE_TO = datetime(2024, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)

# Two small bundles; non-ASCII text checks both sides agree on UTF-8 (checksum and cipher).
BUNDLES = {
    "visit-2024-03-05": {
        "resourceType": "Bundle",
        "id": "op-1",
        "type": "document",
        "entry": [{"resource": {"resourceType": "Patient", "name": [{"text": "Anaya Rao"}]}}],
    },
    "visit-2024-07-19": {
        "resourceType": "Bundle",
        "id": "rx-1",
        "type": "document",
        "entry": [{"resource": {"resourceType": "Condition", "note": [{"text": "ज्वर, 3 days"}]}}],
    },
}


@pytest.fixture
def hiu() -> Iterator[FakeHiu]:
    with FakeHiu() as fake:
        yield fake


@pytest.fixture
def http(hiu: FakeHiu) -> Iterator[httpx.Client]:
    with httpx.Client(verify=hiu.ssl_context, timeout=5.0) as client:
        yield client


def _request(hiu: FakeHiu, **overrides: Any) -> messages.HealthInformationRequest:
    """An HI request issued by the fake, as the HIP's bridge parses it."""
    arguments: dict[str, Any] = {
        "consent_id": CONSENT_ID,
        "transaction_id": str(uuid.uuid4()),
        "date_from": DATE_FROM,
        "date_to": DATE_TO,
    }
    arguments.update(overrides)
    return messages.parse_health_information_request(hiu.hi_request_body(**arguments))


def _entries(
    request: messages.HealthInformationRequest,
    hip: fidelius.KeyMaterial,
    bundles: Mapping[str, Any] = BUNDLES,
) -> list[dict[str, str]]:
    return [
        messages.encrypt_entry(
            reference, json.dumps(bundle, ensure_ascii=False), sender=hip, receiver=request.receiver
        )
        for reference, bundle in bundles.items()
    ]


def _push_body(
    request: messages.HealthInformationRequest,
    hip: fidelius.KeyMaterial,
    entries: Sequence[Mapping[str, str]],
    *,
    page_number: int = 1,
    page_count: int = 1,
) -> dict[str, Any]:
    return messages.data_push(
        transaction_id=request.transaction_id,
        entries=entries,
        sender=hip,
        key_expiry=datetime.now(UTC) + timedelta(hours=1),
        page_number=page_number,
        page_count=page_count,
    )


# ---------------------------------------------------------------------- the HI request


def test_the_hi_request_is_what_the_hip_parser_reads(hiu: FakeHiu) -> None:
    transaction_id = str(uuid.uuid4())
    request = _request(hiu, transaction_id=transaction_id)

    assert request.transaction_id == transaction_id
    assert request.consent_id == CONSENT_ID
    assert request.date_range == messages.DateRange(DATE_FROM, DATE_TO)
    assert request.data_push_url == hiu.push_url()
    assert request.data_push_url.startswith("https://127.0.0.1:")
    issued = hiu.transaction(transaction_id)
    assert request.receiver == fidelius.PeerKey(issued.keys.public_key, issued.keys.nonce)
    assert hiu.key_material(transaction_id)["dhPublicKey"]["keyValue"] == issued.keys.public_key


def test_every_transaction_has_its_own_key_pair_and_nonce(hiu: FakeHiu) -> None:
    first, second = _request(hiu), _request(hiu)

    assert first.receiver.public_key != second.receiver.public_key
    assert first.receiver.nonce != second.receiver.nonce


def test_a_transaction_id_is_issued_once(hiu: FakeHiu) -> None:
    request = _request(hiu)

    with pytest.raises(ValueError, match="already issued"):
        _request(hiu, transaction_id=request.transaction_id)


def test_an_x509_key_is_read_by_the_parser_too(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu, x509=True)
    hip = fidelius.generate()

    answer = http.post(request.data_push_url, json=_push_body(request, hip, _entries(request, hip)))

    assert answer.status_code == 202, answer.text
    assert len(hiu.wait_for(1)[0].entries) == len(BUNDLES)


# ---------------------------------------------------------------------- the push


def test_the_fake_decrypts_exactly_the_bundles_pushed(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    hip = fidelius.generate()
    entries = _entries(request, hip)

    answer = http.post(request.data_push_url, json=_push_body(request, hip, entries))

    assert answer.status_code == 202, answer.text
    (transfer,) = hiu.wait_for(1)
    assert transfer.transaction_id == request.transaction_id
    assert transfer.consent_id == CONSENT_ID
    assert (transfer.page_number, transfer.page_count) == (1, 1)
    assert transfer.entries == [ReceivedEntry(ref, bundle) for ref, bundle in BUNDLES.items()]
    assert transfer.entries[0] == ("visit-2024-03-05", BUNDLES["visit-2024-03-05"])
    assert transfer.plaintexts == [json.dumps(b, ensure_ascii=False) for b in BUNDLES.values()]
    assert transfer.sender == fidelius.PeerKey(hip.public_key, hip.nonce)
    assert hiu.rejected == []


def test_pages_of_one_transfer_arrive_in_turn(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    hip = fidelius.generate()
    first, second = _entries(request, hip)

    for number, entry in enumerate((first, second), start=1):
        body = _push_body(request, hip, [entry], page_number=number, page_count=2)
        assert http.post(request.data_push_url, json=body).status_code == 202

    pages = hiu.wait_for(2)
    assert [(p.page_number, p.page_count) for p in pages] == [(1, 2), (2, 2)]
    assert hiu.entries(request.transaction_id) == list(BUNDLES.items())


def test_a_later_page_with_other_key_material_is_refused(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    hip, other = fidelius.generate(), fidelius.generate()
    first = _entries(request, hip)[0]
    page_one = _push_body(request, hip, [first], page_number=1, page_count=2)
    assert http.post(request.data_push_url, json=page_one).status_code == 202

    page_two = _push_body(
        request,
        other,
        _entries(request, other, {"visit-2024-07-19": {}}),
        page_number=2,
        page_count=2,
    )
    answer = http.post(request.data_push_url, json=page_two)

    assert answer.status_code == 400
    assert "earlier pages" in answer.json()["error"]["message"]
    assert len(hiu.received) == 1


def test_a_tampered_ciphertext_is_refused(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    hip = fidelius.generate()
    entries = _entries(request, hip)
    sealed = bytearray(base64.b64decode(entries[1]["content"]))
    sealed[3] ^= 0x01
    entries[1]["content"] = base64.b64encode(bytes(sealed)).decode()

    answer = http.post(request.data_push_url, json=_push_body(request, hip, entries))

    assert answer.status_code == 400
    reason = answer.json()["error"]["message"]
    assert reason.startswith("entries[1].content: cannot be decrypted")
    assert "authentication" in reason
    assert hiu.received == []  # the good first entry is not kept either
    (rejection,) = hiu.rejected
    assert (rejection.status, rejection.reason) == (400, reason)
    assert rejection.transaction_id == request.transaction_id


def test_a_bundle_sealed_for_another_key_is_refused(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    stranger = _request(hiu)  # another transaction's HIU key
    hip = fidelius.generate()
    entries = _entries(stranger, hip)

    answer = http.post(request.data_push_url, json=_push_body(request, hip, entries))

    assert answer.status_code == 400
    assert "cannot be decrypted" in answer.json()["error"]["message"]


def test_a_wrong_checksum_is_refused(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    hip = fidelius.generate()
    entries = _entries(request, hip)
    entries[0]["checksum"] = messages.checksum(json.dumps({"resourceType": "Bundle"}))

    answer = http.post(request.data_push_url, json=_push_body(request, hip, entries))

    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("entries[0].checksum:")
    assert hiu.received == []
    assert [r.status for r in hiu.rejected] == [400]


def test_content_that_is_not_a_json_object_is_refused(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    hip = fidelius.generate()
    entry = messages.encrypt_entry(
        "visit-2024-03-05", "plain words", sender=hip, receiver=request.receiver
    )

    answer = http.post(request.data_push_url, json=_push_body(request, hip, [entry]))

    assert answer.status_code == 400
    assert "not JSON" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda b: b.pop("entries"), "entries:"),
        (lambda b: b.update(pageNumber=3), "pageNumber:"),
        (lambda b: b.update(pageCount="1"), "pageCount:"),
        (lambda b: b["entries"][0].pop("careContextReference"), "careContextReference:"),
        (lambda b: b["entries"][0].update(media="application/pdf"), "entries[0].media:"),
        (lambda b: b["keyMaterial"].update(curve="P-256"), "keyMaterial:"),
        (lambda b: b["keyMaterial"].pop("nonce"), "keyMaterial:"),
        (
            lambda b: b["keyMaterial"]["dhPublicKey"].update(expiry="2020-01-01T00:00:00.000Z"),
            "already past",
        ),
    ],
)
def test_a_malformed_push_is_refused_with_its_reason(
    hiu: FakeHiu, http: httpx.Client, edit: Any, where: str
) -> None:
    request = _request(hiu)
    hip = fidelius.generate()
    body = _push_body(request, hip, _entries(request, hip))
    edit(body)

    answer = http.post(request.data_push_url, json=body)

    assert answer.status_code == 400
    assert where in answer.json()["error"]["message"]
    assert hiu.received == []


def test_a_push_after_the_hiu_key_expired_is_refused(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu, key_expiry=datetime.now(UTC) - timedelta(seconds=1))
    hip = fidelius.generate()

    answer = http.post(request.data_push_url, json=_push_body(request, hip, _entries(request, hip)))

    assert answer.status_code == 400
    assert "HIU's key expired" in answer.json()["error"]["message"]


def test_an_unknown_transaction_is_refused_with_404(hiu: FakeHiu, http: httpx.Client) -> None:
    request = _request(hiu)
    hip = fidelius.generate()
    body = _push_body(request, hip, _entries(request, hip))
    body["transactionId"] = str(uuid.uuid4())

    answer = http.post(request.data_push_url, json=body)

    assert answer.status_code == 404
    assert "never requested" in answer.json()["error"]["message"]
    assert hiu.received == []
    assert hiu.rejected[0].transaction_id == body["transactionId"]


def test_a_push_elsewhere_than_the_push_url_is_refused_with_404(
    hiu: FakeHiu, http: httpx.Client
) -> None:
    request = _request(hiu)
    hip = fidelius.generate()

    answer = http.post(
        hiu.url + "/elsewhere", json=_push_body(request, hip, _entries(request, hip))
    )

    assert answer.status_code == 404
    assert http.get(request.data_push_url).status_code == 405


# ---------------------------------------------------------------------- TLS and waiting


def test_a_client_that_does_not_trust_the_fake_cannot_connect(hiu: FakeHiu) -> None:
    request = _request(hiu)

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.post(request.data_push_url, json={}, timeout=5.0)
    assert hiu.rejected == []


def test_the_ca_file_trusts_the_fake_as_well(hiu: FakeHiu) -> None:
    context = ssl.create_default_context(cafile=str(hiu.ca_path))
    with httpx.Client(verify=context, timeout=5.0) as client:
        answer = client.post(hiu.url + "/data/push", json={"transactionId": "nobody"})

    assert answer.status_code == 404


def test_wait_for_says_what_was_refused_when_nothing_arrives(
    hiu: FakeHiu, http: httpx.Client
) -> None:
    request = _request(hiu)
    http.post(request.data_push_url, json={"transactionId": request.transaction_id})

    with pytest.raises(AssertionError, match=r"0 of 1 pages arrived.*400 pageNumber"):
        hiu.wait_for(1, timeout=0.1)
