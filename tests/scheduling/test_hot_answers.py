"""The hot paths' answers are written by PostgreSQL (``api_appointment``, migration 0024)
and sent unchanged: they must be the API's ``AppointmentOut``, value for value, or a
client would read one appointment two ways depending on which route answered.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from opdesk.db import Database
from opdesk.scheduling.booking import appointment_of
from opdesk.scheduling.models import AppointmentStatus
from opdesk.scheduling.schemas import AppointmentOut
from tests.factories import clinic_with_slots, patients
from tests.factories.hot import booking_body, desk_headers

TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('रमेश शर्मा बुखार 😀👩‍⚕️ \x01\x1f\t\n"\\/ é'),
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    ),
    max_size=20,
    # Stored text never starts or ends with spaces: every input model strips it (and
    # AppointmentOut would strip it again).
).map(str.strip)
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
# Whole seconds are written without a fraction: half of the instants are.
MAYBE_INSTANT = st.one_of(st.none(), INSTANTS, INSTANTS.map(lambda t: t.replace(microsecond=0)))
TIMELINE = ("requested", "confirmed", "checked_in", "in_consult", "completed", "no_show")
ROWS = st.fixed_dictionaries(
    {
        "id": st.uuids(),
        "patient_id": st.uuids(),
        "doctor_id": st.uuids(),
        "slot_id": st.one_of(st.none(), st.uuids()),
        "visit_type": TEXT,
        "reason": st.one_of(st.none(), TEXT),
        "channel": st.sampled_from(["web", "whatsapp", "phone", "walk-in"]),
        "status": st.sampled_from([s.value for s in AppointmentStatus]),
        **{f"timeline_{step}_at": MAYBE_INSTANT for step in TIMELINE},
        "timeline_cancelled_at": MAYBE_INSTANT,
        "timeline_refunded_at": MAYBE_INSTANT,
        "notes": st.one_of(st.none(), TEXT),
        "waitlist_origin": st.one_of(st.none(), st.uuids()),
        "reschedule_of": st.one_of(st.none(), st.uuids()),
        "follow_up_for": st.one_of(st.none(), st.uuids()),
        "created_by": st.one_of(st.none(), st.uuids()),
        "updated_at": INSTANTS,
        "token_number": st.one_of(st.none(), st.integers(1, 2**31 - 1)),
        "queue_date": st.one_of(st.none(), st.dates(date(2000, 1, 1), date(2100, 1, 1))),
        "tenant_id": st.uuids(),
    }
)

# The row as a hot path holds it (to_jsonb of the table's row), and the API's JSON of it.
BOTH = text(
    "select to_jsonb(a), api_appointment(a)::text "
    "from jsonb_populate_record(null::appointments, cast(:row as jsonb)) as a"
)


def _jsonable(row: dict[str, Any]) -> str:
    def value(v: Any) -> Any:
        if isinstance(v, datetime | date):
            return v.isoformat()
        return str(v) if isinstance(v, uuid.UUID) else v

    return json.dumps({k: value(v) for k, v in row.items()})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=ROWS)
@example(
    row={
        **dict.fromkeys(
            ("slot_id", "reason", "notes", "waitlist_origin", "reschedule_of", "follow_up_for"),
            None,
        ),
        **{f"timeline_{s}_at": None for s in (*TIMELINE, "cancelled", "refunded")},
        "id": uuid.UUID(int=1),
        "patient_id": uuid.UUID(int=2),
        "doctor_id": uuid.UUID(int=3),
        "tenant_id": uuid.UUID(int=4),
        "created_by": None,
        "visit_type": "परामर्श",
        "channel": "walk-in",
        "status": "checked-in",
        "timeline_requested_at": datetime(2026, 12, 3, 18, 30, tzinfo=UTC),
        "timeline_checked_in_at": datetime(2026, 12, 3, 18, 30, 0, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 12, 3, 23, 59, 59, 999999, tzinfo=UTC),
        "token_number": 1,
        "queue_date": date(2026, 12, 4),
    }
)
def test_postgresql_writes_an_appointment_as_the_api_does(
    db: Database, row: dict[str, Any]
) -> None:
    with db.owner_engine.connect() as conn:
        stored, written = conn.execute(BOTH, {"row": _jsonable(row)}).one()
    expected = AppointmentOut.of(appointment_of(stored)).model_dump(mode="json", by_alias=True)
    assert json.loads(written) == expected
    # Instants to the microsecond, as the API writes them ("...:00Z", "...:00.000001Z").
    assert json.loads(written)["updatedAt"] == expected["updatedAt"]


def test_a_hot_booking_and_its_check_in_answer_what_the_appointment_reads_as(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    [person] = patients(db, ident, tenant, 1)
    desk = desk_headers(db, ident, tenant)
    key = {"Idempotency-Key": f"hot-answer-{uuid.uuid4()}"}
    body = booking_body(slots[0], person, reason="बुखार और खाँसी 🤒", notes='"quoted"\n\\')
    made = client.post("/api/v1/appointments", json=body, headers=desk | key)
    assert made.status_code == 201, made.text
    assert made.headers["content-type"] == "application/json"
    read = client.get(f"/api/v1/appointments/{made.json()['id']}", headers=desk)
    assert made.json() == read.json()
    replayed = client.post("/api/v1/appointments", json=body, headers=desk | key)
    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == read.json()
    moved = client.post(
        f"/api/v1/appointments/{made.json()['id']}/status",
        json={"status": "checked-in"},
        headers=desk,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["tokenNumber"] == 1
    assert (
        moved.json() == client.get(f"/api/v1/appointments/{made.json()['id']}", headers=desk).json()
    )
