"""The clinic's message providers through the JSON API: settings checked as the page
checks them, a secret never given back (only that it is set and its last four), saves
audited without their values, and a test message queued to a given address.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.db import Database
from opdesk.notifications.models import MessageProvider, OutboxMessage
from opdesk.tenancy.models import Tenant
from tests.factories import bearer, make_user, open_session
from tests.factories.clinics import clinic_session

AUTH_KEY = "msg91-auth-key-7f3a9c21"
ACCESS_TOKEN = "EAAG-whatsapp-access-token-5d1e"
APP_SECRET = "meta-app-secret-0b7c"
SHORT_SECRET = "pw-1234"  # eight or fewer: not even its last four are shown
SECRETS = (AUTH_KEY, ACCESS_TOKEN, APP_SECRET, SHORT_SECRET)
SMS = "/api/v1/messaging/providers/sms"


def headers_for(db: Database, ident: Any, tenant: Tenant, role: str) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


@pytest.fixture
def admin(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return headers_for(db, ident, tenant, "admin")


def sms_body(**settings: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "settings": {"authKey": AUTH_KEY, "senderId": "OPDESK", **settings},
        "templates": {"otp": {"en": {"templateId": "t1", "dltTemplateId": "1107"}}},
    }


def by_channel(answer: Any) -> dict[str, Any]:
    return {p["channel"]: p for p in answer.json()}


def setting(provider: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in provider["settings"] if s["name"] == name]
    assert len(found) == 1, name
    return found[0]


def provider_audits(db: Database, tenant: Tenant) -> list[AuditEvent]:
    with clinic_session(db, tenant.id) as session:
        found = list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.entity_collection == "message_providers")
                .order_by(AuditEvent.seq)
            ).scalars()
        )
        session.expunge_all()
        return found


def provider_rows(db: Database, tenant: Tenant) -> list[tuple[str, bool]]:
    with clinic_session(db, tenant.id) as session:
        return [
            (r.channel, r.enabled)
            for r in session.execute(select(MessageProvider).order_by(MessageProvider.channel))
            .scalars()
            .all()
        ]


def test_every_channel_starts_on_the_dev_inbox(client: TestClient, admin: dict[str, str]) -> None:
    answer = client.get("/api/v1/messaging/providers", headers=admin)
    assert answer.status_code == 200
    providers = by_channel(answer)
    assert set(providers) == {"sms", "whatsapp", "email"}
    for p in providers.values():
        assert (p["provider"], p["enabled"], p["updatedAt"], p["templates"]) == (
            "log",
            False,
            None,
            {},
        )
        assert all(not s["isSet"] for s in p["settings"])
    assert {s["name"] for s in providers["sms"]["settings"]} == {"authKey", "senderId", "baseUrl"}


def test_saving_a_provider_shows_its_secret_only_as_set_and_last_four_audited(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    saved = client.put(SMS, json=sms_body(), headers=admin)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["channel"], body["provider"], body["enabled"]) == ("sms", "msg91", True)
    key = setting(body, "authKey")
    assert (key["secret"], key["isSet"], key["value"], key["lastFour"]) == (
        True,
        True,
        None,
        "9c21",
    )
    sender = setting(body, "senderId")
    assert (sender["secret"], sender["isSet"], sender["value"]) == (False, True, "OPDESK")
    assert body["templates"] == {"otp": {"en": {"templateId": "t1", "dltTemplateId": "1107"}}}
    assert AUTH_KEY not in saved.text
    listed = client.get("/api/v1/messaging/providers", headers=admin)
    assert AUTH_KEY not in listed.text
    assert by_channel(listed)["sms"] == body
    # Audited: which settings changed, never their values.
    [event] = provider_audits(db, tenant)
    assert event.action == "create"
    assert event.diff["changed"] == ["authKey", "senderId", "templates"]
    assert AUTH_KEY not in json.dumps(event.diff)


def test_a_secret_left_out_keeps_the_stored_one(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    assert client.put(SMS, json=sms_body(), headers=admin).status_code == 200
    body = sms_body(senderId="CLINIC")
    del body["settings"]["authKey"]
    again = client.put(SMS, json=body, headers=admin)
    assert again.status_code == 200, again.text
    key = setting(again.json(), "authKey")
    assert (key["isSet"], key["lastFour"]) == (True, "9c21")
    assert setting(again.json(), "senderId")["value"] == "CLINIC"
    blank = client.put(SMS, json=sms_body(authKey=""), headers=admin)
    assert setting(blank.json(), "authKey")["lastFour"] == "9c21"
    events = provider_audits(db, tenant)
    assert [e.action for e in events] == ["create", "update", "update"]
    assert events[1].diff["changed"] == ["senderId"]


def test_no_secret_is_ever_given_back_by_any_route(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    answers = [
        client.put(SMS, json=sms_body(), headers=admin),
        client.put(
            "/api/v1/messaging/providers/whatsapp",
            json={
                "enabled": True,
                "settings": {
                    "accessToken": ACCESS_TOKEN,
                    "phoneNumberId": "1055",
                    "appSecret": APP_SECRET,
                    "verifyToken": SHORT_SECRET,
                },
            },
            headers=admin,
        ),
        # Refused (email needs its host and from address): the refusal echoes no value.
        client.put(
            "/api/v1/messaging/providers/email",
            json={"enabled": True, "settings": {"password": SHORT_SECRET}},
            headers=admin,
        ),
        client.get("/api/v1/messaging/providers", headers=admin),
        client.post(f"{SMS}/test", json={"to": "98123 45678"}, headers=admin),
        client.get("/api/v1/outbox", headers=admin),
    ]
    assert [a.status_code for a in answers] == [200, 200, 422, 200, 202, 200]
    for answer in answers:
        for secret in SECRETS:
            assert secret not in answer.text
    whatsapp = by_channel(answers[3])["whatsapp"]
    assert setting(whatsapp, "accessToken")["lastFour"] == "5d1e"
    short = setting(whatsapp, "verifyToken")
    assert (short["isSet"], short["lastFour"], short["value"]) == (True, None, None)


@pytest.mark.parametrize(
    ("channel", "body", "fields"),
    [
        # Switched on without what it sends with: each missing setting named.
        ("sms", {"enabled": True, "settings": {"baseUrl": "http://x"}}, ["authKey", "senderId"]),
        (
            "whatsapp",
            {"enabled": True, "settings": {"accessToken": ACCESS_TOKEN}},
            ["phoneNumberId", "appSecret"],
        ),
        ("email", {"enabled": True, "settings": {"host": "smtp.example.in"}}, ["fromAddress"]),
        # A setting the provider does not take.
        ("sms", {"enabled": False, "settings": {"apiKey": "x"}}, ["settings.apiKey"]),
        # Template ids not an object.
        ("sms", {"enabled": False, "templates": ["otp"]}, ["templates"]),
        # Enabled not said.
        ("sms", {"settings": {}}, ["enabled"]),
    ],
)
def test_bad_provider_settings_are_422_naming_each_field_and_save_nothing(
    client: TestClient,
    admin: dict[str, str],
    db: Database,
    tenant: Tenant,
    channel: str,
    body: dict[str, Any],
    fields: list[str],
) -> None:
    answer = client.put(f"/api/v1/messaging/providers/{channel}", json=body, headers=admin)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == fields
    assert provider_rows(db, tenant) == []
    assert provider_audits(db, tenant) == []


def test_an_unknown_channel_is_404(client: TestClient, admin: dict[str, str]) -> None:
    for answer in (
        client.put("/api/v1/messaging/providers/pigeon", json=sms_body(), headers=admin),
        client.post("/api/v1/messaging/providers/pigeon/test", json={"to": "x"}, headers=admin),
    ):
        assert answer.status_code == 404
        assert "pigeon" in answer.json()["detail"]


def test_a_test_message_is_queued_to_the_address_given_audited(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    answer = client.post(f"{SMS}/test", json={"to": "98123 45678"}, headers=admin)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["template"], body["channel"], body["status"]) == ("test-message", "sms", "pending")
    assert body["to"] == "+919812345678"
    assert f"This is a test message from {tenant.name} on OPDesk" in body["text"]
    assert client.get(f"/api/v1/outbox/{body['id']}", headers=admin).json() == body
    with clinic_session(db, tenant.id) as session:
        [row] = session.execute(select(OutboxMessage)).scalars()
        assert str(row.id) == body["id"]
        [event] = session.execute(
            select(AuditEvent).where(
                AuditEvent.entity_collection == "notifications_outbox",
                AuditEvent.entity_id == row.id,
            )
        ).scalars()
        assert event.action == "create"
    email = client.post(
        "/api/v1/messaging/providers/email/test", json={"to": "desk@example.in"}, headers=admin
    )
    assert email.status_code == 202
    assert email.json()["to"] == "desk@example.in"


@pytest.mark.parametrize(
    ("channel", "to"), [("sms", "12"), ("whatsapp", "not a phone"), ("email", "nobody")]
)
def test_a_test_message_to_a_bad_address_is_422_naming_to(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant, channel: str, to: str
) -> None:
    answer = client.post(
        f"/api/v1/messaging/providers/{channel}/test", json={"to": to}, headers=admin
    )
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["to"]
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(OutboxMessage)).first() is None


@pytest.mark.parametrize("role", ["frontdesk", "doctor"])
def test_only_the_admin_sees_or_sets_providers(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, role: str
) -> None:
    headers = headers_for(db, ident, tenant, role)
    assert client.get("/api/v1/messaging/providers", headers=headers).status_code == 403
    assert client.put(SMS, json=sms_body(), headers=headers).status_code == 403
    test = client.post(f"{SMS}/test", json={"to": "98123 45678"}, headers=headers)
    assert test.status_code == 403
    assert provider_rows(db, tenant) == []
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(OutboxMessage)).first() is None
