"""Test data built through the services, so it is valid, audited and scoped like real data.

Tests build clinics, people and schedules here and never import another test module's
helpers. Anything written around a service on purpose (to show what a database
constraint refuses) goes through :func:`unaudited` first.

By domain, all re-exported here (``from tests.factories import make_tenant, book``):

* :mod:`~tests.factories.clinics`: clinics, chosen days (``coming``, ``clinic_today``),
  contexts (``ctx_for``), a transaction for a clinic (``clinic_session``), ``unaudited``,
  a clinic's audit trail (``events_of``);
* :mod:`~tests.factories.people`: users, sign-in sessions, patients, doctors, devices,
  the OTP a patient was sent;
* :mod:`~tests.factories.scheduling`: weekly hours, slots, holds, bookings, time away,
  the waitlist;
* :mod:`~tests.factories.records`: documents, share links, consents;
* :mod:`~tests.factories.web`: cookie clients, CSRF tokens, portal sign-in;
* :mod:`~tests.factories.crypto`: where an encrypted value lives (``Where``).

Browser-only helpers (Playwright pages, screenshots) are in ``tests/browser/helpers.py``.
"""

from tests.factories.clinics import (
    CLINIC_ZONE,
    clinic_session,
    clinic_today,
    coming,
    ctx_for,
    events_of,
    make_tenant,
    unaudited,
    unique_slug,
)
from tests.factories.crypto import Where
from tests.factories.people import (
    CONSULTATION,
    STAFF_PASSWORD,
    bearer,
    latest_code,
    make_device,
    make_doctor,
    make_patient,
    make_user,
    open_session,
    patients,
    unique_mobile,
)
from tests.factories.records import make_consent, make_document, make_share_link
from tests.factories.scheduling import (
    DAY,
    MONDAY,
    MORNING,
    Line,
    book,
    cancel,
    clinic_with_slots,
    free,
    generate,
    hold,
    join,
    make_exception,
    offered,
    offers,
    set_week,
    slots_of,
    waiting,
)
from tests.factories.web import browser_for, csrf_of, portal_login

__all__ = [
    "CLINIC_ZONE",
    "CONSULTATION",
    "DAY",
    "MONDAY",
    "MORNING",
    "STAFF_PASSWORD",
    "Line",
    "Where",
    "bearer",
    "book",
    "browser_for",
    "cancel",
    "clinic_session",
    "clinic_today",
    "clinic_with_slots",
    "coming",
    "csrf_of",
    "ctx_for",
    "events_of",
    "free",
    "generate",
    "hold",
    "join",
    "latest_code",
    "make_consent",
    "make_device",
    "make_doctor",
    "make_document",
    "make_exception",
    "make_patient",
    "make_share_link",
    "make_tenant",
    "make_user",
    "offered",
    "offers",
    "open_session",
    "patients",
    "portal_login",
    "set_week",
    "slots_of",
    "unaudited",
    "unique_mobile",
    "unique_slug",
    "waiting",
]
