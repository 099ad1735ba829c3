"""Linking visits to a patient's ABHA (issue 18, item 5): the clinic links each signed
visit with one link token kept per patient for six months (asked for once, never while a
question is out, and not for a day after ABDM refuses); the patient links visits they
discovered with an OTP the clinic texts them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.abdm import linking
from opdesk.abdm.messages import V3_PATHS
from opdesk.abdm.models import CareContext, LinkRequest, LinkToken
from opdesk.abdm.settings import Abdm
from opdesk.automation.models import AutomationEvent
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.notifications.models import OutboxMessage
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.tenancy.models import Tenant
from tests.factories import browser_for, clinic_session, make_user, open_session
from tests.factories.abdm import (
    Shifted,
    arrivals,
    deliver,
    discover_body,
    link_answer,
    link_confirm_body,
    link_init_body,
    signed_call,
    token_answer,
    token_refusal,
    with_abdm,
)
from tests.factories.automation import make_worker
from tests.factories.clinical_visits import next_signed_visit, signed_visit
from tests.factories.people import latest_code
from tests.fakes.abdm_gateway import FakeAbdmGateway, error_answer

ADDRESS = "asha.p1996@sbx"
assert V3_PATHS.generate_token is not None and V3_PATHS.on_generate_token is not None
GENERATE: str = V3_PATHS.generate_token
TOKEN_ANSWER: str = V3_PATHS.on_generate_token
LINK = V3_PATHS.link_carecontext


@pytest.fixture
def side(
    bridge_app: FastAPI,
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    cipher: Any,
    pointed: Settings,
) -> Side:
    return Side(bridge_app, gateway_side, gateway, clinic, clock, db, cipher, pointed)


class Side:
    """The gateway and the worker, as a test drives them."""

    def __init__(
        self,
        app: FastAPI,
        client: TestClient,
        gateway: FakeAbdmGateway,
        clinic: Abdm,
        clock: Shifted,
        db: Database,
        cipher: Any,
        pointed: Settings,
    ) -> None:
        self.app, self.client, self.gateway = app, client, gateway
        self.clinic, self.clock = clinic, clock
        self.db, self.cipher, self.pointed = db, cipher, pointed

    def work(self) -> None:
        worker = make_worker(self.db, self.cipher, settings=self.pointed, clock=self.clock)
        while worker.run_once():
            pass

    def call(self, path: str, body: Any, *, work: bool = True) -> None:
        made = signed_call(self.gateway, path, body, self.clinic.facility_id, self.clock)
        assert deliver(self.client, made).status_code == 202
        if work:
            self.work()

    def asked(self, path: str) -> list[Any]:
        """This clinic's calls to the gateway at ``path``, oldest first (headers and body).
        Other tests' clinics share the database, so their due work may call this fake."""
        return [
            a
            for a in self.gateway.received
            if a.path == path and a.headers.get("x-hip-id") == self.clinic.facility_id
        ]

    def story(self, tenant: Tenant) -> str:
        """What the clinic sent and what its worker ran, for a failing assertion."""
        with clinic_session(self.db, tenant.id) as session:
            events = session.scalars(
                select(AutomationEvent).order_by(AutomationEvent.scheduled_for)
            ).all()
            lines = [
                f"event {e.rule} {e.status} at {e.scheduled_for:%d %H:%M:%S} key {e.dedupe_key}"
                f" tries {e.attempts} {e.last_error or ''}"
                for e in events
                if e.rule.startswith("abdm.")
            ]
        lines += [
            f"sent {a.path} {a.headers.get('request-id')} {a.headers.get('x-hip-id')}"
            for a in self.gateway.received
            if a.path in (GENERATE, LINK)
        ]
        return "\n".join([f"clinic {self.clinic.facility_id}", *lines])

    def page(self, ident: Any, tenant: Tenant, patient_id: uuid.UUID) -> str:
        """The patient's ABDM page as the desk reads it."""
        desk = open_session(self.db, ident, make_user(self.db, ident, tenant, "frontdesk"))
        answer = browser_for(self.app, desk).get(f"/patients/{patient_id}/abdm")
        assert answer.status_code == 200
        return answer.text

    def give_token(self, token: str | None = None) -> str:
        """Answer OPDesk's last token question with ``token`` (one the fake issued)."""
        question = self.asked(GENERATE)[-1]
        token = token or self.gateway.issue_link_token(ADDRESS)
        answer = token_answer(question.headers["request-id"], ADDRESS, token)
        self.call(TOKEN_ANSWER, answer)
        return token

    def confirm_links(self) -> None:
        """Answer OPDesk's last link call: linked."""
        link = self.asked(LINK)[-1]
        self.call(V3_PATHS.on_link_carecontext, link_answer(link.headers["request-id"], ADDRESS))


def contexts_of(db: Database, tenant: Tenant) -> list[CareContext]:
    with clinic_session(db, tenant.id) as session:
        return list(session.scalars(select(CareContext).order_by(CareContext.happened_at)))


def token_row(db: Database, tenant: Tenant) -> LinkToken:
    with clinic_session(db, tenant.id) as session:
        return session.scalars(select(LinkToken)).one()


def test_a_signed_visit_is_linked_and_the_token_is_kept_for_the_next(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    (question,) = side.asked(GENERATE)
    assert question.headers["x-hip-id"] == side.clinic.facility_id
    assert question.body["abhaAddress"] == ADDRESS
    assert question.body["name"].replace(" ", "").isalpha()
    assert question.body["gender"] in {"M", "F", "O", "U"}
    assert not side.asked(LINK)  # nothing to link with yet

    token = side.give_token()
    (link,) = side.asked(LINK)
    assert link.headers["x-link-token"] == token
    (group,) = link.body["patient"]
    assert group["referenceNumber"] == str(consult.patient.id)
    assert [c["referenceNumber"] for c in group["careContexts"]] == [str(visit.id)]
    assert "Viral fever" not in str(link.body)
    sealed = token_row(db, tenant).token_encrypted
    assert sealed is not None and token.encode() not in sealed  # kept, sealed at rest

    side.confirm_links()
    (context,) = contexts_of(db, tenant)
    assert context.linked_by == "hip" and context.linked_at is not None
    assert "Yes, by the clinic" in side.page(ident, tenant, consult.patient.id)

    later = next_signed_visit(db, cipher, consult)
    side.work()
    assert len(side.asked(GENERATE)) == 1  # the kept token, not a new question
    second = side.asked(LINK)[-1]
    assert second.headers["x-link-token"] == token
    assert [c["referenceNumber"] for c in second.body["patient"][0]["careContexts"]] == [
        str(later.id)
    ]


def test_visits_signed_while_a_token_is_asked_for_ask_once_and_link_together(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, first = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    second = next_signed_visit(db, cipher, consult)
    side.work()
    assert len(side.asked(GENERATE)) == 1
    side.give_token()
    (link,) = side.asked(LINK)
    named = {c["referenceNumber"] for c in link.body["patient"][0]["careContexts"]}
    assert named == {str(first.id), str(second.id)}
    assert len(side.gateway.token_asks[f"{side.clinic.facility_id}/{ADDRESS}"]) == 1


def test_a_refused_question_is_not_asked_again_for_a_day(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    side.gateway.answer_next(error_answer("nested", 429, "ABDM-1022", "Too many requests"))
    consult, _visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    assert len(side.asked(GENERATE)) == 1
    row = token_row(db, tenant)
    assert row.last_error is not None and "ABDM-1022" in row.last_error
    assert row.not_before is not None
    assert row.not_before - side.clock() > timedelta(hours=23)
    page = side.page(ident, tenant, consult.patient.id)
    assert "ABDM did not let the clinic link" in page and "ABDM-1022" in page

    next_signed_visit(db, cipher, consult)
    side.work()
    side.clock.offset = timedelta(hours=12)
    side.work()
    assert len(side.asked(GENERATE)) == 1  # paused: asking now would earn ABDM's block

    side.clock.offset = timedelta(hours=25)
    side.work()
    assert len(side.asked(GENERATE)) == 2
    side.give_token()
    (link,) = side.asked(LINK)
    assert len(link.body["patient"][0]["careContexts"]) == 2


def test_an_answer_refusing_the_token_also_pauses_asking(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, _visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    question = side.asked(GENERATE)[-1]
    refusal = token_refusal(
        question.headers["request-id"], ADDRESS, "ABDM-1001", "Demographic details do not match"
    )
    side.call(TOKEN_ANSWER, refusal)
    row = token_row(db, tenant)
    assert row.token_encrypted is None and row.not_before is not None
    assert row.last_error is not None and "Demographic" in row.last_error
    next_signed_visit(db, cipher, consult)
    side.work()
    assert len(side.asked(GENERATE)) == 1


def test_the_token_is_asked_for_again_after_its_six_months(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, _visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    side.give_token()
    side.confirm_links()
    side.clock.offset = linking.TOKEN_LIFE + timedelta(days=1)
    next_signed_visit(db, cipher, consult)
    side.work()
    assert len(side.asked(GENERATE)) == 2
    assert len(side.asked(LINK)) == 1


def test_a_link_token_the_gateway_refuses_is_forgotten_and_a_new_one_asked_for(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    side.give_token("lt.not-one-the-gateway-issued")
    assert len(side.asked(LINK)) == 1  # refused: 400 Invalid X-LINK-TOKEN
    row = token_row(db, tenant)
    assert row.token_encrypted is None and row.last_error is not None
    # The refused token was asked for moments ago: asking again now would earn the block.
    assert len(side.asked(GENERATE)) == 1
    side.clock.offset = linking.REFUSED_PAUSE + timedelta(minutes=1)
    side.work()
    assert len(side.asked(GENERATE)) == 2, side.story(tenant)
    good = side.give_token()
    assert side.asked(LINK)[-1].headers["x-link-token"] == good
    side.confirm_links()
    (context,) = contexts_of(db, tenant)
    assert context.linked_by == "hip"


def test_a_patient_without_an_abha_or_a_clinic_off_abdm_asks_nothing(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    signed_visit(db, ident, cipher, tenant)  # no ABHA address
    with_abdm(db, cipher, other_tenant, enabled=False)
    signed_visit(db, ident, cipher, other_tenant, abhaAddress=ADDRESS)
    side.work()
    assert not side.asked(GENERATE) and not side.asked(LINK)


def test_a_duplicate_token_answer_keeps_the_token_once(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    question = side.asked(GENERATE)[-1]
    token = side.gateway.issue_link_token(ADDRESS)
    made = signed_call(
        side.gateway,
        TOKEN_ANSWER,
        token_answer(question.headers["request-id"], ADDRESS, token),
        side.clinic.facility_id,
        side.clock,
    )
    assert deliver(side.client, made).status_code == 202
    assert deliver(side.client, made).status_code == 202  # the gateway's retry
    side.work()
    assert len(side.asked(LINK)) == 1


# --------------------------------------------------------------------------- the patient links


def phone_of(db: Database, cipher: Any, tenant: Tenant, patient_id: uuid.UUID) -> str:
    with clinic_session(db, tenant.id) as session:
        found = session.get_one(Patient, (tenant.id, patient_id))
        phone = patients.contact_phone(session, cipher, found)
    assert phone is not None
    return phone


def test_the_patient_links_a_discovered_visit_with_the_otp_texted_to_them(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    patient_id = consult.patient.id
    side.call(V3_PATHS.link_init, link_init_body(ADDRESS, str(patient_id), str(visit.id)))
    (init,) = arrivals(side.gateway, V3_PATHS.on_init)
    assert "error" not in init
    reference = init["link"]["referenceNumber"]
    phone = phone_of(db, cipher, tenant, patient_id)
    assert init["link"]["meta"]["communicationHint"].endswith(phone[-4:])
    assert phone not in str(init)
    code = latest_code(db, cipher, tenant, phone, template="abdm-link-otp")

    wrong = "000000" if code != "000000" else "111111"
    side.call(V3_PATHS.link_confirm, link_confirm_body(reference, wrong))
    (refused,) = arrivals(side.gateway, V3_PATHS.on_confirm)
    assert refused["error"]["message"].startswith("The OTP is wrong")
    assert contexts_of(db, tenant)[0].linked_at is None

    side.call(V3_PATHS.link_confirm, link_confirm_body(reference, code))
    confirmed = arrivals(side.gateway, V3_PATHS.on_confirm)[-1]
    (group,) = confirmed["patient"]
    assert [c["referenceNumber"] for c in group["careContexts"]] == [str(visit.id)]
    (context,) = contexts_of(db, tenant)
    assert context.linked_by == "patient"
    assert "Yes, by the patient" in side.page(ident, tenant, patient_id)

    # The same OTP again changes nothing; and discovery no longer offers the linked visit.
    side.call(V3_PATHS.link_confirm, link_confirm_body(reference, code))
    assert "error" in arrivals(side.gateway, V3_PATHS.on_confirm)[-1]
    side.call(V3_PATHS.discover, discover_body(ADDRESS))
    (found,) = arrivals(side.gateway, V3_PATHS.on_discover)
    assert found["error"]["message"] == "All visits of the patient here are already linked"


def test_five_wrong_otps_or_ten_minutes_end_a_link_request(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant)
    body = link_init_body(ADDRESS, str(consult.patient.id), str(visit.id))
    side.call(V3_PATHS.link_init, body)
    reference = arrivals(side.gateway, V3_PATHS.on_init)[-1]["link"]["referenceNumber"]
    code = latest_code(
        db, cipher, tenant, phone_of(db, cipher, tenant, consult.patient.id), "abdm-link-otp"
    )
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(linking.OTP_TRIES):
        side.call(V3_PATHS.link_confirm, link_confirm_body(reference, wrong))
    side.call(V3_PATHS.link_confirm, link_confirm_body(reference, code))
    assert "error" in arrivals(side.gateway, V3_PATHS.on_confirm)[-1]
    with clinic_session(db, tenant.id) as session:
        made = session.scalars(select(LinkRequest)).one()
    assert made.status == "refused" and made.attempts == linking.OTP_TRIES

    side.call(V3_PATHS.link_init, {**body, "transactionId": str(uuid.uuid4())})
    late = arrivals(side.gateway, V3_PATHS.on_init)[-1]["link"]["referenceNumber"]
    side.clock.offset = linking.OTP_LIFE + timedelta(seconds=1)
    side.call(V3_PATHS.link_confirm, link_confirm_body(late, code))
    assert "expired" in arrivals(side.gateway, V3_PATHS.on_confirm)[-1]["error"]["message"]
    assert all(c.linked_at is None for c in contexts_of(db, tenant))


def test_a_link_request_for_another_clinics_visit_is_refused(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine, _visit = signed_visit(db, ident, cipher, tenant)
    theirs, their_visit = signed_visit(db, ident, cipher, other_tenant)
    side.call(
        V3_PATHS.link_init, link_init_body(ADDRESS, str(mine.patient.id), str(their_visit.id))
    )
    side.call(
        V3_PATHS.link_init, link_init_body(ADDRESS, str(theirs.patient.id), str(their_visit.id))
    )
    refusals = arrivals(side.gateway, V3_PATHS.on_init)
    assert len(refusals) == 2 and all("error" in r for r in refusals)
    with clinic_session(db, tenant.id) as session:
        assert not list(session.scalars(select(LinkRequest)))


@pytest.mark.parametrize(("status", "after"), [(400, "failed"), (503, "pending")])
def test_an_answer_the_gateway_refuses_is_not_sent_again_but_one_it_missed_is(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant, status: int, after: str
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant)
    body = link_init_body(ADDRESS, str(consult.patient.id), str(visit.id))
    side.call(V3_PATHS.link_init, body, work=False)
    # (Retry-After keeps the worker's retry out of this work loop.)
    refusal = error_answer("nested", status, "ABDM-1017", "Refused", retry_after="120")
    side.gateway.answer_next(refusal)
    side.work()
    with clinic_session(db, tenant.id) as session:
        event = session.scalars(
            select(AutomationEvent).where(AutomationEvent.rule == linking.INIT_RULE)
        ).one()
    assert (event.status, event.attempts) == (after, 1)
    if after == "pending":  # the worker's retry answers again: the same request, one SMS
        side.clock.offset = timedelta(minutes=30)
        side.work()
        first, again = arrivals(side.gateway, V3_PATHS.on_init)
        assert first["link"]["referenceNumber"] == again["link"]["referenceNumber"]
        with clinic_session(db, tenant.id) as session:
            texts = session.scalars(
                select(OutboxMessage).where(OutboxMessage.template == "abdm-link-otp")
            ).all()
        assert len(texts) == 1


def test_an_answer_naming_no_call_is_refused_or_links_nothing(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    # A requestId that is no UUID answers no call OPDesk made: refused at the door.
    for path, body in (
        (TOKEN_ANSWER, token_answer("not-a-uuid", ADDRESS, "lt.x")),
        (V3_PATHS.on_link_carecontext, link_answer("not-a-uuid", ADDRESS)),
    ):
        made = signed_call(side.gateway, path, body, side.clinic.facility_id, side.clock)
        refused = deliver(side.client, made)
        assert refused.status_code == 422, refused.text
        assert "response.requestId" in refused.text
    # A UUID of no call of this clinic is kept, and links nothing.
    side.call(TOKEN_ANSWER, token_answer(str(uuid.uuid4()), ADDRESS, "lt.x"))
    side.call(V3_PATHS.on_link_carecontext, link_answer(str(uuid.uuid4()), ADDRESS))
    assert all(c.linked_at is None for c in contexts_of(db, tenant))
    assert token_row(db, tenant).token_encrypted is None


def test_a_question_lost_in_an_outage_is_not_asked_again_before_its_answer_can_come(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.gateway.answer_next(error_answer("nested", 503, "ABDM-1000", "Down"))
    side.work()
    assert len(side.asked(GENERATE)) == 1
    side.clock.offset = timedelta(hours=1)
    side.work()
    assert len(side.asked(GENERATE)) == 1  # ABDM may have it: its answer still counts
    side.give_token()
    assert len(side.asked(LINK)) == 1


def test_a_link_call_never_answered_is_made_again_later(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    side.give_token()
    assert len(side.asked(LINK)) == 1
    side.clock.offset = linking.PATIENCE + timedelta(minutes=1)
    side.work()
    assert len(side.asked(LINK)) == 2  # no new visit needed
    side.confirm_links()
    assert contexts_of(db, tenant)[0].linked_by == "hip"


def test_a_new_link_request_ends_the_last_and_they_are_capped_per_hour(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant)
    phone = phone_of(db, cipher, tenant, consult.patient.id)
    body = link_init_body(ADDRESS, str(consult.patient.id), str(visit.id))
    side.call(V3_PATHS.link_init, body)
    first = arrivals(side.gateway, V3_PATHS.on_init)[-1]["link"]["referenceNumber"]
    first_code = latest_code(db, cipher, tenant, phone, "abdm-link-otp")
    side.call(V3_PATHS.link_init, {**body, "transactionId": str(uuid.uuid4())})
    side.call(V3_PATHS.link_confirm, link_confirm_body(first, first_code))
    assert "error" in arrivals(side.gateway, V3_PATHS.on_confirm)[-1]  # only the newest works
    for _ in range(linking.INITS_PER_HOUR - 2):
        side.call(V3_PATHS.link_init, {**body, "transactionId": str(uuid.uuid4())})
    side.call(V3_PATHS.link_init, {**body, "transactionId": str(uuid.uuid4())})
    refused = arrivals(side.gateway, V3_PATHS.on_init)[-1]
    assert refused["error"]["code"] == linking.TOO_MANY


def test_a_link_request_for_another_abha_address_is_refused(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    body = link_init_body("someone.else@sbx", str(consult.patient.id), str(visit.id))
    side.call(V3_PATHS.link_init, body)
    assert "error" in arrivals(side.gateway, V3_PATHS.on_init)[-1]


def test_abdm_s_block_pauses_every_patient_s_question_not_only_the_one_refused(
    side: Side, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    side.gateway.answer_next(error_answer("nested", 429, "ABDM-1022", "Too many requests"))
    signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    side.work()
    signed_visit(db, ident, cipher, tenant, abhaAddress="ravi.k1990@sbx")
    side.work()
    assert [a.body["abhaAddress"] for a in side.asked(GENERATE)] == [ADDRESS]
    side.clock.offset = linking.REFUSED_PAUSE + timedelta(minutes=1)
    side.work()
    assert sorted(a.body["abhaAddress"] for a in side.asked(GENERATE)) == sorted(
        [ADDRESS, ADDRESS, "ravi.k1990@sbx"]
    ), side.story(tenant)
