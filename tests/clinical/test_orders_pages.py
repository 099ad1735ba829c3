"""The order pages: the doctor's order form (errors name the row, what was typed stays)
and the desk's list, free text shown escaped.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.clinical.models import Order
from opdesk.db import Database
from tests.factories import bearer, clinic_session, make_tenant, make_user, open_session
from tests.factories.clinical_orders import make_visit

XSS = "<script>alert(1)</script>"


def doctor_of(db: Database, ident: Any, tenant: Any) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "doctor")))


def test_the_order_form_names_the_bad_row_and_places_a_good_order(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Order Form Clinic")
    visit = make_visit(db, ident, tenant)
    doctor = doctor_of(db, ident, tenant)
    page = client.get(f"/visits/{visit.visit_id}/orders/new", headers=doctor)
    assert page.status_code == 200 and 'name="name1"' in page.text
    refused = client.post(
        f"/visits/{visit.visit_id}/orders",
        data={"type": "lab", "code1": "4548-4"},
        headers=doctor,
    )
    assert refused.status_code == 422 and "Test 1: enter the test&#39;s name" in refused.text
    assert 'value="4548-4"' in refused.text  # what was typed stays
    placed = client.post(
        f"/visits/{visit.visit_id}/orders",
        data={"type": "imaging", "name1": f"X-ray chest {XSS}", "name2": "USG abdomen"},
        headers=doctor,
        follow_redirects=False,
    )
    assert placed.status_code == 303
    listed = client.get(f"/visits/{visit.visit_id}/orders/new", headers=doctor)
    assert XSS not in listed.text and "X-ray chest &lt;script&gt;" in listed.text
    with clinic_session(db, tenant.id) as session:
        order = session.execute(select(Order)).scalar_one()
        assert order.type == "imaging" and [i["name"] for i in order.items] == [
            f"X-ray chest {XSS}",
            "USG abdomen",
        ]
    desk = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    assert client.get(f"/visits/{visit.visit_id}/orders/new", headers=desk).status_code == 403
    desk_list = client.get("/orders", headers=desk)
    assert desk_list.status_code == 200 and "X-ray chest &lt;script&gt;" in desk_list.text
