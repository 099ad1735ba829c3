"""A clinic's ABDM settings (issue 18, item 7): saved by admins through the API and the
page, the client secret encrypted and never shown or audited, the facility id one
clinic's only, and each counter's Scan & Share QR code to print.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.abdm.models import AbdmSettings
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    browser_for,
    clinic_session,
    csrf_of,
    events_of,
    make_user,
    open_session,
)
from tests.factories.abdm import unique_facility_id, with_abdm
from tests.factories.registration import field_errors

SECRET = "s3cret-from-abdm-7731"


@pytest.fixture
def admin(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))


def body(**fields: Any) -> dict[str, Any]:
    return {
        "facilityId": unique_facility_id(),
        "facilityName": "Shanti Clinic",
        "clientId": "SBX_004411",
        "clientSecret": SECRET,
        "environment": "sandbox",
        "enabled": True,
        "counters": [{"id": "desk-1", "label": "Front desk"}],
        **fields,
    }


def test_settings_are_404_until_saved_then_shown_without_the_secret(
    client: TestClient, db: Database, tenant: Tenant, admin: dict[str, str]
) -> None:
    assert client.get("/api/v1/abdm/settings", headers=admin).status_code == 404
    sent = body(facilityId=" in27100047 ")
    saved = client.put("/api/v1/abdm/settings", json=sent, headers=admin)
    assert saved.status_code == 200, saved.text
    shown = client.get("/api/v1/abdm/settings", headers=admin).json()
    assert shown["facilityId"] == "IN27100047"
    assert shown["clientSecretLast4"] == "7731"
    assert SECRET not in str(shown)
    assert shown["counters"] == [{"id": "desk-1", "label": "Front desk"}]
    with clinic_session(db, tenant.id) as session:
        row = session.scalar(select(AbdmSettings))
        assert row is not None and SECRET.encode() not in row.client_secret
    event = [e for e in events_of(db, tenant.id) if e.entity_collection == "abdm_settings"][-1]
    assert event.action == "create"
    assert SECRET not in str(event.diff)
    assert event.diff["added"]["clientSecret"] == "[encrypted]"


def test_a_secret_left_out_keeps_the_saved_one_but_is_needed_the_first_time(
    client: TestClient, cipher: Any, tenant: Tenant, admin: dict[str, str], db: Database
) -> None:
    first = client.put("/api/v1/abdm/settings", json=body(clientSecret=None), headers=admin)
    assert first.status_code == 422
    assert first.json()["errors"][0]["field"] == "clientSecret"
    assert client.put("/api/v1/abdm/settings", json=body(), headers=admin).status_code == 200
    renamed = body(facilityName="Shanti Clinic, Kothrud", clientSecret=None)
    again = client.put("/api/v1/abdm/settings", json=renamed, headers=admin)
    assert again.status_code == 200
    assert again.json()["clientSecretLast4"] == "7731"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"facilityId": "IN-27"}, "facilityId"),
        ({"facilityName": " "}, "facilityName"),
        ({"clientId": "a b"}, "clientId"),
        ({"clientSecret": "short"}, "clientSecret"),
        ({"environment": "staging"}, "environment"),
        ({"counters": [{"id": "Desk 1", "label": "Front"}]}, "counters[0].id"),
        ({"counters": [{"id": "d1", "label": "A"}, {"id": "d1", "label": "B"}]}, "counters[1].id"),
        ({"counters": [{"id": "d1", "label": ""}]}, "counters[0].label"),
    ],
)
def test_bad_settings_are_422_naming_the_field_and_nothing_is_saved(
    client: TestClient, admin: dict[str, str], fields: dict[str, Any], field: str
) -> None:
    response = client.put("/api/v1/abdm/settings", json=body(**fields), headers=admin)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert client.get("/api/v1/abdm/settings", headers=admin).status_code == 404


def test_a_facility_id_of_another_clinic_is_409(
    client: TestClient,
    db: Database,
    ident: Any,
    cipher: Any,
    other_tenant: Tenant,
    admin: dict[str, str],
) -> None:
    theirs = with_abdm(db, cipher, other_tenant)
    response = client.put(
        "/api/v1/abdm/settings", json=body(facilityId=theirs.facility_id), headers=admin
    )
    assert response.status_code == 409
    assert response.json()["field"] == "facilityId"
    assert client.get("/api/v1/abdm/settings", headers=admin).status_code == 404


def test_the_page_saves_settings_and_offers_each_counter_s_qr_code(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    page = browser_for(app, open_session(db, ident, make_user(db, ident, tenant, "admin")))
    form = page.get("/admin/abdm").text
    facility = unique_facility_id()
    fields = {
        "csrf_token": csrf_of(form),
        "facilityId": facility,
        "facilityName": "शांति क्लिनिक",
        "clientId": "SBX_004411",
        "clientSecret": SECRET,
        "environment": "sandbox",
        "enabled": "on",
        "counters": "desk-1: Front desk\n\nlab: पैथोलॉजी काउंटर\n",
    }
    bad = page.post("/admin/abdm", data={**fields, "counters": "desk-1 Front desk"})
    assert bad.status_code == 422
    assert "colon" in field_errors(bad.text)["counters"]
    assert SECRET not in bad.text
    saved = page.post("/admin/abdm", data=fields, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    shown = page.get("/admin/abdm").text
    assert "ABDM settings saved." in shown
    assert "/queue/scan-share/lab/qr" in shown and "पैथोलॉजी काउंटर" in shown
    assert SECRET not in shown and "7731" in shown
    poster = page.get("/queue/scan-share/lab/qr")
    assert poster.status_code == 200
    assert "<svg" in poster.text and "शांति क्लिनिक" in poster.text
    link = next(line for line in poster.text.splitlines() if "share-profile" in line)
    url = urlsplit(html.unescape(link.split(">")[1].split("<")[0]))
    assert (url.scheme, url.netloc, url.path) == ("https", "phrsbx.abdm.gov.in", "/share-profile")
    assert parse_qs(url.query) == {"hip-id": [facility], "counter-id": ["lab"]}
    assert page.get("/queue/scan-share/desk-9/qr").status_code == 404


def test_the_desk_prints_qr_codes_but_cannot_see_the_settings(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    counter = with_abdm(db, cipher, tenant).counters[0]
    desk = browser_for(app, open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    assert desk.get(f"/queue/scan-share/{counter.id}/qr").status_code == 200
    assert desk.get("/admin/abdm").status_code == 403
