"""ABDM M2 and Scan & Share messages: documented bodies parse, broken ones are refused by path.

No database: nothing here takes a fixture from tests/conftest.py.

The example bodies are NHA's own, from the ABDM developer portal's repository nha-in/docs:
RAW = catalogue/openapi/.raw/nha-2026-09-16/hiecm/ and CMDF = catalogue/hiecm/openapi/.raw/
nha-2026-09-16/hiecm/consent-management-data-flow.yaml. Where NHA wrote a placeholder
("<ABHA_ADDRESS>", a year of birth of 9999) a real-looking value stands in, and says so.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from opdesk.abdm import fidelius, messages
from opdesk.abdm.messages import (
    V05_PATHS,
    V3_PATHS,
    CareContext,
    ConsentStatus,
    DateRange,
    HiType,
    MessageError,
    TransferOutcome,
    care_context_display,
    in_consent_range,
)

REQUEST_ID = "6f0b4665-a915-4c92-aa36-65afb4a2cd71"
TXN = "f901b782-bfdf-4224-9f8d-da2cadc20c0d"

# RAW/user-initiated-linking.yaml, /api/v3/hip/patient/care-context/discover: the schema's
# examples assembled. Its yearOfBirth example is 9999; 1999 is the curated example
# (catalogue/openapi/hiecm/v3/hiecm-m2.yaml, DiscoveryRequestPayload).
DISCOVER = {
    "transactionId": TXN,
    "patient": {
        "id": "abc@abdm",
        "verifiedIdentifiers": [{"type": "MR", "value": "+919876543210"}],
        "unverifiedIdentifiers": [{"type": "MOBILE", "value": "+9198765*****"}],
        "name": "Abdul Kalam",
        "gender": "M",
        "yearOfBirth": 1999,
    },
}

# The v0.5 shape (APIs-guru/openapi-directory APIs/ndhm.gov.in/ndhm-hip/0.5/openapi.yaml,
# PatientDiscoveryRequest): requestId and timestamp in the body, v0.5 identifier types.
DISCOVER_V05 = {
    "requestId": "499a5a4a-7dda-4f20-9b67-e24589627061",
    "timestamp": "2020-06-15T06:11:03.112Z",
    "transactionId": TXN,
    "patient": {
        "id": "hinapatel79@ndhm",
        "verifiedIdentifiers": [{"type": "MOBILE", "value": "+919800083232"}],
        "unverifiedIdentifiers": [{"type": "MR", "value": "RVH1008"}],
        "name": "chandler bing",
        "gender": "M",
        "yearOfBirth": 2000,
    },
}

# RAW/user-initiated-linking.yaml, /api/v3/hip/link/care-context/init.
LINK_INIT = {
    "transactionId": TXN,
    "abhaAddress": "sample@sbx",
    "patient": [
        {
            "referenceNumber": "abc123",
            "display": "Test",
            "careContexts": [{"referenceNumber": "abc123", "display": "Blood Test"}],
            "hiType": "Prescription",
            "count": 1,
        }
    ],
}

# v0.5 PatientLinkReferenceRequest (same v0.5 file).
LINK_INIT_V05 = {
    "requestId": "5f7a535d-a3fd-416b-b069-c97d021fbacd",
    "timestamp": "2020-06-15T06:11:03.112Z",
    "transactionId": TXN,
    "patient": {
        "id": "hinapatel79@ndhm",
        "referenceNumber": "TMH-PUID-001",
        "careContexts": [{"referenceNumber": "RVH1008"}, {"referenceNumber": "NCC1701"}],
    },
}

# RAW/user-initiated-linking.yaml, /api/v3/hip/link/care-context/confirm.
LINK_CONFIRM = {
    "confirmation": {"token": 123456, "linkRefNumber": "d353b782-bfdf-4224-9f8d-da2cadc20c0d"}
}

# CMDF, /api/v3/consent/request/hip/notify: the schema's examples assembled; "<ABHA_ADDRESS>"
# stands as abc@sbx.
SIGNATURE = (
    "e8nY601CYDsC0FKoDjSp+7GeQ2s2R8oZncLCz5ce+pEuDOr5bZV0aaHjwJg4b9S9V+twjt4hbojx3fl7egrt8+0c+l"
    "fPTi5/bBUAQXCABTfFmtFU7jn65HlTt8kgkiONx26ZBhJ0wX3xjYI72PPtzYIiT5Q08YtDoILA62KceioV7lwuKssw"
    "7wC4ECbBAvRuXT121TmtrPhf+0myJATSnaajS06S6OthrKfZLNTUFf3pFiJzqouSTrjNblOX6DT2+JuO3rom1Szz/03"
    "c0HQG+wWASv+PO3J6uRs0UI4JvKmM/4tP+Z+/HPKM15K5U5K+4pqf6czKrbIDpkT/kP8bGg=="
)
CONSENT_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
CONSENT_GRANTED = {
    "notification": {
        "status": "GRANTED",
        "consentId": CONSENT_ID,
        "consentDetail": {
            "schemaVersion": "v3",
            "consentId": CONSENT_ID,
            "createdAt": "2024-05-01T05:10:20.123Z",
            "patient": {"id": "abc@sbx"},
            "careContexts": [
                {"patientReference": "batman@tmh", "careContextReference": "Episode1"}
            ],
            "purpose": {"text": "Care Management", "code": "CAREMGT", "refUri": "www.abc.com"},
            "hip": {"id": "cowin_hip_01", "name": "Cowin", "type": "HIP"},
            "hiu": {"id": "cowin_hiu_01", "name": "Cowin", "type": "HIU"},
            "consentManager": {"id": "abdm"},
            "requester": {
                "name": "abc@sbx",
                "identifier": {
                    "value": "REG1",
                    "type": "MH1001",
                    "system": "https://www.sample.com",
                },
            },
            "hiTypes": ["Prescription"],
            "permission": {
                "accessMode": "VIEW",
                "dateRange": {"from": "2021-09-28T12:30:08.573Z", "to": "2021-09-28T12:30:08.573Z"},
                "dataEraseAt": "2021-09-28T12:30:08.573Z",
                "frequency": {"unit": "HOUR", "value": 1, "repeats": 0},
            },
        },
        "signature": SIGNATURE,
        "grantAcknowledgement": False,
    }
}

# The published Fidelius vector (mgrmtech/fidelius-cli README; tests/abdm/test_fidelius.py).
HIU_PRIVATE = "DMxHPri8d7IT23KgLk281zZenMfVHSdeamq0RhwlIBk="
HIU_NONCE = "6uj1RdDUbcpI3lVMZvijkMC8Te20O4Bcyz0SyivX8Eg="
HIP_PRIVATE = "AYhVZpbVeX4KS5Qm/W0+9Ye2q3rnVVGmqRICmseWni4="
HIP_NONCE = "lmXgblZwotx+DfBgKJF0lZXtAXgBEYr5khh79Zytr2Y="

# CMDF, /api/v3/hip/health-information/request, as documented. Its keyValue is a valid
# curve25519 point; its nonce example is a UUID, which no Fidelius peer can use.
DOCUMENTED_KEY = (
    "BFN7KTdOT0jIAExG2A8Jg+01wMPWxptiGqwHRVvtiVEsUq2FR7P2UdqZxJyPJSeR6muai21iQhasNxnhh8I5M+g="
)
HI_REQUEST_DOCUMENTED = {
    "transactionId": "49455d89-cb13-483d-ad71-7a57d5f669a8",
    "hiRequest": {
        "consent": {"id": "18235d89-cb13-479d-ad71-7a57d5f669a8"},
        "dateRange": {"from": "2022-10-06T15:10:00.587Z", "to": "2022-11-06T15:10:00.587Z"},
        "dataPushUrl": "https://live.ndhm.gov.in/api-hiu/data/notification",
        "keyMaterial": {
            "cryptoAlg": "ECDH",
            "curve": "curve25519",
            "dhPublicKey": {
                "expiry": "2022-12-28T13:18:20.742Z",
                "parameters": "Ephemeral public key",
                "keyValue": DOCUMENTED_KEY,
            },
            "nonce": "28236d89-cb13-479d-ad71-7a57d5f669a9",
        },
    },
}
HI_REQUEST = copy.deepcopy(HI_REQUEST_DOCUMENTED)
HI_REQUEST["hiRequest"]["keyMaterial"]["nonce"] = HIU_NONCE  # type: ignore[index]

# RAW/patient-share.yaml, /api/v3/hip/patient/share. yearOfBirth "9999" stands as "1990".
SHARE = {
    "intent": "PROFILE_SHARE",
    "metaData": {
        "hipId": "HIP_1",
        "context": "6",
        "hprId": "abdulkalam@hpr.abdm",
        "latitude": 20.5937,
        "longitude": 78.9629,
    },
    "profile": {
        "patient": {
            "abhaNumber": "91-7507-6821-7770",
            "abhaAddress": "abc@sbx",
            "name": "Abdul Kalam",
            "gender": "M",
            "dayOfBirth": "1",
            "monthOfBirth": "8",
            "yearOfBirth": "1990",
            "address": {
                "line": "Address line 1",
                "district": "Coimbatore",
                "state": "Tamil Nadu",
                "pincode": "641050",
            },
            "phoneNumber": "9876543210",
        }
    },
}

# RAW/link-token.yaml, /api/v3/hip/token/on-generate-token, success and error branches.
LINK_TOKEN = "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiJ2YXNhbnRoYWt1bWFyLmtlc2F2.c2lnbmF0dXJl"
ON_GENERATE_TOKEN = {
    "abhaAddress": "abc@sbx",
    "linkToken": LINK_TOKEN,
    "response": {"requestId": REQUEST_ID},
}
ON_GENERATE_TOKEN_ERROR = {
    "error": {"code": "ABDM-1027", "message": "You are blocked. Please try again after 24 hours."},
    "response": {"requestId": REQUEST_ID},
}


def changed(body: dict[str, Any], edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    edit(copied)
    return copied


def refusal(parse: Callable[[Any], object], body: Any) -> MessageError:
    with pytest.raises(MessageError) as caught:
        parse(body)
    return caught.value


# --- discover ---------------------------------------------------------------------------------


def test_discover_reads_the_documented_v3_body() -> None:
    got = messages.parse_discover(DISCOVER)
    assert got.transaction_id == TXN
    assert got.patient_id == "abc@abdm"
    assert (got.name, got.gender, got.year_of_birth) == ("Abdul Kalam", "M", 1999)
    assert got.identifier("MR") == "+919876543210"
    assert got.identifier("MOBILE") == "+9198765*****"
    assert got.identifier("MOBILE", verified_only=True) is None


def test_discover_reads_a_v05_body_too() -> None:
    got = messages.parse_discover(DISCOVER_V05)
    assert got.patient_id == "hinapatel79@ndhm"
    assert got.identifier("MOBILE", verified_only=True) == "+919800083232"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda b: b.pop("transactionId"), "transactionId"),
        (lambda b: b.pop("patient"), "patient"),
        (lambda b: b["patient"].pop("name"), "patient.name"),
        (lambda b: b["patient"].update(name="  "), "patient.name"),
        (lambda b: b["patient"].update(gender="X"), "patient.gender"),
        (lambda b: b["patient"].update(yearOfBirth="1999"), "patient.yearOfBirth"),
        (lambda b: b["patient"].update(yearOfBirth=9999), "patient.yearOfBirth"),
        (lambda b: b["patient"].update(yearOfBirth=True), "patient.yearOfBirth"),
        (lambda b: b["patient"].pop("verifiedIdentifiers"), "patient.verifiedIdentifiers"),
        (lambda b: b["patient"].update(verifiedIdentifiers={}), "patient.verifiedIdentifiers"),
        (
            lambda b: b["patient"]["verifiedIdentifiers"][0].pop("value"),
            "patient.verifiedIdentifiers[0].value",
        ),
        (
            lambda b: b["patient"].update(unverifiedIdentifiers=["MOBILE"]),
            "patient.unverifiedIdentifiers[0]",
        ),
    ],
)
def test_discover_refusals_name_the_path(edit: Callable[[Any], object], field: str) -> None:
    assert refusal(messages.parse_discover, changed(DISCOVER, edit)).field == field


def test_a_body_that_is_not_an_object_is_refused_at_the_root() -> None:
    assert refusal(messages.parse_discover, [DISCOVER]).field == "$"


# --- link init / confirm ----------------------------------------------------------------------


def test_link_init_reads_the_documented_v3_body() -> None:
    got = messages.parse_link_init(LINK_INIT)
    assert got.transaction_id == TXN
    assert got.abha_address == "sample@sbx"
    assert got.patient_reference == "abc123"
    assert got.care_context_references == ("abc123",)
    assert got.hi_types == (HiType.PRESCRIPTION,)


def test_link_init_gathers_care_contexts_of_every_hi_type() -> None:
    body = changed(
        LINK_INIT,
        lambda b: b["patient"].append(
            {
                "referenceNumber": "abc123",
                "display": "Test",
                "careContexts": [{"referenceNumber": "lab-7"}, {"referenceNumber": "lab-8"}],
                "hiType": "DiagnosticReport",
                "count": 2,
            }
        ),
    )
    got = messages.parse_link_init(body)
    assert got.care_context_references == ("abc123", "lab-7", "lab-8")
    assert got.hi_types == (HiType.PRESCRIPTION, HiType.DIAGNOSTIC_REPORT)


def test_link_init_reads_the_v05_single_patient_object() -> None:
    got = messages.parse_link_init(LINK_INIT_V05)
    assert got.abha_address == "hinapatel79@ndhm"
    assert got.patient_reference == "TMH-PUID-001"
    assert got.care_context_references == ("RVH1008", "NCC1701")
    assert got.hi_types == ()


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda b: b.pop("abhaAddress"), "abhaAddress"),
        (lambda b: b.update(patient=[]), "patient"),
        (lambda b: b.update(patient="abc123"), "patient"),
        (lambda b: b["patient"][0].pop("referenceNumber"), "patient[0].referenceNumber"),
        (lambda b: b["patient"][0].update(careContexts=[]), "patient[0].careContexts"),
        (
            lambda b: b["patient"][0]["careContexts"][0].pop("referenceNumber"),
            "patient[0].careContexts[0].referenceNumber",
        ),
        (lambda b: b["patient"][0].update(hiType="XRay"), "patient[0].hiType"),
        (lambda b: b["patient"][0].pop("hiType"), "patient[0].hiType"),
        (
            lambda b: b["patient"].append({**b["patient"][0], "referenceNumber": "other"}),
            "patient[1].referenceNumber",
        ),
    ],
)
def test_link_init_refusals_name_the_path(edit: Callable[[Any], object], field: str) -> None:
    assert refusal(messages.parse_link_init, changed(LINK_INIT, edit)).field == field


def test_link_confirm_reads_the_documented_body() -> None:
    got = messages.parse_link_confirm(LINK_CONFIRM)
    assert got.link_reference == "d353b782-bfdf-4224-9f8d-da2cadc20c0d"
    assert got.token == "123456"


def test_link_confirm_gives_back_the_leading_zero_an_integer_token_lost() -> None:
    body = changed(LINK_CONFIRM, lambda b: b["confirmation"].update(token=4321))
    assert messages.parse_link_confirm(body).token == "004321"
    as_text = changed(LINK_CONFIRM, lambda b: b["confirmation"].update(token="004321"))
    assert messages.parse_link_confirm(as_text).token == "004321"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda b: b.pop("confirmation"), "confirmation"),
        (lambda b: b["confirmation"].pop("token"), "confirmation.token"),
        (lambda b: b["confirmation"].update(token=1_234_567), "confirmation.token"),
        (lambda b: b["confirmation"].update(token=[1]), "confirmation.token"),
        (lambda b: b["confirmation"].pop("linkRefNumber"), "confirmation.linkRefNumber"),
    ],
)
def test_link_confirm_refusals_name_the_path(edit: Callable[[Any], object], field: str) -> None:
    assert refusal(messages.parse_link_confirm, changed(LINK_CONFIRM, edit)).field == field


# --- consent notify ---------------------------------------------------------------------------


def test_consent_grant_reads_the_documented_artefact() -> None:
    got = messages.parse_consent_notify(CONSENT_GRANTED)
    assert got.status is ConsentStatus.GRANTED
    assert got.consent_id == CONSENT_ID
    assert got.signature == SIGNATURE
    artefact = got.artefact
    assert artefact is not None
    assert artefact.hip_id == "cowin_hip_01"
    assert artefact.patient_id == "abc@sbx"
    assert artefact.purpose_code == "CAREMGT"
    assert [(c.patient_reference, c.care_context_reference) for c in artefact.care_contexts] == [
        ("batman@tmh", "Episode1")
    ]
    assert artefact.hi_types == (HiType.PRESCRIPTION,)
    assert artefact.access_mode == "VIEW"
    instant = datetime(2021, 9, 28, 12, 30, 8, 573000, tzinfo=UTC)
    assert artefact.date_range == DateRange(instant, instant)
    assert artefact.data_erase_at == instant
    assert (artefact.frequency.unit, artefact.frequency.value, artefact.frequency.repeats) == (
        "HOUR",
        1,
        0,
    )


@pytest.mark.parametrize("status", ["REVOKED", "EXPIRED", "DENIED"])
def test_revocation_expiry_and_denial_need_only_the_consent_id(status: str) -> None:
    # CMDF: "If consent is revoked, then status=REVOKED, and consentId specifies which
    # consent artefact is revoked" (likewise EXPIRED).
    got = messages.parse_consent_notify({"notification": {"status": status, "consentId": "c-1"}})
    assert got.status == status
    assert got.artefact is None
    assert got.signature is None


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda b: b.pop("notification"), "notification"),
        (lambda b: b["notification"].update(status="REQUESTED"), "notification.status"),
        (lambda b: b["notification"].pop("consentId"), "notification.consentId"),
        (lambda b: b["notification"].pop("consentDetail"), "notification.consentDetail"),
        (lambda b: b["notification"].pop("signature"), "notification.signature"),
        (lambda b: b["notification"].update(signature="not base64!"), "notification.signature"),
        (
            lambda b: b["notification"]["consentDetail"].update(consentId="other"),
            "notification.consentDetail.consentId",
        ),
        (
            lambda b: b["notification"]["consentDetail"]["hip"].pop("id"),
            "notification.consentDetail.hip.id",
        ),
        (
            lambda b: b["notification"]["consentDetail"]["careContexts"][0].pop(
                "careContextReference"
            ),
            "notification.consentDetail.careContexts[0].careContextReference",
        ),
        (
            lambda b: b["notification"]["consentDetail"].update(hiTypes=["Prescription", "Xray"]),
            "notification.consentDetail.hiTypes[1]",
        ),
        (
            lambda b: b["notification"]["consentDetail"].update(hiTypes=[]),
            "notification.consentDetail.hiTypes",
        ),
        (
            lambda b: b["notification"]["consentDetail"]["permission"].update(accessMode="EDIT"),
            "notification.consentDetail.permission.accessMode",
        ),
        (
            lambda b: b["notification"]["consentDetail"]["permission"]["dateRange"].pop("to"),
            "notification.consentDetail.permission.dateRange.to",
        ),
        (
            lambda b: b["notification"]["consentDetail"]["permission"]["dateRange"].update(
                {"from": "2021-09-29T00:00:00.000Z"}
            ),
            "notification.consentDetail.permission.dateRange.to",
        ),
        (
            lambda b: b["notification"]["consentDetail"]["permission"].update(
                dataEraseAt="28/09/2021"
            ),
            "notification.consentDetail.permission.dataEraseAt",
        ),
        (
            lambda b: b["notification"]["consentDetail"]["permission"]["frequency"].update(
                unit="SECOND"
            ),
            "notification.consentDetail.permission.frequency.unit",
        ),
    ],
)
def test_consent_refusals_name_the_path(edit: Callable[[Any], object], field: str) -> None:
    body = changed(CONSENT_GRANTED, edit)
    assert refusal(messages.parse_consent_notify, body).field == field


# --- health information request ---------------------------------------------------------------


def test_hi_request_reads_the_documented_body_with_a_real_nonce() -> None:
    got = messages.parse_health_information_request(HI_REQUEST)
    assert got.transaction_id == "49455d89-cb13-483d-ad71-7a57d5f669a8"
    assert got.consent_id == "18235d89-cb13-479d-ad71-7a57d5f669a8"
    assert got.data_push_url == "https://live.ndhm.gov.in/api-hiu/data/notification"
    assert got.date_range.start == datetime(2022, 10, 6, 15, 10, 0, 587000, tzinfo=UTC)
    assert got.date_range.end == datetime(2022, 11, 6, 15, 10, 0, 587000, tzinfo=UTC)
    assert got.receiver == fidelius.PeerKey(DOCUMENTED_KEY, HIU_NONCE)
    assert got.receiver_key_expiry == datetime(2022, 12, 28, 13, 18, 20, 742000, tzinfo=UTC)


def test_the_documented_uuid_nonce_is_refused() -> None:
    error = refusal(messages.parse_health_information_request, HI_REQUEST_DOCUMENTED)
    assert error.field == "hiRequest.keyMaterial.nonce"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda b: b.pop("transactionId"), "transactionId"),
        (lambda b: b["hiRequest"].pop("consent"), "hiRequest.consent"),
        (lambda b: b["hiRequest"]["consent"].pop("id"), "hiRequest.consent.id"),
        (lambda b: b["hiRequest"]["dateRange"].pop("from"), "hiRequest.dateRange.from"),
        (
            lambda b: b["hiRequest"]["dateRange"].update(to="2022-10-01T00:00:00.000Z"),
            "hiRequest.dateRange.to",
        ),
        (
            lambda b: b["hiRequest"].update(dataPushUrl="http://hiu.example/push"),
            "hiRequest.dataPushUrl",
        ),
        (lambda b: b["hiRequest"].update(dataPushUrl="/push"), "hiRequest.dataPushUrl"),
        (
            lambda b: b["hiRequest"]["keyMaterial"].update(cryptoAlg="RSA"),
            "hiRequest.keyMaterial.cryptoAlg",
        ),
        (
            lambda b: b["hiRequest"]["keyMaterial"].update(curve="P-256"),
            "hiRequest.keyMaterial.curve",
        ),
        (
            lambda b: b["hiRequest"]["keyMaterial"]["dhPublicKey"].update(
                keyValue="BAAA" + DOCUMENTED_KEY[4:]
            ),
            "hiRequest.keyMaterial.dhPublicKey.keyValue",
        ),
        (
            lambda b: b["hiRequest"]["keyMaterial"]["dhPublicKey"].pop("expiry"),
            "hiRequest.keyMaterial.dhPublicKey.expiry",
        ),
        (
            lambda b: b["hiRequest"]["keyMaterial"].update(nonce=HIU_NONCE[:-4] + "===="),
            "hiRequest.keyMaterial.nonce",
        ),
    ],
)
def test_hi_request_refusals_name_the_path(edit: Callable[[Any], object], field: str) -> None:
    body = changed(HI_REQUEST, edit)
    assert refusal(messages.parse_health_information_request, body).field == field


# --- share profile and on-generate-token ------------------------------------------------------


def test_share_reads_the_documented_profile() -> None:
    got = messages.parse_share_profile(SHARE)
    assert (got.hip_id, got.context, got.hpr_id) == ("HIP_1", "6", "abdulkalam@hpr.abdm")
    assert (got.latitude, got.longitude) == (20.5937, 78.9629)
    assert got.abha_number == "91750768217770"
    assert got.abha_address == "abc@sbx"
    assert (got.name, got.gender) == ("Abdul Kalam", "M")
    assert got.birth_date == date(1990, 8, 1)
    assert got.mobile == "9876543210"
    assert got.address.pincode == "641050"
    assert got.address.district == "Coimbatore"


def test_share_without_day_and_month_has_only_a_year() -> None:
    body = changed(
        SHARE, lambda b: b["profile"]["patient"].update(dayOfBirth=None, monthOfBirth=None)
    )
    got = messages.parse_share_profile(body)
    assert (got.year_of_birth, got.birth_date) == (1990, None)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda b: b.update(intent="RECORD_SHARE"), "intent"),
        (lambda b: b.pop("metaData"), "metaData"),
        (lambda b: b["metaData"].pop("hipId"), "metaData.hipId"),
        (lambda b: b["metaData"].pop("context"), "metaData.context"),
        (lambda b: b["metaData"].update(latitude="north"), "metaData.latitude"),
        (lambda b: b["profile"].pop("patient"), "profile.patient"),
        (lambda b: b["profile"]["patient"].pop("abhaAddress"), "profile.patient.abhaAddress"),
        (
            lambda b: b["profile"]["patient"].update(abhaNumber="91-7507-6821"),
            "profile.patient.abhaNumber",
        ),
        (lambda b: b["profile"]["patient"].update(gender="male"), "profile.patient.gender"),
        (
            lambda b: b["profile"]["patient"].update(yearOfBirth="9999"),
            "profile.patient.yearOfBirth",
        ),
        (
            lambda b: b["profile"]["patient"].update(monthOfBirth="13"),
            "profile.patient.monthOfBirth",
        ),
        (
            lambda b: b["profile"]["patient"].update(dayOfBirth="31", monthOfBirth="2"),
            "profile.patient.dayOfBirth",
        ),
        (lambda b: b["profile"]["patient"].pop("address"), "profile.patient.address"),
    ],
)
def test_share_refusals_name_the_path(edit: Callable[[Any], object], field: str) -> None:
    assert refusal(messages.parse_share_profile, changed(SHARE, edit)).field == field


def test_on_generate_token_reads_the_token() -> None:
    got = messages.parse_on_generate_token(ON_GENERATE_TOKEN)
    assert got.ok
    assert (got.request_id, got.abha_address, got.link_token) == (
        uuid.UUID(REQUEST_ID),
        "abc@sbx",
        LINK_TOKEN,
    )


def test_on_generate_token_reads_the_error_and_drops_the_separator() -> None:
    got = messages.parse_on_generate_token(ON_GENERATE_TOKEN_ERROR)
    assert not got.ok
    assert got.error == messages.GatewayFault(
        "ABDM-1027", "You are blocked. Please try again after 24 hours."
    )
    spaced = changed(ON_GENERATE_TOKEN_ERROR, lambda b: b["error"].update(code="ABDM-1051: "))
    fault = messages.parse_on_generate_token(spaced).error
    assert fault is not None
    assert fault.code == "ABDM-1051"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda b: b.pop("response"), "response"),
        (lambda b: b["response"].pop("requestId"), "response.requestId"),
        # Every call OPDesk makes carries a UUID: anything else answers none of them.
        (lambda b: b["response"].update(requestId="not-a-uuid"), "response.requestId"),
        (lambda b: b.pop("linkToken"), "linkToken"),
        (lambda b: b.update(linkToken="abc\r\nX-Evil: 1"), "linkToken"),
        (lambda b: b.pop("abhaAddress"), "abhaAddress"),
        (lambda b: b.update(error={"message": "no code"}), "error.code"),
    ],
)
def test_on_generate_token_refusals_name_the_path(
    edit: Callable[[Any], object], field: str
) -> None:
    body = changed(ON_GENERATE_TOKEN, edit)
    assert refusal(messages.parse_on_generate_token, body).field == field


def test_on_link_carecontext_reads_the_call_answered_and_refuses_what_names_none() -> None:
    answer: dict[str, Any] = {"abhaAddress": "abc@sbx", "response": {"requestId": REQUEST_ID}}
    assert messages.parse_on_link_carecontext(answer) == messages.LinkResult(
        uuid.UUID(REQUEST_ID), None
    )
    for wrong in ("not-a-uuid", "", 7):
        body = copy.deepcopy(answer)
        body["response"]["requestId"] = wrong
        assert refusal(messages.parse_on_link_carecontext, body).field == "response.requestId"


# --- builders ---------------------------------------------------------------------------------

VISIT = CareContext(
    "visit-2025-03-05", "Visit on 5 Mar 2025 with Dr. Asha Rao", HiType.OP_CONSULTATION
)
RX = CareContext("rx-2025-03-05", "Visit on 5 Mar 2025 with Dr. Asha Rao", HiType.PRESCRIPTION)
VISIT_2 = CareContext(
    "visit-2025-04-02", "Visit on 2 Apr 2025 with Dr. Asha Rao", HiType.OP_CONSULTATION
)


def test_on_discover_groups_care_contexts_by_hi_type_with_counts() -> None:
    body = messages.on_discover(
        request_id=REQUEST_ID,
        transaction_id=TXN,
        patient_reference="9b2c5d1e-patient",
        patient_display="Amit Sharma",
        care_contexts=[VISIT, RX, VISIT_2],
        matched_by=["MOBILE"],
    )
    assert body == {
        "transactionId": TXN,
        "patient": [
            {
                "referenceNumber": "9b2c5d1e-patient",
                "display": "Amit Sharma",
                "careContexts": [
                    {"referenceNumber": VISIT.reference, "display": VISIT.display},
                    {"referenceNumber": VISIT_2.reference, "display": VISIT_2.display},
                ],
                "hiType": "OPConsultation",
                "count": 2,
            },
            {
                "referenceNumber": "9b2c5d1e-patient",
                "display": "Amit Sharma",
                "careContexts": [{"referenceNumber": RX.reference, "display": RX.display}],
                "hiType": "Prescription",
                "count": 1,
            },
        ],
        "matchedBy": ["MOBILE"],
        "response": {"requestId": REQUEST_ID},
    }
    json.dumps(body)  # plain JSON all the way down


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient_display": "अमित शर्मा"}, "patient[0].display"),
        ({"patient_reference": "a;b"}, "patient[0].referenceNumber"),
        ({"matched_by": []}, "matchedBy"),
        ({"matched_by": ["NAME"]}, "matchedBy[0]"),
        ({"care_contexts": []}, "patient"),
        ({"care_contexts": [VISIT, VISIT]}, "patient[0].careContexts[1].referenceNumber"),
        ({"request_id": "not-a-uuid"}, "response.requestId"),
    ],
)
def test_on_discover_refuses_what_abdm_would(change: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "transaction_id": TXN,
        "patient_reference": "p-1",
        "patient_display": "Amit Sharma",
        "care_contexts": [VISIT],
        "matched_by": ["MOBILE"],
    } | change
    with pytest.raises(MessageError) as caught:
        messages.on_discover(**args)
    assert caught.value.field == field


def test_on_discover_error_carries_code_message_and_response() -> None:
    body = messages.on_discover_error(
        request_id=REQUEST_ID, transaction_id=TXN, code="ABDM-1001", message="No data found"
    )
    assert body == {
        "transactionId": TXN,
        "error": {"code": "ABDM-1001", "message": "No data found"},
        "response": {"requestId": REQUEST_ID},
    }
    with pytest.raises(MessageError, match=r"error\.code"):
        messages.on_discover_error(
            request_id=REQUEST_ID, transaction_id=TXN, code="oops", message="No data found"
        )


def test_on_init_names_the_link_reference_medium_and_expiry() -> None:
    expiry = datetime(
        2024, 5, 1, 10, 52, 34, 123000, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    body = messages.on_init(
        request_id=REQUEST_ID,
        transaction_id=TXN,
        link_reference="d353b782-bfdf-4224-9f8d-da2cadc20c0d",
        expires_at=expiry,
        hint="XXXXXX3210",
    )
    assert body == {
        "transactionId": TXN,
        "link": {
            "referenceNumber": "d353b782-bfdf-4224-9f8d-da2cadc20c0d",
            "authenticationType": "DIRECT",
            "meta": {
                "communicationMedium": "MOBILE",
                "communicationHint": "XXXXXX3210",
                "communicationExpiry": "2024-05-01T05:22:34.123Z",
            },
        },
        "response": {"requestId": REQUEST_ID},
    }
    with pytest.raises(MessageError, match="communicationExpiry"):
        messages.on_init(
            request_id=REQUEST_ID,
            transaction_id=TXN,
            link_reference="ref",
            expires_at=datetime(2024, 5, 1, 5, 22),
        )


def test_on_confirm_lists_the_linked_care_contexts() -> None:
    body = messages.on_confirm(
        request_id=REQUEST_ID,
        patient_reference="p-1",
        patient_display="Amit Sharma",
        care_contexts=[RX],
    )
    assert body["response"] == {"requestId": REQUEST_ID}
    assert body["patient"] == [
        {
            "referenceNumber": "p-1",
            "display": "Amit Sharma",
            "careContexts": [{"referenceNumber": RX.reference, "display": RX.display}],
            "hiType": "Prescription",
            "count": 1,
        }
    ]
    error = messages.on_confirm_error(request_id=REQUEST_ID, code="ABDM-1001", message="Bad OTP")
    assert error == {
        "error": {"code": "ABDM-1001", "message": "Bad OTP"},
        "response": {"requestId": REQUEST_ID},
    }


@pytest.mark.parametrize("status", list(ConsentStatus))
def test_every_consent_notification_is_acknowledged_alike(status: ConsentStatus) -> None:
    body = changed(CONSENT_GRANTED, lambda b: b["notification"].update(status=status.value))
    notification = messages.parse_consent_notify(body)
    ack = messages.consent_on_notify(request_id=REQUEST_ID, consent_id=notification.consent_id)
    assert ack == {
        "acknowledgement": {"status": "OK", "consentId": CONSENT_ID},
        "response": {"requestId": REQUEST_ID},
    }


def test_hip_on_request_acknowledges_or_refuses() -> None:
    assert messages.hip_on_request(request_id=REQUEST_ID, transaction_id=TXN) == {
        "hiRequest": {"transactionId": TXN, "sessionStatus": "ACKNOWLEDGED"},
        "response": {"requestId": REQUEST_ID},
    }
    refused = messages.hip_on_request_error(
        request_id=REQUEST_ID, code="ABDM-1001", message="Consent expired"
    )
    assert refused == {
        "error": {"code": "ABDM-1001", "message": "Consent expired"},
        "response": {"requestId": REQUEST_ID},
    }
    assert "hiRequest" not in refused


def test_data_push_encrypts_for_the_hiu_and_carries_the_hips_key_material() -> None:
    hiu = fidelius.KeyMaterial.from_base64(HIU_PRIVATE, HIU_NONCE)
    hip = fidelius.KeyMaterial.from_base64(HIP_PRIVATE, HIP_NONCE)
    request = messages.parse_health_information_request(
        changed(
            HI_REQUEST,
            lambda b: b["hiRequest"]["keyMaterial"]["dhPublicKey"].update(keyValue=hiu.public_key),
        )
    )
    bundle = json.dumps({"resourceType": "Bundle", "type": "document", "id": "b-1"})
    entry = messages.encrypt_entry(
        "visit-2025-03-05", bundle, sender=hip, receiver=request.receiver
    )
    expiry = datetime(2025, 3, 6, 10, 0, tzinfo=UTC)
    body = messages.data_push(
        transaction_id=request.transaction_id, entries=[entry], sender=hip, key_expiry=expiry
    )

    assert (body["pageNumber"], body["pageCount"]) == (1, 1)
    assert body["transactionId"] == request.transaction_id
    assert body["keyMaterial"] == fidelius.key_material_json(hip, expiry=expiry)
    assert body["keyMaterial"]["dhPublicKey"]["keyValue"] == hip.public_key
    assert body["keyMaterial"]["nonce"] == HIP_NONCE
    [pushed] = body["entries"]
    assert pushed["media"] == "application/fhir+json"
    assert pushed["careContextReference"] == "visit-2025-03-05"
    assert pushed["checksum"] == hashlib.md5(bundle.encode(), usedforsecurity=False).hexdigest()
    # What the HIU does on receipt: its own key against the HIP's key material.
    peer = fidelius.read_key_material(body["keyMaterial"])
    plain = fidelius.decrypt(
        pushed["content"],
        receiver=hiu,
        sender_public_b64=peer.public_key,
        sender_nonce_b64=peer.nonce,
    )
    assert plain == bundle


def test_checksum_is_lowercase_hex_md5_of_the_utf8_plaintext() -> None:
    assert messages.checksum("") == "d41d8cd98f00b204e9800998ecf8427e"
    assert re.fullmatch(r"[0-9a-f]{32}", messages.checksum("रोगी"))


def test_data_push_checks_pages_entries_and_expiry() -> None:
    hip = fidelius.KeyMaterial.from_base64(HIP_PRIVATE, HIP_NONCE)
    good = {
        "content": "x",
        "media": "application/fhir+json",
        "checksum": "y",
        "careContextReference": "r",
    }
    expiry = datetime(2025, 3, 6, tzinfo=UTC)
    with pytest.raises(MessageError, match="pageNumber"):
        messages.data_push(
            transaction_id=TXN, entries=[good], sender=hip, key_expiry=expiry, page_number=0
        )
    with pytest.raises(MessageError, match="pageNumber"):
        messages.data_push(
            transaction_id=TXN,
            entries=[good],
            sender=hip,
            key_expiry=expiry,
            page_number=3,
            page_count=2,
        )
    with pytest.raises(MessageError, match=r"entries\[1\]"):
        messages.data_push(
            transaction_id=TXN, entries=[good, {"content": "x"}], sender=hip, key_expiry=expiry
        )
    with pytest.raises(MessageError, match="expiry"):
        messages.data_push(
            transaction_id=TXN, entries=[good], sender=hip, key_expiry=datetime(2025, 3, 6)
        )


def test_notify_reports_each_care_context_and_the_session() -> None:
    done = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    body = messages.health_information_notify(
        consent_id=CONSENT_ID,
        transaction_id=TXN,
        hip_id="IN2810014366",
        outcomes=[
            TransferOutcome("visit-1", delivered=True),
            TransferOutcome("visit-2", delivered=False, description="No records in the range"),
        ],
        done_at=done,
    )
    assert body == {
        "notification": {
            "consentId": CONSENT_ID,
            "transactionId": TXN,
            "doneAt": "2024-01-15T10:30:00.000Z",
            "notifier": {"type": "HIP", "id": "IN2810014366"},
            "statusNotification": {
                "sessionStatus": "TRANSFERRED",
                "hipId": "IN2810014366",
                "statusResponses": [
                    {
                        "careContextReference": "visit-1",
                        "hiStatus": "DELIVERED",
                        "description": "Delivered",
                    },
                    {
                        "careContextReference": "visit-2",
                        "hiStatus": "ERRORED",
                        "description": "No records in the range",
                    },
                ],
            },
        }
    }
    failed = messages.health_information_notify(
        consent_id=CONSENT_ID,
        transaction_id=TXN,
        hip_id="IN2810014366",
        outcomes=[TransferOutcome("visit-1", delivered=False)],
        done_at=done,
    )
    assert failed["notification"]["statusNotification"]["sessionStatus"] == "FAILED"


def test_generate_token_body_and_its_header() -> None:
    body = messages.generate_token(
        abha_address="amit.sharma@sbx",
        abha_number="91-7507-6821-7770",
        name="Amit Sharma",
        gender="M",
        year_of_birth=1985,
    )
    assert body == {
        "abhaNumber": "91750768217770",
        "abhaAddress": "amit.sharma@sbx",
        "name": "Amit Sharma",
        "gender": "M",
        "yearOfBirth": 1985,
    }
    assert messages.hip_headers("IN2810014366") == {"X-HIP-ID": "IN2810014366"}
    without_number = messages.generate_token(
        abha_address="amit.sharma@sbx", name="Amit Sharma", gender="M", year_of_birth=1985
    )
    assert "abhaNumber" not in without_number


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "अमित शर्मा"}, "name"),
        ({"gender": "male"}, "gender"),
        ({"year_of_birth": 2201}, "yearOfBirth"),
        ({"abha_address": "amit.sharma"}, "abhaAddress"),
        ({"abha_number": "1234"}, "abhaNumber"),
    ],
)
def test_generate_token_refuses_what_abdm_would(change: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {
        "abha_address": "amit.sharma@sbx",
        "name": "Amit Sharma",
        "gender": "M",
        "year_of_birth": 1985,
    } | change
    with pytest.raises(MessageError) as caught:
        messages.generate_token(**args)
    assert caught.value.field == field


def test_link_carecontext_body_and_its_link_token_header() -> None:
    body = messages.link_carecontext(
        abha_address="amit.sharma@sbx",
        abha_number="91750768217770",
        patient_reference="p-1",
        patient_display="Amit Sharma",
        care_contexts=[VISIT],
    )
    assert body == {
        "abhaNumber": "91750768217770",
        "abhaAddress": "amit.sharma@sbx",
        "patient": [
            {
                "referenceNumber": "p-1",
                "display": "Amit Sharma",
                "careContexts": [{"referenceNumber": VISIT.reference, "display": VISIT.display}],
                "hiType": "OPConsultation",
                "count": 1,
            }
        ],
    }
    assert messages.link_headers("IN2810014366", LINK_TOKEN) == {
        "X-HIP-ID": "IN2810014366",
        "X-LINK-TOKEN": LINK_TOKEN,
    }
    with pytest.raises(MessageError, match="X-LINK-TOKEN"):
        messages.link_headers("IN2810014366", "token\r\nInjected: yes")


def test_on_share_answers_with_the_token_number() -> None:
    body = messages.on_share(
        request_id=REQUEST_ID,
        abha_address="abc@sbx",
        context="6",
        token_number="0007",
        expiry_seconds=1800,
    )
    assert body == {
        "acknowledgement": {
            "status": "SUCCESS",
            "abhaAddress": "abc@sbx",
            "profile": {"context": "6", "tokenNumber": "0007", "expiry": 1800},
        },
        "response": {"requestId": REQUEST_ID},
    }
    assert messages.on_share_error(
        request_id=REQUEST_ID, code="ABDM-9999", message="FAILURE at HIP"
    ) == {
        "error": {"code": "ABDM-9999", "message": "FAILURE at HIP"},
        "response": {"requestId": REQUEST_ID},
    }
    with pytest.raises(MessageError, match="expiry"):
        messages.on_share(
            request_id=REQUEST_ID,
            abha_address="abc@sbx",
            context="6",
            token_number="1",
            expiry_seconds=0,
        )


# --- date ranges ------------------------------------------------------------------------------

START = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
END = datetime(2024, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)
RANGE = DateRange(START, END)
MS = timedelta(milliseconds=1)


def test_consent_range_includes_both_ends() -> None:
    assert in_consent_range(START, RANGE)
    assert in_consent_range(END, RANGE)
    assert in_consent_range(START + (END - START) / 2, RANGE)


def test_consent_range_excludes_a_millisecond_outside() -> None:
    assert not in_consent_range(START - MS, RANGE)
    assert not in_consent_range(END + MS, RANGE)


def test_consent_range_compares_instants_not_wall_clocks() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    # 05:29 IST on 1 Jan is 23:59 UTC on 31 Dec: before the range.
    assert not in_consent_range(datetime(2024, 1, 1, 5, 29, tzinfo=ist), RANGE)
    assert in_consent_range(datetime(2024, 1, 1, 5, 30, tzinfo=ist), RANGE)


def test_consent_range_refuses_naive_instants_and_ranges() -> None:
    with pytest.raises(ValueError, match="aware"):
        in_consent_range(datetime(2024, 1, 5), RANGE)
    with pytest.raises(ValueError, match="aware"):
        DateRange(datetime(2024, 1, 1), END)
    with pytest.raises(ValueError, match="before"):
        DateRange(END, START)


def test_a_one_instant_range_holds_that_instant() -> None:
    point = DateRange(START, START)
    assert in_consent_range(START, point)
    assert not in_consent_range(START + MS, point)


def test_overlap_of_request_and_consent() -> None:
    request = DateRange(START - timedelta(days=10), START + timedelta(days=3))
    assert RANGE.overlap(request) == DateRange(START, START + timedelta(days=3))
    assert RANGE.overlap(DateRange(END + MS, END + timedelta(days=1))) is None


def test_a_timestamp_without_offset_is_read_as_utc() -> None:
    body = changed(
        CONSENT_GRANTED,
        lambda b: b["notification"]["consentDetail"]["permission"].update(
            dataEraseAt="2021-09-28T12:30:08.573"
        ),
    )
    artefact = messages.parse_consent_notify(body).artefact
    assert artefact is not None
    assert artefact.data_erase_at == datetime(2021, 9, 28, 12, 30, 8, 573000, tzinfo=UTC)


# --- display ----------------------------------------------------------------------------------

CLINICAL = re.compile(
    r"diagnos|fever|diabet|hypertens|tablet|capsule|syrup|\bmg\b|dose|test|report|scan|x-?ray|"
    r"blood|sugar|prescri|medicin|drug|lab|result|icd",
    re.IGNORECASE,
)
DISPLAY_CHARS = re.compile(r"[A-Za-z0-9_\-@,. \"':|()/]{1,255}")


def test_display_says_when_with_whom_and_where() -> None:
    got = care_context_display(date(2025, 3, 5), "Asha Rao", "Sunrise Clinic")
    assert got == "Visit on 5 Mar 2025 with Dr. Asha Rao at Sunrise Clinic"


def test_display_has_no_clinical_words_and_only_abdm_characters() -> None:
    for day in (date(2025, 1, 31), date(2024, 2, 29), date(2025, 12, 1)):
        got = care_context_display(day, "Dr. R. K. Iyer", "Shanti Nagar Family Clinic")
        assert not CLINICAL.search(got), got
        assert DISPLAY_CHARS.fullmatch(got), got


def test_display_takes_nothing_but_date_doctor_and_clinic() -> None:
    params = list(inspect.signature(care_context_display).parameters)
    assert params == ["visit_date", "doctor_name", "clinic_name"]
    with pytest.raises(TypeError):
        care_context_display(datetime(2025, 3, 5, 10, 0), "Asha Rao", "Sunrise Clinic")


def test_display_keeps_one_dr_and_folds_or_drops_what_abdm_cannot_take() -> None:
    assert care_context_display(date(2025, 3, 5), "dr  Asha Rao", "Sunrise Clinic") == (
        "Visit on 5 Mar 2025 with Dr. Asha Rao at Sunrise Clinic"
    )
    assert care_context_display(date(2025, 3, 5), "José Fernandes", "Clínica São Tomé") == (
        "Visit on 5 Mar 2025 with Dr. Jose Fernandes at Clinica Sao Tome"
    )
    assert care_context_display(date(2025, 3, 5), "आशा राव", "Sunrise Clinic") == (
        "Visit on 5 Mar 2025 at Sunrise Clinic"
    )
    assert care_context_display(date(2025, 3, 5), "", "") == "Visit on 5 Mar 2025"
    long = care_context_display(date(2025, 3, 5), "A" * 400, "B" * 400)
    assert DISPLAY_CHARS.fullmatch(long)


# --- HI types and paths -----------------------------------------------------------------------


def test_hi_types_are_abdms_eight_with_their_nrces_bundles() -> None:
    assert [t.value for t in messages.HI_TYPES] == [
        "OPConsultation",
        "Prescription",
        "DiagnosticReport",
        "DischargeSummary",
        "ImmunizationRecord",
        "HealthDocumentRecord",
        "WellnessRecord",
        "Invoice",
    ]
    assert HiType.OP_CONSULTATION.nrces_bundle == "OPConsultRecord"
    assert HiType.INVOICE.nrces_bundle == "InvoiceRecord"
    assert HiType.PRESCRIPTION.nrces_profile == (
        "https://nrces.in/ndhm/fhir/r4/StructureDefinition/PrescriptionRecord"
    )
    assert set(messages.NRCES_BUNDLE) == set(HiType)


def test_paths_of_both_versions() -> None:
    inbound = ("discover", "link_init", "link_confirm", "consent_notify", "share")
    for name in inbound:
        assert getattr(V3_PATHS, name).startswith("/api/v3/")
        assert getattr(V05_PATHS, name).startswith("/v0.5/")
    outbound = ("on_discover", "on_init", "on_confirm", "consent_on_notify", "on_share")
    for name in outbound:
        assert getattr(V3_PATHS, name).startswith("/api/hiecm/")
        assert getattr(V05_PATHS, name).startswith("/gateway/v0.5/")
    assert V3_PATHS.generate_token == "/api/hiecm/v3/token/generate-token"
    assert V3_PATHS.link_carecontext == "/api/hiecm/hip/v3/link/carecontext"
    assert V05_PATHS.generate_token is None
