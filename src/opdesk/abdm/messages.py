"""The HIP side of ABDM's M2 flows and of Scan & Share, as pure functions.

Parsers read what the gateway posts to OPDesk's bridge and raise ``MessageError(field,
reason)`` naming the JSON path of the first thing wrong (``hiRequest.keyMaterial.nonce``,
``patient[1].hiType``; ``$`` is the body itself). Builders return the plain dicts OPDesk
posts back. Nothing here does I/O, reads a clock or a database: callers pass "now".

Which version
-------------
OPDesk targets ABDM's **HIE-CM v3** APIs. Every flow here is documented for v3, so the
bodies built are v3 bodies: no ``requestId``/``timestamp`` inside the body (they travel as
the REQUEST-ID and TIMESTAMP headers, see gateway.py), and a callback names the call it
answers as ``response.requestId`` (v0.5 said ``resp.requestId``). ``V05_PATHS`` lists the
older gateway's paths only to recognise traffic from a bridge still registered on v0.5;
its bodies are not built here. The parsers read v3 bodies; a v0.5 body that differs from
v3 only by its ``requestId``/``timestamp`` envelope parses as well, and link init also
takes v0.5's single ``patient`` object. Scan & Share is parsed in its v3 shape only (v0.5's
``patient.userDemographics`` differs throughout).

Where v3 says less than v0.5, v0.5's documentation is followed and the place says so:
the per care context ``hiStatus`` of the HIP's notify (DELIVERED/ERRORED) and the meaning
of the data push ``checksum`` are spelt out in the v0.5 HIP specification.

Sources (read for facts only)
-----------------------------
* NHA's v3 OpenAPI files as published in the ABDM developer portal's repository
  nha-in/docs, folder ``catalogue/openapi/.raw/nha-2026-09-16/hiecm/``:
  ``user-initiated-linking.yaml`` (discover, init, confirm and their on- callbacks),
  ``hip-initiated-linking.yaml`` (``/api/hiecm/hip/v3/link/carecontext``, X-LINK-TOKEN),
  ``link-token.yaml`` (generate-token and on-generate-token), ``patient-share.yaml``
  (share and on-share), and ``catalogue/hiecm/openapi/.raw/nha-2026-09-16/hiecm/
  consent-management-data-flow.yaml`` (consent notify, health information request,
  on-request, the data push to ``dataPushUrl``).
* nha-in/docs ``catalogue/openapi/hiecm/v3/hiecm-m2.yaml`` (the portal's curated M2 file)
  and ``catalogue/verification/hiecm.endpoint.m2-hip-data-flow-notify.json`` for the
  HIP's ``/api/hiecm/data-flow/v3/health-information/notify`` body.
* The v0.5 HIP specification, APIs-guru/openapi-directory
  ``APIs/ndhm.gov.in/ndhm-hip/0.5/openapi.yaml`` (apisetu.gov.in ndhm-hip.yaml).
* Running HIPs, for what the documents leave open: NHA's ABDM wrapper
  (VenuAjitesh/ABDM-wrapper, ``src/main/java/in/nha/abdm/wrapper/v3/``), Open Healthcare
  Network's care_abdm (10bedicu/care_abdm, ``abdm/service/v3/gateway.py``) and ProjectEKA
  hip-service (``src/In.ProjectEKA.HipService/DataFlow/``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from opdesk.abdm import fidelius
from opdesk.abdm.gateway import timestamp


class MessageError(ValueError):
    """A body ABDM sent (or OPDesk was about to send) is not what the flow expects."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Paths:
    """One gateway version's paths. Inbound ones are relative to OPDesk's registered bridge
    URL (the gateway calls them); outbound ones to the gateway's host (OPDesk calls them).
    ``None``: the version has no such call."""

    # inbound: the gateway calls the bridge
    discover: str
    link_init: str
    link_confirm: str
    consent_notify: str
    health_information_request: str
    share: str
    on_generate_token: str | None
    on_link_carecontext: str
    # outbound: the bridge calls the gateway
    on_discover: str
    on_init: str
    on_confirm: str
    consent_on_notify: str
    health_information_on_request: str
    health_information_notify: str
    on_share: str
    generate_token: str | None
    link_carecontext: str


V3_PATHS: Final = Paths(
    discover="/api/v3/hip/patient/care-context/discover",
    link_init="/api/v3/hip/link/care-context/init",
    link_confirm="/api/v3/hip/link/care-context/confirm",
    consent_notify="/api/v3/consent/request/hip/notify",
    health_information_request="/api/v3/hip/health-information/request",
    share="/api/v3/hip/patient/share",
    on_generate_token="/api/v3/hip/token/on-generate-token",  # noqa: S106 (a path)
    on_link_carecontext="/api/v3/link/on_carecontext",
    on_discover="/api/hiecm/user-initiated-linking/v3/patient/care-context/on-discover",
    on_init="/api/hiecm/user-initiated-linking/v3/link/care-context/on-init",
    on_confirm="/api/hiecm/user-initiated-linking/v3/link/care-context/on-confirm",
    consent_on_notify="/api/hiecm/consent/v3/request/hip/on-notify",
    health_information_on_request="/api/hiecm/data-flow/v3/health-information/hip/on-request",
    health_information_notify="/api/hiecm/data-flow/v3/health-information/notify",
    on_share="/api/hiecm/patient-share/v3/on-share",
    generate_token="/api/hiecm/v3/token/generate-token",  # noqa: S106 (a path)
    link_carecontext="/api/hiecm/hip/v3/link/carecontext",
)

# v0.5's gateway lives under /gateway on its host (gateway.py's V05_SESSIONS_PATH); its
# link token came from the /v0.5/users/auth/* exchange, which has no one-call equivalent.
V05_PATHS: Final = Paths(
    discover="/v0.5/care-contexts/discover",
    link_init="/v0.5/links/link/init",
    link_confirm="/v0.5/links/link/confirm",
    consent_notify="/v0.5/consents/hip/notify",
    health_information_request="/v0.5/health-information/hip/request",
    share="/v0.5/patients/profile/share",
    on_generate_token=None,
    on_link_carecontext="/v0.5/links/link/on-add-contexts",
    on_discover="/gateway/v0.5/care-contexts/on-discover",
    on_init="/gateway/v0.5/links/link/on-init",
    on_confirm="/gateway/v0.5/links/link/on-confirm",
    consent_on_notify="/gateway/v0.5/consents/hip/on-notify",
    health_information_on_request="/gateway/v0.5/health-information/hip/on-request",
    health_information_notify="/gateway/v0.5/health-information/notify",
    on_share="/gateway/v0.5/patients/profile/on-share",
    generate_token=None,
    link_carecontext="/gateway/v0.5/links/link/add-contexts",
)

# Header names of the linking calls (hip-initiated-linking.yaml, link-token.yaml).
X_HIP_ID: Final = "X-HIP-ID"
X_LINK_TOKEN: Final = "X-LINK-TOKEN"  # noqa: S105 (a header name)


# --------------------------------------------------------------------------- HI types


class HiType(StrEnum):
    """ABDM's health information types, spelt as the v3 enum spells them."""

    OP_CONSULTATION = "OPConsultation"
    PRESCRIPTION = "Prescription"
    DIAGNOSTIC_REPORT = "DiagnosticReport"
    DISCHARGE_SUMMARY = "DischargeSummary"
    IMMUNIZATION_RECORD = "ImmunizationRecord"
    HEALTH_DOCUMENT_RECORD = "HealthDocumentRecord"
    WELLNESS_RECORD = "WellnessRecord"
    INVOICE = "Invoice"

    @property
    def nrces_bundle(self) -> str:
        """The NRCeS document profile a bundle of this type follows (its Composition's)."""
        return NRCES_BUNDLE[self]

    @property
    def nrces_profile(self) -> str:
        return NRCES_PROFILE_BASE + NRCES_BUNDLE[self]


HI_TYPES: Final = tuple(HiType)
NRCES_PROFILE_BASE: Final = "https://nrces.in/ndhm/fhir/r4/StructureDefinition/"
# Two types change name on the way (OPConsultation -> OPConsultRecord, Invoice ->
# InvoiceRecord); the NRCeS guide, https://nrces.in/ndhm/fhir/r4/profiles.html.
NRCES_BUNDLE: Final[Mapping[HiType, str]] = {
    HiType.OP_CONSULTATION: "OPConsultRecord",
    HiType.PRESCRIPTION: "PrescriptionRecord",
    HiType.DIAGNOSTIC_REPORT: "DiagnosticReportRecord",
    HiType.DISCHARGE_SUMMARY: "DischargeSummaryRecord",
    HiType.IMMUNIZATION_RECORD: "ImmunizationRecord",
    HiType.HEALTH_DOCUMENT_RECORD: "HealthDocumentRecord",
    HiType.WELLNESS_RECORD: "WellnessRecord",
    HiType.INVOICE: "InvoiceRecord",
}


class ConsentStatus(StrEnum):
    """What a consent notification says happened. v3 lists REQUESTED in the enum too, but
    says the HIP is only told of grants, revocations and expiries; DENIED is kept because
    the shared enum has it and an HIP should at least acknowledge one."""

    GRANTED = "GRANTED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    DENIED = "DENIED"


GENDERS: Final = frozenset({"M", "F", "O", "D", "T", "U"})
IDENTIFIER_TYPES: Final = frozenset({"MR", "MOBILE", "ABHA_NUMBER", "ABHA_ADDRESS", "EMAIL"})
MATCHED_BY: Final = frozenset({"MR", "MOBILE", "ABHA_NUMBER", "ABHA_ADDRESS"})
ACCESS_MODES: Final = frozenset({"VIEW", "STORE", "QUERY", "STREAM"})
FREQUENCY_UNITS: Final = frozenset({"HOUR", "DAY", "WEEK", "MONTH", "YEAR"})
COMMUNICATION_MEDIA: Final = frozenset({"MOBILE", "EMAIL"})
FHIR_MEDIA: Final = "application/fhir+json"
PROFILE_SHARE: Final = "PROFILE_SHARE"

# The character sets v3 documents for what OPDesk sends (user-initiated-linking.yaml):
# references, display texts, error messages and codes. The gateway refuses others.
_REFERENCE = re.compile(r"[A-Za-z0-9_\-@,. ()/:\\]{1,255}")
_DISPLAY = re.compile(r"[A-Za-z0-9_\-@,. \"':|()/]{1,255}")
_ERROR_MESSAGE = re.compile(r"[A-Za-z0-9_\-@,. \":]{1,255}")
_ERROR_CODE = re.compile(r"ABDM-\d{4}|\d{3,6}")
# generate-token's name: Latin letters and ' , . - and spaces (link-token.yaml's pattern,
# without its nested quantifiers, which backtrack badly on a near miss).
_LATIN_NAME = re.compile(r"[A-Za-z][A-Za-z',. \-]{0,254}")
_YEAR_LOW, _YEAR_HIGH = 1900, 2299  # share's pattern (19|20|21|22)\d{2}
_TOKEN_YEAR_HIGH = 2200  # generate-token: "between 1900 and 2200"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------- reading JSON


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path or '$'}[{key}]"
    return f"{path}.{key}" if path else key


def _root(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MessageError("$", "the body must be a JSON object")
    return body


def _present(data: Mapping[str, Any], key: str, path: str) -> Any:
    value = data.get(key)
    if value is None:
        raise MessageError(_at(path, key), "missing")
    return value


def _object(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = _present(data, key, path)
    if not isinstance(value, Mapping):
        raise MessageError(_at(path, key), "must be an object")
    return value


def _maybe_object(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    return None if data.get(key) is None else _object(data, key, path)


def _array(data: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = _present(data, key, path)
    if not isinstance(value, list):
        raise MessageError(_at(path, key), "must be an array")
    return value


def _item_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MessageError(path, "must be an object")
    return value


def _text(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _present(data, key, path)
    if not isinstance(value, str):
        raise MessageError(_at(path, key), "must be a string")
    text = value.strip()
    if not text:
        raise MessageError(_at(path, key), "must not be blank")
    return text


def _maybe_text(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(data, key, path)


def _integer(
    data: Mapping[str, Any], key: str, path: str, low: int, high: int, *, text_ok: bool = False
) -> int:
    value = _present(data, key, path)
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif text_ok and isinstance(value, str) and value.strip().isdecimal():
        number = int(value.strip())
    if number is None:
        raise MessageError(_at(path, key), "must be a whole number")
    if not low <= number <= high:
        raise MessageError(_at(path, key), f"must be between {low} and {high}")
    return number


def _maybe_integer(
    data: Mapping[str, Any], key: str, path: str, low: int, high: int, *, text_ok: bool = False
) -> int | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _integer(data, key, path, low, high, text_ok=text_ok)


def _maybe_float(data: Mapping[str, Any], key: str, path: str) -> float | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MessageError(_at(path, key), "must be a number")
    try:
        return float(value)
    except ValueError as exc:
        raise MessageError(_at(path, key), "must be a number") from exc


def _choice(data: Mapping[str, Any], key: str, path: str, allowed: frozenset[str]) -> str:
    value = _text(data, key, path)
    if value not in allowed:
        raise MessageError(_at(path, key), f"must be one of {', '.join(sorted(allowed))}")
    return value


def _hi_type(value: Any, path: str) -> HiType:
    if not isinstance(value, str):
        raise MessageError(path, "must be a string")
    try:
        return HiType(value)
    except ValueError:
        raise MessageError(
            path, f"unknown HI type {value[:40]!r}; known: {', '.join(HI_TYPES)}"
        ) from None


def _instant(data: Mapping[str, Any], key: str, path: str) -> datetime:
    """An ABDM timestamp. One written without an offset is read as UTC: ABDM documents every
    timestamp as UTC, and older gateway traffic often left the ``Z`` off."""
    text = _text(data, key, path)
    if "T" not in text:
        raise MessageError(_at(path, key), "must be a date and time (ISO 8601)")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MessageError(_at(path, key), "must be a date and time (ISO 8601)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _maybe_instant(data: Mapping[str, Any], key: str, path: str) -> datetime | None:
    return None if data.get(key) is None else _instant(data, key, path)


def _abha_digits(text: str, field: str) -> str:
    digits = text.replace("-", "").replace(" ", "")
    if len(digits) != 14 or not digits.isascii() or not digits.isdigit():
        raise MessageError(field, "an ABHA number has 14 digits")
    return digits


# --------------------------------------------------------------------------- date ranges


@dataclass(frozen=True)
class DateRange:
    """``from`` .. ``to`` of a consent or a request, both ends included."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a date range needs timezone-aware ends")
        if self.start > self.end:
            raise ValueError("a date range cannot end before it starts")

    def overlap(self, other: DateRange) -> DateRange | None:
        """What both ranges cover (a request may only ask within its consent's range)."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return DateRange(start, end) if start <= end else None


def in_consent_range(instant: datetime, date_range: DateRange) -> bool:
    """Whether a record made at ``instant`` falls in ``date_range``.

    Both ends are inclusive: ``from <= instant <= to``. ABDM says only "created between
    this date range", HIUs commonly send ``to`` as the moment of the request or as a day's
    last millisecond, and a record stamped exactly at either end was asked for. A naive
    ``instant`` is refused rather than guessed: a clinic's local time is not UTC.
    """
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return date_range.start <= instant <= date_range.end


def _date_range(data: Mapping[str, Any], key: str, path: str) -> DateRange:
    node = _object(data, key, path)
    here = _at(path, key)
    start, end = _instant(node, "from", here), _instant(node, "to", here)
    if start > end:
        raise MessageError(_at(here, "to"), "is before from")
    return DateRange(start, end)


# --------------------------------------------------------------------------- discover


@dataclass(frozen=True)
class Identifier:
    type: str
    value: str


@dataclass(frozen=True)
class DiscoverRequest:
    """``POST {bridge}/api/v3/hip/patient/care-context/discover``."""

    transaction_id: str
    patient_id: str  # the ABHA address the patient searched with
    name: str
    gender: str
    year_of_birth: int
    verified: tuple[Identifier, ...]
    unverified: tuple[Identifier, ...]

    def identifier(self, kind: str, *, verified_only: bool = False) -> str | None:
        """The first identifier of that type, verified ones first."""
        pool = self.verified if verified_only else self.verified + self.unverified
        return next((i.value for i in pool if i.type == kind), None)


def _identifiers(data: Mapping[str, Any], key: str, path: str) -> tuple[Identifier, ...]:
    # Types outside the documented list (v0.5 had HEALTH_ID, NDHM_HEALTH_NUMBER) are kept:
    # matching ignores what it does not know, refusing the whole discovery would not help.
    found = []
    for index, raw in enumerate(_array(data, key, path)):
        here = _at(_at(path, key), index)
        item = _item_object(raw, here)
        found.append(Identifier(_text(item, "type", here), _text(item, "value", here)))
    return tuple(found)


def parse_discover(body: Any) -> DiscoverRequest:
    data = _root(body)
    patient = _object(data, "patient", "")
    unverified = (
        _identifiers(patient, "unverifiedIdentifiers", "patient")
        if patient.get("unverifiedIdentifiers") is not None
        else ()
    )
    return DiscoverRequest(
        transaction_id=_text(data, "transactionId", ""),
        patient_id=_text(patient, "id", "patient"),
        name=_text(patient, "name", "patient"),
        gender=_choice(patient, "gender", "patient", GENDERS),
        year_of_birth=_integer(patient, "yearOfBirth", "patient", _YEAR_LOW, _YEAR_HIGH),
        verified=_identifiers(patient, "verifiedIdentifiers", "patient"),
        unverified=unverified,
    )


# --------------------------------------------------------------------------- link init


@dataclass(frozen=True)
class LinkInitRequest:
    """``POST {bridge}/api/v3/hip/link/care-context/init``: the patient picked care contexts
    from OPDesk's on-discover answer and asks to link them."""

    transaction_id: str
    abha_address: str
    patient_reference: str
    care_context_references: tuple[str, ...]
    hi_types: tuple[HiType, ...]  # as the request grouped them; empty from a v0.5 body


def parse_link_init(body: Any) -> LinkInitRequest:
    data = _root(body)
    transaction_id = _text(data, "transactionId", "")
    raw_patient = _present(data, "patient", "")
    if isinstance(raw_patient, Mapping):  # v0.5: one object, the ABHA address as its id
        return LinkInitRequest(
            transaction_id=transaction_id,
            abha_address=_text(raw_patient, "id", "patient"),
            patient_reference=_text(raw_patient, "referenceNumber", "patient"),
            care_context_references=_care_context_refs(raw_patient, "patient"),
            hi_types=(),
        )
    entries = _array(data, "patient", "")
    if not entries:
        raise MessageError("patient", "names no patient")
    patient_reference = ""
    references: list[str] = []
    hi_types: list[HiType] = []
    for index, raw in enumerate(entries):
        here = _at("patient", index)
        entry = _item_object(raw, here)
        reference = _text(entry, "referenceNumber", here)
        if index == 0:
            patient_reference = reference
        elif reference != patient_reference:
            raise MessageError(_at(here, "referenceNumber"), "differs from patient[0]'s")
        for ref in _care_context_refs(entry, here):
            if ref in references:
                raise MessageError(_at(here, "careContexts"), f"repeats {ref!r}")
            references.append(ref)
        hi_type = _hi_type(_present(entry, "hiType", here), _at(here, "hiType"))
        if hi_type not in hi_types:
            hi_types.append(hi_type)
    return LinkInitRequest(
        transaction_id=transaction_id,
        abha_address=_text(data, "abhaAddress", ""),
        patient_reference=patient_reference,
        care_context_references=tuple(references),
        hi_types=tuple(hi_types),
    )


def _care_context_refs(entry: Mapping[str, Any], path: str) -> tuple[str, ...]:
    items = _array(entry, "careContexts", path)
    if not items:
        raise MessageError(_at(path, "careContexts"), "names no care context")
    refs = []
    for index, raw in enumerate(items):
        here = _at(_at(path, "careContexts"), index)
        refs.append(_text(_item_object(raw, here), "referenceNumber", here))
    return tuple(refs)


# --------------------------------------------------------------------------- link confirm


@dataclass(frozen=True)
class LinkConfirmRequest:
    """``POST {bridge}/api/v3/hip/link/care-context/confirm``: the OTP the patient typed."""

    link_reference: str
    token: str


def parse_link_confirm(body: Any) -> LinkConfirmRequest:
    data = _root(body)
    confirmation = _object(data, "confirmation", "")
    raw = _present(confirmation, "token", "confirmation")
    # v3 types the token as a 6-digit integer (v0.5: a string). An integer has lost any
    # leading zero of the OTP, so it is padded back to six digits.
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise MessageError("confirmation.token", "must be a number or a string")
    if isinstance(raw, int):
        if not 0 <= raw <= 999_999:
            raise MessageError("confirmation.token", "must be at most six digits")
        token = f"{raw:06d}"
    else:
        token = _text(confirmation, "token", "confirmation")
    return LinkConfirmRequest(_text(confirmation, "linkRefNumber", "confirmation"), token)


# --------------------------------------------------------------------------- consent notify


@dataclass(frozen=True)
class ConsentCareContext:
    patient_reference: str
    care_context_reference: str


@dataclass(frozen=True)
class Frequency:
    unit: str
    value: int
    repeats: int | None


@dataclass(frozen=True)
class ConsentArtefact:
    consent_id: str
    created_at: datetime
    patient_id: str  # ABHA address
    hip_id: str
    purpose_code: str
    care_contexts: tuple[ConsentCareContext, ...]
    hi_types: tuple[HiType, ...]
    access_mode: str
    date_range: DateRange
    data_erase_at: datetime
    frequency: Frequency


@dataclass(frozen=True)
class ConsentNotification:
    """``POST {bridge}/api/v3/consent/request/hip/notify``.

    A grant carries the artefact and the consent manager's signature; a revocation or an
    expiry may carry only the consent id, so ``artefact`` and ``signature`` are None then.
    """

    consent_id: str
    status: ConsentStatus
    artefact: ConsentArtefact | None
    signature: str | None


def parse_consent_notify(body: Any) -> ConsentNotification:
    data = _root(body)
    notification = _object(data, "notification", "")
    here = "notification"
    status_text = _text(notification, "status", here)
    try:
        status = ConsentStatus(status_text)
    except ValueError:
        raise MessageError(
            "notification.status",
            f"must be one of {', '.join(ConsentStatus)}, not {status_text[:20]!r}",
        ) from None
    consent_id = _text(notification, "consentId", here)
    granted = status is ConsentStatus.GRANTED
    detail = (
        _object(notification, "consentDetail", here)
        if granted
        else _maybe_object(notification, "consentDetail", here)
    )
    artefact = None if detail is None else _artefact(detail, "notification.consentDetail")
    if artefact is not None and artefact.consent_id != consent_id:
        raise MessageError("notification.consentDetail.consentId", "differs from consentId")
    signature = (
        _text(notification, "signature", here)
        if granted
        else _maybe_text(notification, "signature", here)
    )
    if signature is not None:
        try:
            base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise MessageError("notification.signature", "is not base64") from None
    return ConsentNotification(consent_id, status, artefact, signature)


def _artefact(detail: Mapping[str, Any], path: str) -> ConsentArtefact:
    contexts = []
    for index, raw in enumerate(_array(detail, "careContexts", path)):
        here = _at(_at(path, "careContexts"), index)
        item = _item_object(raw, here)
        contexts.append(
            ConsentCareContext(
                _text(item, "patientReference", here), _text(item, "careContextReference", here)
            )
        )
    hi_list = _array(detail, "hiTypes", path)
    if not hi_list:
        raise MessageError(_at(path, "hiTypes"), "names no HI type")
    hi_types = tuple(
        _hi_type(value, _at(_at(path, "hiTypes"), index)) for index, value in enumerate(hi_list)
    )
    permission = _object(detail, "permission", path)
    where = _at(path, "permission")
    frequency = _object(permission, "frequency", where)
    when = _at(where, "frequency")
    return ConsentArtefact(
        consent_id=_text(detail, "consentId", path),
        created_at=_instant(detail, "createdAt", path),
        patient_id=_text(_object(detail, "patient", path), "id", _at(path, "patient")),
        hip_id=_text(_object(detail, "hip", path), "id", _at(path, "hip")),
        purpose_code=_text(_object(detail, "purpose", path), "code", _at(path, "purpose")),
        care_contexts=tuple(contexts),
        hi_types=hi_types,
        access_mode=_choice(permission, "accessMode", where, ACCESS_MODES),
        date_range=_date_range(permission, "dateRange", where),
        data_erase_at=_instant(permission, "dataEraseAt", where),
        frequency=Frequency(
            unit=_choice(frequency, "unit", when, FREQUENCY_UNITS),
            value=_integer(frequency, "value", when, 0, 1_000_000),
            repeats=_maybe_integer(frequency, "repeats", when, 0, 1_000_000),
        ),
    )


# --------------------------------------------------------------------------- HI request


@dataclass(frozen=True)
class HealthInformationRequest:
    """``POST {bridge}/api/v3/hip/health-information/request``: push what a consent covers."""

    transaction_id: str
    consent_id: str
    date_range: DateRange
    data_push_url: str
    receiver: fidelius.PeerKey  # the HIU's public key and nonce, both checked
    receiver_key_expiry: datetime


def parse_health_information_request(body: Any) -> HealthInformationRequest:
    data = _root(body)
    request = _object(data, "hiRequest", "")
    here = "hiRequest"
    url = _text(request, "dataPushUrl", here)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise MessageError("hiRequest.dataPushUrl", "must be an https URL")
    material = _object(request, "keyMaterial", here)
    peer, expiry = _key_material(material, "hiRequest.keyMaterial")
    return HealthInformationRequest(
        transaction_id=_text(data, "transactionId", ""),
        consent_id=_text(_object(request, "consent", here), "id", "hiRequest.consent"),
        date_range=_date_range(request, "dateRange", here),
        data_push_url=url,
        receiver=peer,
        receiver_key_expiry=expiry,
    )


def _key_material(material: Mapping[str, Any], path: str) -> tuple[fidelius.PeerKey, datetime]:
    # Compared without case: the v3 document's own example writes "curve25519".
    if _text(material, "cryptoAlg", path).upper() != fidelius.CRYPTO_ALG:
        raise MessageError(_at(path, "cryptoAlg"), f"must be {fidelius.CRYPTO_ALG}")
    if _text(material, "curve", path).lower() != fidelius.CURVE.lower():
        raise MessageError(_at(path, "curve"), f"must be {fidelius.CURVE}")
    key = _object(material, "dhPublicKey", path)
    where = _at(path, "dhPublicKey")
    key_value = _text(key, "keyValue", where)
    try:
        fidelius.decode_public_key(key_value)
    except ValueError as exc:
        raise MessageError(_at(where, "keyValue"), str(exc)) from exc
    nonce = _text(material, "nonce", path)
    try:
        raw_nonce = base64.b64decode(nonce, validate=True)
    except (binascii.Error, ValueError):
        raise MessageError(_at(path, "nonce"), "is not base64") from None
    if len(raw_nonce) != fidelius.NONCE_BYTES:
        raise MessageError(
            _at(path, "nonce"), f"must be {fidelius.NONCE_BYTES} bytes, not {len(raw_nonce)}"
        )
    return fidelius.PeerKey(key_value, nonce), _instant(key, "expiry", where)


# --------------------------------------------------------------------------- share profile


@dataclass(frozen=True)
class ShareAddress:
    line: str | None
    district: str | None
    state: str | None
    pincode: str | None


@dataclass(frozen=True)
class ShareProfile:
    """``POST {bridge}/api/v3/hip/patient/share``: a patient scanned the clinic's QR code.

    ``mobile`` is as ABDM sent it (10 digits, sometimes with +91); ``matching.mobile_e164``
    normalises it. ``context`` is the counter the QR code named.
    """

    hip_id: str
    context: str
    hpr_id: str | None
    latitude: float | None
    longitude: float | None
    abha_number: str | None  # 14 digits, no hyphens
    abha_address: str
    name: str
    gender: str
    year_of_birth: int
    month_of_birth: int | None
    day_of_birth: int | None
    mobile: str | None
    address: ShareAddress

    @property
    def birth_date(self) -> date | None:
        if self.month_of_birth is None or self.day_of_birth is None:
            return None
        return date(self.year_of_birth, self.month_of_birth, self.day_of_birth)


def parse_share_profile(body: Any) -> ShareProfile:
    data = _root(body)
    intent = _text(data, "intent", "")
    if intent != PROFILE_SHARE:
        raise MessageError("intent", f"only {PROFILE_SHARE} carries a profile, not {intent!r}")
    meta = _object(data, "metaData", "")
    patient = _object(_object(data, "profile", ""), "patient", "profile")
    here = "profile.patient"
    abha_number = _maybe_text(patient, "abhaNumber", here)
    year = _integer(patient, "yearOfBirth", here, _YEAR_LOW, _YEAR_HIGH, text_ok=True)
    month = _maybe_integer(patient, "monthOfBirth", here, 1, 12, text_ok=True)
    day = _maybe_integer(patient, "dayOfBirth", here, 1, 31, text_ok=True)
    if month is not None and day is not None:
        try:
            date(year, month, day)
        except ValueError:
            raise MessageError("profile.patient.dayOfBirth", "no such day in that month") from None
    address = _object(patient, "address", here)
    where = "profile.patient.address"
    return ShareProfile(
        hip_id=_text(meta, "hipId", "metaData"),
        context=_text(meta, "context", "metaData"),
        hpr_id=_maybe_text(meta, "hprId", "metaData"),
        latitude=_maybe_float(meta, "latitude", "metaData"),
        longitude=_maybe_float(meta, "longitude", "metaData"),
        abha_number=None
        if abha_number is None
        else _abha_digits(abha_number, "profile.patient.abhaNumber"),
        abha_address=_text(patient, "abhaAddress", here),
        name=_text(patient, "name", here),
        gender=_choice(patient, "gender", here, GENDERS),
        year_of_birth=year,
        month_of_birth=month,
        day_of_birth=day,
        mobile=_maybe_text(patient, "phoneNumber", here),
        address=ShareAddress(
            line=_maybe_text(address, "line", where),
            district=_maybe_text(address, "district", where),
            state=_maybe_text(address, "state", where),
            pincode=_maybe_text(address, "pincode", where),
        ),
    )


# --------------------------------------------------------------------------- on-generate-token


@dataclass(frozen=True)
class GatewayFault:
    code: str
    message: str


@dataclass(frozen=True)
class GenerateTokenResult:
    """``POST {bridge}/api/v3/hip/token/on-generate-token``: the link token, or why not.

    ``request_id`` is the REQUEST-ID OPDesk sent with generate-token. The token lasts six
    months (link-token.yaml) and goes in the X-LINK-TOKEN header of the linking call.
    """

    request_id: uuid.UUID
    abha_address: str | None
    link_token: str | None
    error: GatewayFault | None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_on_generate_token(body: Any) -> GenerateTokenResult:
    data = _root(body)
    request_id = _answered_call(data)
    error = _maybe_object(data, "error", "")
    if error is not None:
        code = _text(error, "code", "error").rstrip(": ").strip()
        return GenerateTokenResult(
            request_id,
            _maybe_text(data, "abhaAddress", ""),
            None,
            GatewayFault(code, _maybe_text(error, "message", "error") or ""),
        )
    token = _text(data, "linkToken", "")
    if any(c.isspace() for c in token):
        raise MessageError("linkToken", "must not contain spaces or line breaks")
    return GenerateTokenResult(request_id, _text(data, "abhaAddress", ""), token, None)


# --------------------------------------------------------------------------- on_carecontext


@dataclass(frozen=True)
class LinkResult:
    """``POST {bridge}/api/v3/link/on_carecontext``: what became of a HIP-initiated link
    call, named by the REQUEST-ID OPDesk sent it with. The success body's wording
    (``status``, or an ``acknowledgement``) varies between documents, so only an ``error``
    decides that it failed."""

    request_id: uuid.UUID
    error: GatewayFault | None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_on_link_carecontext(body: Any) -> LinkResult:
    data = _root(body)
    request_id = _answered_call(data)
    error = _maybe_object(data, "error", "")
    if error is None:
        return LinkResult(request_id, None)
    code = str(_present(error, "code", "error")).rstrip(": ").strip()
    return LinkResult(request_id, GatewayFault(code, _maybe_text(error, "message", "error") or ""))


def _answered_call(data: Mapping[str, Any]) -> uuid.UUID:
    """``response.requestId``: the REQUEST-ID of OPDesk's call that this answers. Each call
    OPDesk makes carries a UUID, so anything else answers none of them."""
    return uuid.UUID(_request_id(_text(_object(data, "response", ""), "requestId", "response")))


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class CareContext:
    """One care context as OPDesk offers it: a visit, with a display free of clinical detail
    (see ``care_context_display``) and the HI type of what it holds."""

    reference: str
    display: str
    hi_type: HiType


def _checked(pattern: re.Pattern[str], value: str, field: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        allowed = pattern.pattern[1 : pattern.pattern.index("]{")]
        raise MessageError(field, f"must be 1-255 characters, each one of {allowed}")
    return value


def _request_id(value: str, field: str = "response.requestId") -> str:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise MessageError(field, "must be the UUID of the call being answered") from None
    return value


def _response(request_id: str) -> dict[str, str]:
    return {"requestId": _request_id(request_id)}


def _error(code: str, message: str) -> dict[str, str]:
    if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        raise MessageError("error.code", "must look like ABDM-1234 (or a 3-6 digit code)")
    _checked(_ERROR_MESSAGE, message, "error.message")
    return {"code": code, "message": message}


def _when(moment: datetime, field: str) -> str:
    if moment.tzinfo is None:
        raise MessageError(field, "needs a timezone-aware datetime")
    return timestamp(moment)


def _text_in(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MessageError(field, "must not be blank")
    return value


def _abha_address_out(value: str, field: str) -> str:
    text = _text_in(value, field).strip()
    if text.count("@") != 1 or text.startswith("@") or text.endswith("@"):
        raise MessageError(field, "must be an ABHA address such as name@abdm")
    return text


def _patient_groups(
    patient_reference: str,
    patient_display: str,
    care_contexts: Sequence[CareContext],
    path: str,
) -> list[dict[str, Any]]:
    """v3's patient array: one entry per HI type, each with its care contexts and count."""
    if not care_contexts:
        raise MessageError(path, "needs at least one care context")
    _checked(_REFERENCE, patient_reference, _at(_at(path, 0), "referenceNumber"))
    _checked(_DISPLAY, patient_display, _at(_at(path, 0), "display"))
    groups: dict[HiType, list[dict[str, str]]] = {}
    seen: set[str] = set()
    for context in care_contexts:
        try:
            hi_type = HiType(context.hi_type)
        except ValueError:
            raise MessageError(path, f"unknown HI type {context.hi_type!r}") from None
        group = groups.setdefault(hi_type, [])
        here = _at(_at(_at(path, list(groups).index(hi_type)), "careContexts"), len(group))
        _checked(_REFERENCE, context.reference, _at(here, "referenceNumber"))
        _checked(_DISPLAY, context.display, _at(here, "display"))
        if context.reference in seen:
            raise MessageError(_at(here, "referenceNumber"), "repeats an earlier one")
        seen.add(context.reference)
        group.append({"referenceNumber": context.reference, "display": context.display})
    return [
        {
            "referenceNumber": patient_reference,
            "display": patient_display,
            "careContexts": entries,
            "hiType": hi_type.value,
            "count": len(entries),
        }
        for hi_type, entries in groups.items()
    ]


def on_discover(
    *,
    request_id: str,
    transaction_id: str,
    patient_reference: str,
    patient_display: str,
    care_contexts: Sequence[CareContext],
    matched_by: Sequence[str],
) -> dict[str, Any]:
    """The answer to a discovery that found one patient: only unlinked care contexts, each
    a reference and a display, never clinical content."""
    matched = list(matched_by)
    if not matched:
        raise MessageError("matchedBy", "name what the patient was matched by")
    for index, kind in enumerate(matched):
        if kind not in MATCHED_BY:
            raise MessageError(_at("matchedBy", index), f"must be one of {sorted(MATCHED_BY)}")
    return {
        "transactionId": _text_in(transaction_id, "transactionId"),
        "patient": _patient_groups(patient_reference, patient_display, care_contexts, "patient"),
        "matchedBy": matched,
        "response": _response(request_id),
    }


def on_discover_error(
    *, request_id: str, transaction_id: str, code: str, message: str
) -> dict[str, Any]:
    """No patient (or more than one: never guess) for this discovery."""
    return {
        "transactionId": _text_in(transaction_id, "transactionId"),
        "error": _error(code, message),
        "response": _response(request_id),
    }


def on_init(
    *,
    request_id: str,
    transaction_id: str,
    link_reference: str,
    expires_at: datetime,
    medium: str = "MOBILE",
    hint: str | None = "OTP",
) -> dict[str, Any]:
    """OPDesk has sent the patient an OTP; the link reference is what confirm will quote.

    ``authenticationType`` is DIRECT: OPDesk checks the OTP itself (MEDIATED would ask the
    consent manager to). ``hint`` is free text; v3's example says "OTP", v0.5 meant a masked
    destination such as "XXXXXX3210".
    """
    if medium not in COMMUNICATION_MEDIA:
        raise MessageError("link.meta.communicationMedium", "must be MOBILE or EMAIL")
    meta: dict[str, Any] = {"communicationMedium": medium}
    if hint is not None:
        meta["communicationHint"] = _checked(_DISPLAY, hint, "link.meta.communicationHint")
    meta["communicationExpiry"] = _when(expires_at, "link.meta.communicationExpiry")
    return {
        "transactionId": _text_in(transaction_id, "transactionId"),
        "link": {
            "referenceNumber": _checked(_REFERENCE, link_reference, "link.referenceNumber"),
            "authenticationType": "DIRECT",
            "meta": meta,
        },
        "response": _response(request_id),
    }


def on_init_error(
    *, request_id: str, transaction_id: str, code: str, message: str
) -> dict[str, Any]:
    return {
        "transactionId": _text_in(transaction_id, "transactionId"),
        "error": _error(code, message),
        "response": _response(request_id),
    }


def on_confirm(
    *,
    request_id: str,
    patient_reference: str,
    patient_display: str,
    care_contexts: Sequence[CareContext],
) -> dict[str, Any]:
    """The OTP was right: these care contexts are now linked."""
    return {
        "patient": _patient_groups(patient_reference, patient_display, care_contexts, "patient"),
        "response": _response(request_id),
    }


def on_confirm_error(*, request_id: str, code: str, message: str) -> dict[str, Any]:
    return {"error": _error(code, message), "response": _response(request_id)}


def consent_on_notify(*, request_id: str, consent_id: str) -> dict[str, Any]:
    """The acknowledgement of any consent notification, whatever its status: the HIP says
    it has recorded the grant, revocation, expiry or denial, not that it agrees."""
    return {
        "acknowledgement": {"status": "OK", "consentId": _text_in(consent_id, "consentId")},
        "response": _response(request_id),
    }


def hip_on_request(*, request_id: str, transaction_id: str) -> dict[str, Any]:
    """The HIP will push the data for this transaction."""
    return {
        "hiRequest": {
            "transactionId": _text_in(transaction_id, "hiRequest.transactionId"),
            "sessionStatus": "ACKNOWLEDGED",
        },
        "response": _response(request_id),
    }


def hip_on_request_error(*, request_id: str, code: str, message: str) -> dict[str, Any]:
    """The HIP will not push (unknown, revoked or expired consent, for instance)."""
    return {"error": _error(code, message), "response": _response(request_id)}


def checksum(plaintext: str) -> str:
    """``entries[].checksum``: the MD5 of the bundle's UTF-8 bytes before encryption, in
    lowercase hex. MD5 and "before encryption" are the specification's words (both v0.5 and
    v3); the encoding is not stated anywhere, and the HIPs read (NHA's wrapper, care_abdm,
    ProjectEKA) send a placeholder instead, so no HIU can be relying on it yet."""
    return hashlib.md5(plaintext.encode("utf-8"), usedforsecurity=False).hexdigest()


def encrypt_entry(
    care_context_reference: str,
    bundle_json: str,
    *,
    sender: fidelius.KeyMaterial,
    receiver: fidelius.PeerKey,
) -> dict[str, str]:
    """One ``entries[]`` item: a FHIR bundle, encrypted for the HIU with Fidelius."""
    _checked(_REFERENCE, care_context_reference, "careContextReference")
    return {
        "content": fidelius.encrypt(
            bundle_json,
            sender=sender,
            receiver_public_b64=receiver.public_key,
            receiver_nonce_b64=receiver.nonce,
        ),
        "media": FHIR_MEDIA,
        "checksum": checksum(bundle_json),
        "careContextReference": care_context_reference,
    }


def data_push(
    *,
    transaction_id: str,
    entries: Sequence[Mapping[str, str]],
    sender: fidelius.KeyMaterial,
    key_expiry: datetime,
    page_number: int = 1,
    page_count: int = 1,
    x509: bool = False,
) -> dict[str, Any]:
    """The body POSTed straight to the HIU's ``dataPushUrl`` (not through the gateway).

    ``keyMaterial`` is the HIP's own: its public key and nonce, which the HIU needs to
    derive the same key. Every page of one transfer must carry the same key material (one
    ``sender`` per transfer). Pages count from 1.
    """
    if not 1 <= page_number <= page_count:
        raise MessageError("pageNumber", "must be between 1 and pageCount")
    items = []
    for index, entry in enumerate(entries):
        missing = {"content", "media", "checksum", "careContextReference"} - set(entry)
        if missing:
            raise MessageError(_at("entries", index), f"lacks {', '.join(sorted(missing))}")
        items.append(dict(entry))
    if key_expiry.tzinfo is None:
        raise MessageError("keyMaterial.dhPublicKey.expiry", "needs a timezone-aware datetime")
    return {
        "pageNumber": page_number,
        "pageCount": page_count,
        "transactionId": _text_in(transaction_id, "transactionId"),
        "entries": items,
        "keyMaterial": fidelius.key_material_json(sender, expiry=key_expiry, x509=x509),
    }


@dataclass(frozen=True)
class TransferOutcome:
    """What happened to one consented care context during a push."""

    care_context_reference: str
    delivered: bool
    description: str = ""


def health_information_notify(
    *,
    consent_id: str,
    transaction_id: str,
    hip_id: str,
    outcomes: Sequence[TransferOutcome],
    done_at: datetime,
) -> dict[str, Any]:
    """``/api/hiecm/data-flow/v3/health-information/notify`` after the push.

    Per care context ``hiStatus`` is DELIVERED or ERRORED: the v0.5 HIP specification
    reserves OK for the HIU's own notify, and NHA's v3 wrapper sends DELIVERED/ERRORED
    too. ``sessionStatus`` is TRANSFERRED when at least one care context was delivered and
    FAILED when none was; the per care context statuses say which.
    """
    responses = []
    for index, outcome in enumerate(outcomes):
        where = _at("notification.statusNotification.statusResponses", index)
        _checked(
            _REFERENCE,
            outcome.care_context_reference,
            _at(where, "careContextReference"),
        )
        description = outcome.description or ("Delivered" if outcome.delivered else "Not sent")
        responses.append(
            {
                "careContextReference": outcome.care_context_reference,
                "hiStatus": "DELIVERED" if outcome.delivered else "ERRORED",
                "description": description,
            }
        )
    hip = _text_in(hip_id, "notification.statusNotification.hipId")
    return {
        "notification": {
            "consentId": _text_in(consent_id, "notification.consentId"),
            "transactionId": _text_in(transaction_id, "notification.transactionId"),
            "doneAt": _when(done_at, "notification.doneAt"),
            "notifier": {"type": "HIP", "id": hip},
            "statusNotification": {
                "sessionStatus": "TRANSFERRED" if any(o.delivered for o in outcomes) else "FAILED",
                "hipId": hip,
                "statusResponses": responses,
            },
        }
    }


def generate_token(
    *,
    abha_address: str,
    name: str,
    gender: str,
    year_of_birth: int,
    abha_number: str | None = None,
) -> dict[str, Any]:
    """``/api/hiecm/v3/token/generate-token`` (202; the token arrives on on-generate-token).

    ABDM checks these demographics against the ABHA, so ``name`` is the name on the ABHA
    in Latin letters. The ABHA number goes as 14 digits in a string, as care_abdm sends it
    (the document types it as a number; a 14-digit JSON number survives, but a string
    cannot lose digits in any client)."""
    if not isinstance(name, str) or not _LATIN_NAME.fullmatch(name.strip()):
        raise MessageError("name", "must be Latin letters, spaces and ' , . - as on the ABHA")
    if gender not in GENDERS:
        raise MessageError("gender", f"must be one of {', '.join(sorted(GENDERS))}")
    if isinstance(year_of_birth, bool) or not _YEAR_LOW <= year_of_birth <= _TOKEN_YEAR_HIGH:
        raise MessageError("yearOfBirth", f"must be between {_YEAR_LOW} and {_TOKEN_YEAR_HIGH}")
    body: dict[str, Any] = {}
    if abha_number is not None:
        body["abhaNumber"] = _abha_digits(abha_number, "abhaNumber")
    body |= {
        "abhaAddress": _abha_address_out(abha_address, "abhaAddress"),
        "name": name.strip(),
        "gender": gender,
        "yearOfBirth": year_of_birth,
    }
    return body


def link_carecontext(
    *,
    abha_address: str,
    patient_reference: str,
    patient_display: str,
    care_contexts: Sequence[CareContext],
    abha_number: str | None = None,
) -> dict[str, Any]:
    """``/api/hiecm/hip/v3/link/carecontext``: HIP-initiated linking, sent with
    ``link_headers``. If the link token was generated with both the ABHA number and the
    address, both must be sent here (hip-initiated-linking.yaml).

    Each patient entry carries ``hiType`` (one string), as NHA's v3 wrapper and care_abdm
    send it and as user-initiated linking documents it; hip-initiated-linking.yaml spells
    this one field ``hiTypes``.
    """
    body: dict[str, Any] = {}
    if abha_number is not None:
        body["abhaNumber"] = _abha_digits(abha_number, "abhaNumber")
    body["abhaAddress"] = _abha_address_out(abha_address, "abhaAddress")
    body["patient"] = _patient_groups(patient_reference, patient_display, care_contexts, "patient")
    return body


def hip_headers(hip_id: str) -> dict[str, str]:
    """The extra header of generate-token (gateway.py adds REQUEST-ID, TIMESTAMP, X-CM-ID)."""
    return {X_HIP_ID: _header_value(hip_id, X_HIP_ID)}


def link_headers(hip_id: str, link_token: str) -> dict[str, str]:
    """The extra headers of the HIP-initiated linking call."""
    return {
        X_HIP_ID: _header_value(hip_id, X_HIP_ID),
        X_LINK_TOKEN: _header_value(link_token, X_LINK_TOKEN),
    }


def _header_value(value: str, name: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise MessageError(name, "must be a non-empty value without spaces or line breaks")
    return value


def on_share(
    *,
    request_id: str,
    abha_address: str,
    context: str,
    token_number: str,
    expiry_seconds: int,
) -> dict[str, Any]:
    """``/api/hiecm/patient-share/v3/on-share``: the patient's queue token at that counter.

    patient-share.yaml: ``acknowledgement`` {status SUCCESS, abhaAddress, profile {context,
    tokenNumber, expiry}}. ``expiry`` is "a numeric value" (example 180) with no unit; OPDesk
    sends how many seconds the token stays valid.
    """
    if isinstance(expiry_seconds, bool) or expiry_seconds <= 0:
        raise MessageError("acknowledgement.profile.expiry", "must be a positive number")
    return {
        "acknowledgement": {
            "status": "SUCCESS",
            "abhaAddress": _abha_address_out(abha_address, "acknowledgement.abhaAddress"),
            "profile": {
                "context": _text_in(context, "acknowledgement.profile.context"),
                "tokenNumber": _text_in(token_number, "acknowledgement.profile.tokenNumber"),
                "expiry": expiry_seconds,
            },
        },
        "response": _response(request_id),
    }


def on_share_error(*, request_id: str, code: str, message: str) -> dict[str, Any]:
    return {"error": _error(code, message), "response": _response(request_id)}


# --------------------------------------------------------------------------- display


_DR_PREFIX = re.compile(r"^\s*dr\.?\s+", re.IGNORECASE)
_NOT_DISPLAY = re.compile(r"[^A-Za-z0-9_\-@,. \"':|()/]")
_SPACES = re.compile(r"\s+")
_NAME_MAX = 100


def _display_part(text: str) -> str:
    """A name in the characters a display may hold: accents folded, other scripts dropped
    (ABDM's display charset is ASCII)."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    plain = _SPACES.sub(" ", _NOT_DISPLAY.sub(" ", folded)).strip(" ,.-")
    return plain[:_NAME_MAX].rstrip()


def care_context_display(visit_date: date, doctor_name: str, clinic_name: str) -> str:
    """The patient-facing label of a visit: when, with whom, where, and nothing clinical.

    Discovery answers and link calls must not carry clinical detail (nha-in/docs
    catalogue/openapi/hiecm/v3/hiecm-m2.yaml: "No clinical detail may appear in a discovery
    response, only the reference number and display name"). The display is built from
    these three facts alone, so no diagnosis, drug or test can reach it: "Visit on 5 Mar
    2025 with Dr. Asha Rao at Sunrise Clinic". A name left empty after keeping ABDM's
    characters (one written only in an Indic script) is left out rather than sent garbled.
    """
    if isinstance(visit_date, datetime):
        raise TypeError("visit_date is a date: the display carries no time of day")
    text = f"Visit on {visit_date.day} {_MONTHS[visit_date.month - 1]} {visit_date.year}"
    doctor = _display_part(_DR_PREFIX.sub("", doctor_name))
    if doctor:
        text += f" with Dr. {doctor}"
    clinic = _display_part(clinic_name)
    if clinic:
        text += f" at {clinic}"
    return text
