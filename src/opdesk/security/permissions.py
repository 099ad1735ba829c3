"""The one permission table: which role may do which action.

Every route declares the action it needs with ``Depends(Allow("<action>"))``; tests read
the declarations from the router and check them against this table for every role.
Least privilege: front desk sees no clinical notes, pharmacy sees prescriptions but not
notes, a patient sees only their own records (enforced by the services, which scope a
patient's queries to their own id).
"""

from __future__ import annotations

from typing import Final

PATIENT: Final = "patient"
FRONTDESK: Final = "frontdesk"
DOCTOR: Final = "doctor"
PHARMACY: Final = "pharmacy"
ACCOUNTS: Final = "accounts"
ADMIN: Final = "admin"

ROLES: Final = (PATIENT, FRONTDESK, DOCTOR, PHARMACY, ACCOUNTS, ADMIN)
STAFF: Final = frozenset({FRONTDESK, DOCTOR, PHARMACY, ACCOUNTS, ADMIN})
EVERYONE: Final = frozenset(ROLES)

# Pseudo-actions for routes that need no permission check.
PUBLIC: Final = "public"  # anyone, signed in or not (sign-in forms, clinic pages)
SIGNING_IN: Final = "signing-in"  # a session part-way through sign-in (MFA, device)
DEV_ONLY: Final = "dev-only"  # exists only while the dev inbox is on (OPDESK_DEV_INBOX)

PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    # own account: profile, password, MFA, sign-out
    "account:self": EVERYONE,
    # clinic profile and settings
    "clinic:read": STAFF,
    "clinic:manage": frozenset({ADMIN}),
    # people who use OPDesk
    "users:read": frozenset({ADMIN}),
    "users:manage": frozenset({ADMIN}),
    "devices:manage": frozenset({ADMIN}),
    "audit:read": frozenset({ADMIN}),
    # declared now so later issues inherit one table
    "patients:read": frozenset({FRONTDESK, DOCTOR, PHARMACY, ACCOUNTS, ADMIN}),
    "patients:write": frozenset({FRONTDESK, DOCTOR, ADMIN}),
    "patients:delete": frozenset({ADMIN}),
    # a patient's whole record as one archive, for them (DPDP right to access): visit
    # notes and bills together, so the one role accountable for the clinic's data; every
    # export is audited
    "patients:export": frozenset({ADMIN}),
    # a patient's documents: listing them, then reading each by its category (below)
    "documents:read": frozenset({FRONTDESK, DOCTOR, PHARMACY, ACCOUNTS, ADMIN}),
    "documents:read-clinical": frozenset({FRONTDESK, DOCTOR, ADMIN}),
    "documents:read-prescriptions": frozenset({FRONTDESK, DOCTOR, PHARMACY, ADMIN}),
    "documents:read-invoices": frozenset({FRONTDESK, ACCOUNTS, ADMIN}),
    "appointments:read": frozenset({FRONTDESK, DOCTOR, ADMIN}),
    "appointments:write": frozenset({FRONTDESK, DOCTOR, ADMIN}),
    # doctor away: the patients booked inside a doctor's time away (with their phones),
    # and one message to them all. The desk and admins run the phones; doctors see the
    # lists (they cover for each other) and do not message.
    "doctor-away:read": frozenset({FRONTDESK, DOCTOR, ADMIN}),
    "doctor-away:message": frozenset({FRONTDESK, ADMIN}),
    # the consultation: notes, diagnoses, services, follow-up; only doctors write and sign
    "visits:read": frozenset({DOCTOR}),
    "visits:write": frozenset({DOCTOR}),
    "visits:sign": frozenset({DOCTOR}),
    # vitals may be taken at the desk before the doctor sees the patient
    "vitals:read": frozenset({FRONTDESK, DOCTOR}),
    "vitals:write": frozenset({FRONTDESK, DOCTOR}),
    # the clinic's catalogue of billable services and its formulary
    "services:manage": frozenset({ADMIN}),
    "formulary:manage": frozenset({DOCTOR, ADMIN}),
    "prescriptions:read": frozenset({DOCTOR, PHARMACY}),
    "prescriptions:write": frozenset({DOCTOR}),
    # lab, imaging and procedure orders: the desk follows their status and records that a
    # sample was collected or a report arrived, but reads no results; doctors review them
    "orders:read": frozenset({FRONTDESK, DOCTOR, ADMIN}),
    "orders:record": frozenset({FRONTDESK, DOCTOR}),
    "orders:write": frozenset({DOCTOR}),
    "orders:results": frozenset({DOCTOR}),
    "diet-plans:read": frozenset({DOCTOR}),
    "diet-plans:write": frozenset({DOCTOR}),
    "diet-templates:manage": frozenset({DOCTOR, ADMIN}),
    "invoices:read": frozenset({FRONTDESK, ACCOUNTS, ADMIN}),
    "invoices:write": frozenset({FRONTDESK, ACCOUNTS}),
    "payments:collect": frozenset({FRONTDESK, ACCOUNTS}),
    "payments:refund": frozenset({ACCOUNTS, ADMIN}),
    # the reports dashboard: the clinic's figures and its money; a doctor reads their own
    # figures (appointments, no-shows, notes completed), never money or another doctor's
    "reports:read": frozenset({ACCOUNTS, ADMIN}),
    "reports:own": frozenset({DOCTOR}),
    # messages to patients: the outbox shows phone numbers and what was said, and a retry
    # sends again; provider settings hold API keys. Admin only.
    "messages:read": frozenset({ADMIN}),
    "messages:retry": frozenset({ADMIN}),
    "messaging:configure": frozenset({ADMIN}),
    # the clinic's scheduled work (reminders, no-shows, sweeps) and retrying what failed
    "automation:read": frozenset({ADMIN}),
    "automation:retry": frozenset({ADMIN}),
    # the clinic's reminder, no-show grace and quiet-hour settings
    "automation:configure": frozenset({ADMIN}),
    # ABDM: the clinic's registration and gateway secret (admins); a patient's ABDM page
    # (linked visits, consents, what was shared: dates and kinds, no content) and the
    # Scan & Share counters' QR codes and tokens, for the desk and doctors
    "abdm:manage": frozenset({ADMIN}),
    "abdm:read": frozenset({FRONTDESK, DOCTOR, ADMIN}),
    # a patient's own records through the portal
    "portal:self": frozenset({PATIENT}),
}

PSEUDO_ACTIONS: Final = frozenset({PUBLIC, SIGNING_IN, DEV_ONLY})

# Which action reads a document of each category. Every category not named here is
# clinical (lab reports, imaging, referrals, consents, ID proofs, anything else), so a
# category added later is closed to pharmacy and accounts until it is named here.
CLINICAL_DOCUMENTS: Final = "documents:read-clinical"
DOCUMENT_READ_ACTIONS: Final[dict[str, str]] = {
    "prescription": "documents:read-prescriptions",
    "invoice": "documents:read-invoices",
}


def allowed(role: str | None, action: str) -> bool:
    """Whether ``role`` may perform ``action``; unknown actions are refused."""
    if action in PSEUDO_ACTIONS:
        return True
    return role is not None and role in PERMISSIONS.get(action, frozenset())


def document_action(category: str) -> str:
    """The action that reads a document of ``category``."""
    return DOCUMENT_READ_ACTIONS.get(category, CLINICAL_DOCUMENTS)


def may_read_document(role: str | None, category: str) -> bool:
    """Whether a member of staff with ``role`` may see a document of ``category``.

    (A patient reads their own family's documents through the portal's family scope.)
    """
    return allowed(role, document_action(category))


def table_markdown() -> str:
    """The table as Markdown (for the closing note and docs)."""
    header = "| action | " + " | ".join(ROLES) + " |"
    rule = "| --- |" + " :-: |" * len(ROLES)
    rows = [
        f"| `{action}` | " + " | ".join("✓" if r in roles else "" for r in ROLES) + " |"
        for action, roles in PERMISSIONS.items()
    ]
    return "\n".join([header, rule, *rows])


if __name__ == "__main__":
    print(table_markdown())
