"""The prescription builder page: what it shows for a saved medicine is what saving the
form again keeps.
"""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from tests.factories.clinical_rx import doctor_headers, open_draft


def field_value(page: str, name: str) -> str:
    found = re.search(rf'<input name="{re.escape(name)}"[^>]*value="([^"]*)"', page)
    assert found, f"no field {name}"
    return html.unescape(found.group(1))


def test_saving_the_builder_again_keeps_a_formulary_medicine(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    # Was: the field showed the generic name only ("Amoxicillin"), so a second save made
    # it free text and dropped its strength, form and drug class (and its allergy check).
    setting, draft = open_draft(db, ident, tenant)
    headers = doctor_headers(db, ident, setting.doctor)
    url = f"/prescriptions/{draft.id}"
    first = client.post(
        f"{url}/items",
        data={"name-1": "Amoxicillin 500 mg capsule", "frequency-1": "1-1-1", "days-1": "5"},
        headers=headers,
        follow_redirects=False,
    )
    assert first.status_code == 303, first.text
    page = client.get(url, headers=headers).text
    shown = field_value(page, "name-1")
    assert shown == "Amoxicillin 500 mg capsule"
    again = client.post(
        f"{url}/items",
        data={
            "name-1": shown,
            "frequency-1": field_value(page, "frequency-1"),
            "days-1": field_value(page, "days-1"),
        },
        headers=headers,
        follow_redirects=False,
    )
    assert again.status_code == 303, again.text
    item = client.get(f"/api/v1/prescriptions/{draft.id}", headers=headers).json()["items"][0]
    assert item["drugId"] is not None
    assert (item["name"], item["strength"], item["form"]) == ("Amoxicillin", "500 mg", "capsule")


def test_a_free_text_medicine_stays_as_typed(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, draft = open_draft(db, ident, tenant)
    headers = doctor_headers(db, ident, setting.doctor)
    url = f"/prescriptions/{draft.id}"
    client.post(f"{url}/items", data={"name-1": "Kadha <b>tulsi</b>"}, headers=headers)
    page = client.get(url, headers=headers).text
    assert field_value(page, "name-1") == "Kadha <b>tulsi</b>"
    assert "<b>tulsi</b>" not in page
