"""Least privilege, pinned apart from the permission table.

``tests/identity/test_route_permissions.py`` checks that every route answers as the
permission table says, so a wrong table (and ``docs/permissions.md`` regenerated from
it) passes there. The rules below are written down independently: a short list of
grants that must never exist, each checked against the table as the application reads
it (``permissions.allowed``). Roles are spelled out here rather than imported, and
every action and resource a rule names is checked to exist, so a rename fails
:func:`test_the_rules_name_roles_and_actions_that_exist` instead of leaving a rule that
quietly matches nothing.

A rule names actions exactly (``patients:delete``) or by resource (``visits`` stands
for every ``visits:...`` action, including ones added later). Resources the table has
today are ``resources``; those named ahead of their first action are ``coming``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from opdesk.security.permissions import PERMISSIONS, ROLES, allowed

ADMIN = "admin"
PATIENT = "patient"
# Who works at the desk, the dispensary and the accounts office: no clinical notes.
NON_CLINICAL = frozenset({"frontdesk", "pharmacy", "accounts"})
EVERYONE_BUT_ADMIN = frozenset(ROLES) - {ADMIN}
STAFF = frozenset(ROLES) - {PATIENT}


def resource_of(action: str) -> str:
    return action.split(":", 1)[0]


@dataclass(frozen=True)
class Never:
    """No role in ``roles`` may hold any action in ``actions`` or of a resource in
    ``resources`` or ``coming``. ``guards`` says what the rule is about (for messages).
    """

    guards: str
    roles: frozenset[str]
    actions: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    coming: frozenset[str] = frozenset()

    def covers(self, action: str) -> bool:
        resource = resource_of(action)
        return action in self.actions or resource in self.resources or resource in self.coming

    def breaches(self) -> list[str]:
        """Every grant the rule forbids that the table makes, as ``role holds action``."""
        return [
            f"{role} holds {action} ({self.guards})"
            for action in sorted(PERMISSIONS)
            if self.covers(action)
            for role in sorted(self.roles)
            if allowed(role, action)
        ]


# Visit notes and whatever a doctor writes about a patient; the clinical records still to
# come (DESIGN.md: consultation notes, diet plans) are named now so the rule holds the day
# they are added to the table.
CLINICAL_NOTES = Never(
    guards="clinical notes",
    roles=NON_CLINICAL,
    actions=frozenset({"prescriptions:write"}),
    resources=frozenset({"visits"}),
    coming=frozenset({"notes", "clinical-notes", "diet-plans", "diagnoses"}),
)
DELETING_PATIENTS = Never(
    guards="deleting patients",
    roles=EVERYONE_BUT_ADMIN,
    actions=frozenset({"patients:delete"}),
)
# The audit log and the sign-in log (``/admin/sign-ins``) are both read with audit:read.
AUDIT_AND_SIGN_IN_LOGS = Never(
    guards="the audit log and the sign-in log",
    roles=EVERYONE_BUT_ADMIN,
    actions=frozenset({"audit:read"}),
    resources=frozenset({"audit"}),
    coming=frozenset({"sign-ins"}),
)
ADMINISTRATION = Never(
    guards="users, devices, keys and clinic settings",
    roles=EVERYONE_BUT_ADMIN,
    actions=frozenset({"users:read", "users:manage", "devices:manage", "clinic:manage"}),
    resources=frozenset({"users", "devices"}),
    coming=frozenset({"keys", "settings"}),
)
# The portal's scope (a patient's own family) means nothing for a staff member.
PORTAL = Never(
    guards="the patient portal",
    roles=STAFF,
    resources=frozenset({"portal"}),
)
# The clinic's takings and every doctor's figures side by side: the accounts office and
# admins. A doctor reads their own figures (``reports:own``), which carry no money.
CLINIC_FIGURES = Never(
    guards="the clinic's money and every doctor's figures",
    roles=frozenset({"doctor", "frontdesk", "pharmacy", PATIENT}),
    actions=frozenset({"reports:read"}),
)
RULES = (
    CLINICAL_NOTES,
    DELETING_PATIENTS,
    AUDIT_AND_SIGN_IN_LOGS,
    ADMINISTRATION,
    PORTAL,
    CLINIC_FIGURES,
)

# Everything a patient may do: their own account, and their own records in the portal.
PATIENT_ACTIONS = frozenset({"account:self", "portal:self"})


def held_by(role: str) -> set[str]:
    return {action for action in PERMISSIONS if allowed(role, action)}


def test_front_desk_pharmacy_and_accounts_never_touch_clinical_notes() -> None:
    assert CLINICAL_NOTES.breaches() == []


def test_only_admin_deletes_patients() -> None:
    assert DELETING_PATIENTS.breaches() == []


def test_only_admin_reads_the_audit_log_and_the_sign_in_log() -> None:
    assert AUDIT_AND_SIGN_IN_LOGS.breaches() == []


def test_only_admin_manages_users_devices_keys_and_clinic_settings() -> None:
    assert ADMINISTRATION.breaches() == []


def test_no_staff_role_holds_a_portal_action() -> None:
    assert PORTAL.breaches() == []


def test_only_accounts_and_admin_read_the_clinics_figures() -> None:
    assert CLINIC_FIGURES.breaches() == []


def test_the_patient_role_holds_exactly_its_own_account_and_the_portal() -> None:
    held = held_by(PATIENT)
    extra = sorted(held - PATIENT_ACTIONS)
    missing = sorted(PATIENT_ACTIONS - held)
    assert extra == [], f"patient holds {extra}, beyond its own account and the portal"
    assert missing == [], f"patient lacks {missing}"


def test_the_rules_name_roles_and_actions_that_exist() -> None:
    """A renamed role or action must not leave a rule that checks nothing."""
    named_roles = {ADMIN, PATIENT, *NON_CLINICAL, *(r for rule in RULES for r in rule.roles)}
    assert sorted(named_roles - set(ROLES)) == [], "rules name roles the table lacks"
    named_actions = PATIENT_ACTIONS | {a for rule in RULES for a in rule.actions}
    assert sorted(named_actions - set(PERMISSIONS)) == [], "rules name actions the table lacks"
    # A renamed resource (``visits`` -> ``consultations``) would slip past a rule by resource.
    named_resources = {r for rule in RULES for r in rule.resources}
    table_resources = {resource_of(action) for action in PERMISSIONS}
    assert sorted(named_resources - table_resources) == [], "rules name resources the table lacks"
    for rule in RULES:
        assert rule.roles, f"the rule on {rule.guards} names no role"
        assert rule.actions or rule.resources, f"the rule on {rule.guards} names only the future"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.guards)
def test_each_rule_catches_a_forbidden_grant(rule: Never, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check bites: granting one forbidden action to one forbidden role is reported."""
    action = sorted(a for a in PERMISSIONS if rule.covers(a))[0]
    role = sorted(rule.roles)[0]
    monkeypatch.setitem(PERMISSIONS, action, PERMISSIONS[action] | {role})
    assert f"{role} holds {action} ({rule.guards})" in rule.breaches()
