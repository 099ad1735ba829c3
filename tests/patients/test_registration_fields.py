"""Registration fields Indian clinics expect (issue 10, item 25): address with PIN code,
blood group, preferred language, ABHA number (checked by its check digit, unique in the
clinic), and dates shown day first.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.patients import schemas
from opdesk.patients.models import BLOOD_GROUPS, LANGUAGES
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    csrf_of,
    events_of,
    make_patient,
    make_user,
    open_session,
    unique_mobile,
)
from tests.factories.registration import (
    abha_with_check,
    desk_browser,
    field_errors,
    register,
    stored_patient,
)

# From ABDM's own developer documentation (a sandbox search response).
ABHA = "43-4221-5105-6749"
ABHA_DIGITS = "43422151056749"


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def test_the_schema_lists_agree_with_the_table_checks() -> None:
    assert typing.get_args(schemas.BloodGroup) == BLOOD_GROUPS
    assert typing.get_args(schemas.Language) == LANGUAGES
    assert tuple(schemas.LANGUAGE_NAMES) == LANGUAGES


def test_the_abha_check_digit_accepts_abdm_numbers_and_catches_a_typo() -> None:
    for number in ("43-4221-5105-6749", "25-8180-3683-5375", "91-5101-6530-5101"):
        assert schemas.abha_digits(number) == number.replace("-", "")
    assert schemas.abha_digits("43 4221 5105 6749") == ABHA_DIGITS
    with pytest.raises(ValueError, match="last digit"):
        schemas.abha_digits("43-4221-5105-6748")  # one digit wrong
    with pytest.raises(ValueError, match="last digit"):
        schemas.abha_digits("43-4221-5150-6749")  # two digits swapped
    with pytest.raises(ValueError, match="14 digits"):
        schemas.abha_digits("43-4221-5105-674")


def test_registration_keeps_the_new_fields_and_encrypts_address_and_abha(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    response = register(
        client,
        desk,
        address="Flat 4, Shanti Niwas, Karve Road",
        pinCode="411 004",
        bloodGroup="B+",
        preferredLanguage="mr",
        abhaNumber="43 4221 5105 6749",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["address"] == "Flat 4, Shanti Niwas, Karve Road"
    assert body["pinCode"] == "411004"
    assert body["bloodGroup"] == "B+"
    assert body["preferredLanguage"] == "mr"
    assert body["abhaNumber"] == ABHA
    assert body["registeredOnline"] is False
    row = stored_patient(db, tenant, body["id"])
    assert row.address_encrypted is not None and b"Shanti" not in row.address_encrypted
    assert row.abha_number_encrypted is not None
    assert ABHA_DIGITS.encode() not in row.abha_number_encrypted
    # Its own blind-index space: never the phone index of the same digits.
    assert row.abha_hash == cipher.blind_index(ABHA_DIGITS, purpose="abha-number")
    assert row.abha_hash != cipher.blind_index(ABHA_DIGITS, purpose="phone")
    # Address and ABHA number appear in the audit trail only as "changed", never in clear.
    created = [e for e in events_of(db, tenant.id) if str(e.entity_id) == body["id"]]
    assert created and created[0].action == "create"
    diff = str(created[0].diff)
    assert "Shanti" not in diff and ABHA_DIGITS not in diff and "4221" not in diff
    assert created[0].diff["added"]["pinCode"] == "411004"


def test_preferred_language_is_english_unless_chosen(
    client: TestClient, desk: dict[str, str]
) -> None:
    body = register(client, desk).json()
    assert body["preferredLanguage"] == "en"
    assert body["bloodGroup"] is None and body["abhaNumber"] is None


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"pinCode": "041100"}, "pinCode", "6-digit PIN code"),
        ({"pinCode": "41100"}, "pinCode", "6-digit PIN code"),
        ({"bloodGroup": "C+"}, "bloodGroup", ""),
        ({"preferredLanguage": "fr"}, "preferredLanguage", ""),
        ({"abhaNumber": "43-4221-5105-6748"}, "abhaNumber", "last digit"),
        ({"abhaNumber": "1234"}, "abhaNumber", "14 digits"),
    ],
)
def test_bad_new_fields_are_422_naming_the_field(
    client: TestClient, desk: dict[str, str], fields: dict[str, Any], field: str, reason: str
) -> None:
    response = register(client, desk, **fields)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors


def test_an_abha_number_already_in_the_clinic_is_409_naming_the_field(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    number = abha_with_check("9100000000001")
    first = register(client, desk, abhaNumber=number)
    assert first.status_code == 201
    again = register(client, desk, abhaNumber=number)
    assert again.status_code == 409
    problem = again.json()
    assert problem["detail"].startswith("ABHA number:")
    assert problem["field"] == "abhaNumber"
    assert problem["existingNumber"] == first.json()["number"]
    other = register(client, desk).json()
    moved = client.patch(
        f"/api/v1/patients/{other['id']}", json={"abhaNumber": number}, headers=desk
    )
    assert moved.status_code == 409 and moved.json()["field"] == "abhaNumber"


def test_the_same_abha_number_is_free_in_another_clinic(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    number = abha_with_check("9100000000002")
    here = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    there = bearer(open_session(db, ident, make_user(db, ident, other_tenant, "frontdesk")))
    assert register(client, here, abhaNumber=number).status_code == 201
    assert register(client, there, abhaNumber=number).status_code == 201


def test_the_form_registers_with_the_new_fields_and_the_profile_shows_them(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = desk_browser(app, db, ident, tenant)
    form = desk.get("/patients/new").text
    assert '<option value="hi">हिन्दी (Hindi)</option>' in form
    assert '<option value="">Not known</option>' in form
    number = abha_with_check("9100000000003")
    shown = f"{number[:2]}-{number[2:6]}-{number[6:10]}-{number[10:]}"
    answer = desk.post(
        "/patients/new",
        data={
            "csrf_token": csrf_of(form),
            "name.first": "Kavita",
            "name.last": "Joshi",
            "phone": unique_mobile(),
            "dob": "1990-11-05",
            "gender": "female",
            "address": "12 Laxmi Road",
            "city": "Nashik",
            "pin_code": "422001",
            "blood_group": "O-",
            "preferred_language": "hi",
            "abha_number": shown,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    profile = desk.get(answer.headers["location"]).text
    assert "05/11/1990" in profile  # day first
    assert "12 Laxmi Road" in profile and "422001" in profile
    assert "हिन्दी (Hindi)" in profile
    assert "O-" in profile and shown in profile
    patient_id = answer.headers["location"].rsplit("/", 1)[1]
    edit = desk.get(f"/patients/{patient_id}/edit").text
    assert f'value="{shown}"' in edit and 'value="422001"' in edit
    assert '<option value="hi" selected>' in edit


def test_the_form_shows_pin_and_abha_problems_with_the_others_at_once(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = desk_browser(app, db, ident, tenant)
    form = desk.get("/patients/new").text
    answer = desk.post(
        "/patients/new",
        data={
            "csrf_token": csrf_of(form),
            "name.first": "",
            "phone": unique_mobile(),
            "age_years": "40",
            "gender": "male",
            "pin_code": "012345",
            "abha_number": "43-4221-5105-6748",
        },
    )
    assert answer.status_code == 422
    errors = field_errors(answer.text)
    assert set(errors) == {"name-first", "pin_code", "abha_number"}
    assert errors["pin_code"] == "Enter the 6-digit PIN code; it does not start with 0"
    assert "last digit" in errors["abha_number"]
    summary = answer.text.split('class="error-summary"', 1)[1].split("</div>", 1)[0]
    texts = dict(re.findall(r'<a href="#f-([\w-]+)">([^<]+)</a>', summary))
    assert texts["pin_code"].startswith("PIN code: ")
    assert texts["abha_number"].startswith("ABHA number: ")


def test_the_edit_form_says_which_patient_has_the_abha_number(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    number = abha_with_check("9100000000004")
    holder = make_patient(db, ident, tenant, abhaNumber=number)
    other = make_patient(db, ident, tenant)
    desk = desk_browser(app, db, ident, tenant)
    edit = desk.get(f"/patients/{other.id}/edit").text
    values = dict(re.findall(r'name="([\w.]+)" type="\w+" value="([^"]*)"', edit))
    answer = desk.post(
        f"/patients/{other.id}/edit",
        data={
            **values,
            "csrf_token": csrf_of(edit),
            "gender": "female",
            "preferred_language": "en",
            "abha_number": number,
        },
    )
    assert answer.status_code == 409, answer.text
    assert field_errors(answer.text)["abha_number"] == (
        f"Already registered to {holder.display_number}"
    )
