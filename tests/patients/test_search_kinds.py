"""Patient search as the desk uses it: part of a mobile number, a misspelt name (closest
first), a name typed in another script; and results that tell namesakes apart.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.patients import queries, sounds
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    browser_for,
    clinic_session,
    make_patient,
    make_tenant,
    make_user,
    open_session,
)


@pytest.fixture
def desk(db: Database, ident: Identity, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def found(client: TestClient, headers: dict[str, str], q: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/patients", params={"q": q}, headers=headers)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def ids(results: list[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(p["id"]) for p in results]


def mobile() -> str:
    """A new mobile number whose last five digits cannot be read as a patient number here."""
    return f"+91982{secrets.randbelow(100):02d}{secrets.randbelow(90_000) + 10_000}"


def names(results: list[dict[str, Any]]) -> list[str]:
    return [f"{p['name']['first']} {p['name']['last']}".strip() for p in results]


# --------------------------------------------------------------------------- part of a phone


def test_the_first_five_digits_of_a_mobile_number_find_the_patient(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    phone = mobile()  # +91 and ten digits
    patient = make_patient(db, ident, tenant, phone=phone)
    for typed in (phone[3:8], phone[3:9], phone[3:12], f"0{phone[3:8]}", f"+91 {phone[3:8]}"):
        assert patient.id in ids(found(client, desk, typed)), typed


def test_the_last_five_digits_find_the_patient_and_the_family_sharing_the_number(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    phone = mobile()
    mother = make_patient(db, ident, tenant, phone=phone, name={"first": "Kavita"})
    son = make_patient(
        db,
        ident,
        tenant,
        name={"first": "Arjun"},
        phone=None,
        guardianId=str(mother.id),
        guardianRelation="son",
    )
    for typed in (phone[-5:], phone[-7:], f"{phone[-9:-5]} {phone[-5:]}"):
        assert ids(found(client, desk, typed))[:2] == [mother.id, son.id], typed


def test_digits_from_the_middle_or_fewer_than_five_find_no_phone(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    phone = mobile()
    patient = make_patient(db, ident, tenant, phone=phone)
    for typed in (phone[5:10], phone[-4:], phone[3:7]):
        assert patient.id not in ids(found(client, desk, typed)), typed


def test_a_changed_number_is_found_by_its_new_digits_only(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    old, new = mobile(), mobile()
    patient = make_patient(db, ident, tenant, phone=old)
    changed = client.patch(f"/api/v1/patients/{patient.id}", json={"phone": new}, headers=desk)
    assert changed.status_code == 200, changed.text
    assert patient.id not in ids(found(client, desk, old[-5:]))
    assert patient.id in ids(found(client, desk, new[-5:]))
    assert patient.id in ids(found(client, desk, new[3:9]))


def test_another_clinics_patient_with_the_same_digits_is_not_found(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    other = make_tenant(db, "Other Clinic")
    phone = mobile()
    theirs = make_patient(db, ident, other, phone=phone)
    assert theirs.id not in ids(found(client, desk, phone[-5:]))
    assert theirs.id not in ids(found(client, desk, phone[3:8]))


def test_five_digits_are_a_patient_number_first_and_then_a_phone(
    db: Database, ident: Identity, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    typed = f"{patient.number:05d}"
    phone = f"+9198765{typed}"
    by_phone = make_patient(db, ident, tenant, phone=phone)
    with clinic_session(db, tenant.id) as session:
        result = [p.id for p in queries.search(session, ident.cipher, typed)]
    assert result[:2] == [patient.id, by_phone.id]


def test_no_digit_of_a_phone_is_stored_in_clear(
    db: Database, ident: Identity, tenant: Tenant
) -> None:
    phone = mobile()
    patient = make_patient(db, ident, tenant, phone=phone)
    with db.owner_engine.connect() as conn:
        keys = (
            conn.execute(
                text("select key from patient_phone_keys where tenant_id = :t and patient_id = :p"),
                {"t": tenant.id, "p": patient.id},
            )
            .scalars()
            .all()
        )
        columns = (
            conn.execute(
                text(
                    "select column_name from information_schema.columns "
                    "where table_name = 'patient_phone_keys' order by column_name"
                )
            )
            .scalars()
            .all()
        )
    assert sorted(columns) == ["key", "patient_id", "tenant_id"]
    assert len(keys) == 10  # the first and the last 5, 6, 7, 8 and 9 digits
    digits = phone[3:]
    for key in keys:
        assert len(key) == 16
        assert not any(digits[i : i + 5].encode() in bytes(key) for i in range(len(digits) - 4))


# --------------------------------------------------------------------------- similar spellings


SIMILAR = [
    ("Suresh", "Patil"),
    ("Naresh", "Jadhav"),
    ("Ramesh", "Jadhav"),
    ("Suresh", "Yadav"),
    ("Sudesh", "Jadhav"),
    ("Suresh", "Jadhav"),
    ("Surekha", "Jadhav"),
    ("Suresh", "Joshi"),
    ("Mahesh", "Jadhav"),
    ("Suraj", "Jadhav"),
    ("Sursh", "Kale"),
]


def test_a_misspelt_name_finds_the_closest_patient_first(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    for first, last in SIMILAR:
        make_patient(db, ident, tenant, name={"first": first, "last": last})
    result = names(found(client, desk, "Sursh Jadav"))
    assert result[0] == "Suresh Jadhav", result
    # close in both names beats exact in one: the order follows queries.closeness
    scores = [queries.closeness(["sursh", "jadav"], *n.lower().split()) for n in result[1:]]
    assert scores == sorted(scores, reverse=True), list(zip(result[1:], scores, strict=True))
    assert result.index("Suresh Yadav") < result.index("Sursh Kale") < result.index("Suresh Patil")


def test_without_the_search_function_similar_names_are_the_same(
    db: Database, ident: Identity, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database migrated without a superuser has no ``opdesk_similar_names``: the
    fallback query under row-level security must find the same names, in the same order.
    """
    for first, last in SIMILAR:
        make_patient(db, ident, tenant, name={"first": first, "last": last})
    with clinic_session(db, tenant.id) as session:
        with_function = queries.by_name(session, "Sursh Jadav")
        url = str(session.get_bind().engine.url)
        monkeypatch.setitem(queries._SIMILAR_FUNCTION, url, False)
        fallback = queries.by_name(session, "Sursh Jadav")
    assert [p.id for p in fallback] == [p.id for p in with_function]
    assert fallback[0].full_name == "Suresh Jadhav"


def test_closeness_prefers_both_names_and_either_order() -> None:
    both = queries.closeness(["sursh", "jadav"], "suresh", "jadhav")
    crossed = queries.closeness(["jadav", "sursh"], "suresh", "jadhav")
    one = queries.closeness(["sursh", "jadav"], "suresh", "patil")
    assert both == crossed
    assert both > one > 0
    assert queries.closeness(["jadhav"], "suresh", "jadhav") == 1.0


@pytest.mark.parametrize(
    ("a", "b"),
    [("sursh", "suresh"), ("jadav", "jadhav"), ("lakshmee", "lakshmi"), ("sharma", "sarma")],
)
def test_similarity_is_postgres_trigram_similarity(
    db: Database, tenant: Tenant, a: str, b: str
) -> None:
    with clinic_session(db, tenant.id) as session:
        expected = session.execute(text("select similarity(:a, :b)"), {"a": a, "b": b}).scalar()
    assert queries.similarity(a, b) == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- across scripts


def test_a_name_in_latin_letters_finds_it_written_in_devanagari_and_back(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    hindi = make_patient(db, ident, tenant, name={"first": "अमित", "last": "शर्मा"})
    latin = make_patient(db, ident, tenant, name={"first": "Amit", "last": "Sharma"})
    unrelated = make_patient(db, ident, tenant, name={"first": "अमिता", "last": "वर्मा"})
    for typed in ("Amit Sharma", "amit", "Sharma", "amit sh", "sharma amit"):
        result = ids(found(client, desk, typed))
        assert hindi.id in result, typed
    assert result.index(latin.id) < result.index(hindi.id)  # same script first
    assert unrelated.id not in ids(found(client, desk, "Amit Sharma"))
    for typed in ("अमित शर्मा", "शर्मा", "अमित"):
        assert latin.id in ids(found(client, desk, typed)), typed


def test_a_renamed_patient_is_found_by_the_new_name_in_the_other_script(
    client: TestClient, db: Database, ident: Identity, tenant: Tenant, desk: dict[str, str]
) -> None:
    patient = make_patient(db, ident, tenant, name={"first": "Sunita", "last": "Patil"})
    renamed = client.patch(
        f"/api/v1/patients/{patient.id}",
        json={"name": {"first": "Sunita", "last": "Deshmukh"}},
        headers=desk,
    )
    assert renamed.status_code == 200, renamed.text
    assert patient.id in ids(found(client, desk, "सुनीता देशमुख"))
    assert patient.id not in ids(found(client, desk, "सुनीता पाटील"))


@pytest.mark.parametrize(
    ("latin", "devanagari"),
    [
        ("Amit", "अमित"),
        ("Sharma", "शर्मा"),
        ("Suresh", "सुरेश"),
        ("Jadhav", "जाधव"),
        ("Lakshmi", "लक्ष्मी"),
        ("Krishna", "कृष्ण"),
        ("Singh", "सिंह"),
        ("Rao", "राव"),
        ("Reddy", "रेड्डी"),
        ("Deshpande", "देशपांडे"),
        ("Kamla", "कमला"),
        ("Kamala", "कमला"),
        ("Pooja", "पूजा"),
        ("Farhan", "फ़रहान"),
        ("Kale", "काळे"),
    ],
)
def test_common_names_sound_the_same_in_both_scripts(latin: str, devanagari: str) -> None:
    assert sounds.word_key(latin) == sounds.word_key(devanagari)
    assert sounds.name_key(latin).split(":") == ["l", sounds.word_key(latin)]
    assert sounds.name_key(devanagari).split(":") == ["i", sounds.word_key(latin)]


def test_different_names_sound_different() -> None:
    typed = ("Amit", "Sunil", "Sharma", "Verma", "Suresh", "Ramesh", "Rao", "Ravi")
    assert len({sounds.word_key(n) for n in typed}) == len(typed)


# --------------------------------------------------------------------------- the results


def test_results_show_a_masked_mobile_number_and_age(
    app: FastAPI, db: Database, ident: Identity, tenant: Tenant
) -> None:
    phone = "+919822043210"
    mother = make_patient(
        db, ident, tenant, phone=phone, name={"first": "Kavita", "last": "Zend"}, ageYears=41
    )
    make_patient(
        db,
        ident,
        tenant,
        phone=None,
        name={"first": "Kiran", "last": "Zend"},
        ageYears=9,
        guardianId=str(mother.id),
        guardianRelation="son",
    )
    token = open_session(db, ident, make_user(db, ident, tenant, "frontdesk"))
    with browser_for(app, token) as browser:
        page = browser.get("/patients/results", params={"q": "zend"})
    assert page.status_code == 200, page.text
    html = page.text
    assert "9822043210" not in html and "98220" not in html
    assert html.count("••••• •3210") == 2  # the son's is his mother's number
    assert re.search(r"Kavita Zend</strong>\s*<span class=\"muted\">P-\d+ · 41 y", html)
    assert re.search(r"Kiran Zend</strong>\s*<span class=\"muted\">P-\d+ · 9 y", html)
