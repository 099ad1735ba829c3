"""Which entry of the top menu is the open page's (aria-current), and the patient's
shorter labels: one entry at most, the one whose href best matches the path.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from opdesk.security.permissions import DEV_ONLY
from opdesk.web.templating import NavEntry, NavItem, Pages, current_href

PATIENT_NAV = (
    NavEntry("My clinic", "/me", "portal:self", "patient"),
    NavEntry("My appointments", "/me/appointments", "portal:self", "patient"),
    NavEntry("My bills", "/me/invoices", "portal:self", "patient"),
    NavEntry("Account", "/account", "account:self", "account"),
    NavEntry("Dev inbox", "/dev/inbox", DEV_ONLY, "dev"),
)
HREFS = ["/", "/me", "/me/appointments", "/me/invoices", "/admin/users"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/me", "/me"),
        ("/me/appointments", "/me/appointments"),  # not "/me" as well
        ("/me/appointments/123/reschedule", "/me/appointments"),
        ("/me/invoices/9", "/me/invoices"),
        ("/me/profile", "/me"),  # a page of the patient's with no entry of its own
        ("/meetings", None),  # "/me" is a folder, not a string prefix
        ("/admin/users/5", "/admin/users"),
        ("/", "/"),
        ("/sign-in", None),  # "/" is the home page only
    ],
)
def test_the_current_entry_is_the_longest_href_the_path_lies_in(
    path: str, expected: str | None
) -> None:
    assert current_href(path, HREFS) == expected


def _items(path: str, role: str | None, *, dev: bool = True) -> list[NavItem]:
    pages = Pages(b"k" * 32, navigation=PATIENT_NAV, dev=dev)
    request = Request({"type": "http", "method": "GET", "path": path, "headers": []})
    if role is not None:
        request.state.principal = SimpleNamespace(role=role, active=True)
    return pages.nav_items(request)


def test_a_patient_on_a_page_of_appointments_has_only_that_entry_current() -> None:
    items = _items("/me/appointments", "patient")
    assert [item.href for item in items if item.current] == ["/me/appointments"]
    assert [item.href for item in _items("/me", "patient") if item.current] == ["/me"]
    assert not any(item.current for item in _items("/dev/other", "patient"))


def test_a_patients_pages_inside_my_clinic_drop_their_my_in_the_bar() -> None:
    labels = [item.label for item in _items("/me", "patient")]
    assert labels == ["My clinic", "Appointments", "Bills", "Account", "Dev inbox"]
    # Shown on its own (no "My clinic" above it), an entry keeps its whole label.
    alone = (NavEntry("My bills", "/me/invoices", "portal:self", "patient"),)
    pages = Pages(b"k" * 32, navigation=alone)
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    request.state.principal = SimpleNamespace(role="patient", active=True)
    assert [item.label for item in pages.nav_items(request)] == ["My bills"]


def test_staff_labels_are_left_as_they_are() -> None:
    entries = (
        NavEntry("Desk", "/app", "clinic:read", "desk"),
        NavEntry("My queue", "/my-queue", "visits:read", "desk"),
    )
    pages = Pages(b"k" * 32, navigation=entries)
    request = Request({"type": "http", "method": "GET", "path": "/my-queue", "headers": []})
    request.state.principal = SimpleNamespace(role="doctor", active=True)
    items = pages.nav_items(request)
    assert [(item.label, item.current) for item in items] == [
        ("Desk", False),
        ("My queue", True),
    ]


def test_a_signed_out_page_marks_its_own_entry_and_not_home(client: TestClient) -> None:
    html = client.get("/sign-in").text
    assert html.count('aria-current="page"') == 1
    assert 'href="/sign-in" aria-current="page"' in html
    assert 'href="/" aria-current="page"' not in html
