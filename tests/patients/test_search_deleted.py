"""A soft-deleted patient is found by no kind of patient search.

``queries.search`` reads what the front desk types and hands it to one way of finding
patients: by phone (the patient with that number and the family sharing it), by patient
number, or by name (prefix of first or last name, both names in either order, then
similar spellings). Each case below is one way in, checked through the API and through
``queries.search`` itself: found before the delete, not found after it. A spy confirms
that each case really goes the way it says, and
:func:`test_every_way_search_finds_patients_has_a_case` fails when ``search`` gains a way
in that no case covers.

Name cases keep a live namesake, so the search still has something to find (and, for
similar spellings, the name stays in the clinic's vocabulary) after the delete.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.patients import queries
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    clinic_session,
    make_patient,
    make_user,
    open_session,
    unique_mobile,
)

NAME = {"first": "Lakshmi", "last": "Iyer"}


@dataclass(frozen=True)
class Setup:
    target: uuid.UUID  # the patient who is deleted
    query: str  # what the desk types to find them
    survivors: tuple[uuid.UUID, ...] = ()  # live patients the same query still finds


Build = Callable[[Database, Identity, Tenant], Setup]


def by_own_phone(spell: Callable[[str], str]) -> Build:
    def build(db: Database, ident: Identity, tenant: Tenant) -> Setup:
        phone = unique_mobile()
        return Setup(make_patient(db, ident, tenant, phone=phone).id, spell(phone))

    return build


def as_typed(phone: str) -> str:
    """``+919812345678`` as a desk might type it: ``098123 45678``."""
    return f"0{phone[3:8]} {phone[8:]}"


def dependent_by_guardians_phone(db: Database, ident: Identity, tenant: Tenant) -> Setup:
    phone = unique_mobile()
    guardian = make_patient(db, ident, tenant, phone=phone)
    child = make_patient(
        db,
        ident,
        tenant,
        name={"first": "Arjun"},
        phone=None,
        guardianId=str(guardian.id),
        guardianRelation="son",
    )
    return Setup(child.id, phone, survivors=(guardian.id,))


def by_number(spell: Callable[[int, str], str]) -> Build:
    def build(db: Database, ident: Identity, tenant: Tenant) -> Setup:
        patient = make_patient(db, ident, tenant)
        return Setup(patient.id, spell(patient.number, patient.display_number))

    return build


def by_name(query: str) -> Build:
    def build(db: Database, ident: Identity, tenant: Tenant) -> Setup:
        target = make_patient(db, ident, tenant, name=NAME)
        namesake = make_patient(db, ident, tenant, name=NAME)
        return Setup(target.id, query, survivors=(namesake.id,))

    return build


@dataclass(frozen=True)
class Case:
    way: str  # the function of ``queries`` that finds the patient
    build: Build


CASES: dict[str, Case] = {
    "phone-as-stored": Case("by_phone", by_own_phone(lambda phone: phone)),
    "phone-as-typed": Case("by_phone", by_own_phone(as_typed)),
    "phone-of-guardian-finds-dependent": Case("by_phone", dependent_by_guardians_phone),
    "number-as-shown": Case("by_number", by_number(lambda _, shown: shown)),  # P-000001
    "number-bare": Case("by_number", by_number(lambda number, _: str(number))),
    "number-lowercase-no-dash": Case("by_number", by_number(lambda number, _: f"p{number}")),
    "name-first-prefix": Case("_prefix", by_name("laksh")),
    "name-last-prefix": Case("_prefix", by_name("iye")),
    "name-first-then-last": Case("_prefix", by_name("lakshmi iy")),
    "name-last-then-first": Case("_prefix", by_name("iyer laks")),
    "name-similar-spelling": Case("_fuzzy", by_name("Lakshmee")),
    "phone-first-digits": Case("by_phone_part", by_own_phone(lambda phone: phone[3:8])),
    "phone-last-digits": Case("by_phone_part", by_own_phone(lambda phone: phone[-5:])),
    "name-other-script": Case("_sound", by_name("लक्ष्मी")),  # finds "Lakshmi Iyer"
}

# Helpers ``search`` calls that find nothing themselves.
NOT_A_WAY_IN = {"patient_number"}


def module_functions_called_by(function: Callable[..., Any]) -> set[str]:
    """Names of the functions of ``queries`` that ``function``'s body calls."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    return {
        name
        for name in called
        if inspect.isfunction(found := getattr(queries, name, None))
        and inspect.getmodule(found) is queries
    }


def test_every_way_search_finds_patients_has_a_case() -> None:
    dispatched = module_functions_called_by(queries.search) - NOT_A_WAY_IN
    assert "by_name" in dispatched, "search no longer searches by name through by_name"
    ways = (dispatched - {"by_name"}) | module_functions_called_by(queries.by_name)
    covered = {case.way for case in CASES.values()}
    assert sorted(ways - covered) == [], "search finds patients this way; add a case to CASES"
    assert sorted(covered - ways) == [], "a case names a way search no longer takes"


@pytest.fixture
def ways_taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ways of finding patients each search went, in order (a spy on ``queries``)."""
    taken: list[str] = []
    for way in {case.way for case in CASES.values()}:
        real = getattr(queries, way)

        def spy(*args: Any, _real: Any = real, _way: str = way, **kwargs: Any) -> Any:
            taken.append(_way)
            return _real(*args, **kwargs)

        monkeypatch.setattr(queries, way, spy)
    return taken


@pytest.mark.parametrize("case", list(CASES))
def test_a_deleted_patient_is_found_by_no_search(
    client: TestClient,
    db: Database,
    ident: Identity,
    tenant: Tenant,
    ways_taken: list[str],
    case: str,
) -> None:
    way = CASES[case].way
    setup = CASES[case].build(db, ident, tenant)
    desk = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    admin = bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))

    def through_api() -> list[uuid.UUID]:
        response = client.get("/api/v1/patients", params={"q": setup.query}, headers=desk)
        assert response.status_code == 200, response.text
        return [uuid.UUID(p["id"]) for p in response.json()]

    def through_queries() -> list[uuid.UUID]:
        with clinic_session(db, tenant.id) as session:
            return [p.id for p in queries.search(session, ident.cipher, setup.query)]

    for search in (through_api, through_queries):
        ways_taken.clear()
        found = search()
        assert way in ways_taken, f"{setup.query!r} went {ways_taken}, not {way}"
        assert setup.target in found, f"{search.__name__}: {setup.query!r} misses the patient"

    deleted = client.delete(f"/api/v1/patients/{setup.target}", headers=admin)
    assert deleted.status_code == 204, deleted.text

    for search in (through_api, through_queries):
        ways_taken.clear()
        found = search()
        assert way in ways_taken, f"{setup.query!r} went {ways_taken}, not {way}"
        assert setup.target not in found, (
            f"{search.__name__}: {setup.query!r} ({way}) finds the deleted patient"
        )
        assert set(setup.survivors) <= set(found), f"{search.__name__}: a live patient is lost"
