"""``opdesk keys rotate`` over the real schema: every encrypted column of the demo clinic,
including the tables with no ``id`` of their own (SOAP versions, prescription items, the
message and billing settings) and the frozen rows (a signed visit's note, an issued
prescription's items), moves to the new key and still reads; and the way it gets past a
freeze is closed to the app role.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.models import load_all_models
from opdesk.notifications import service as outbox
from opdesk.security.crypto import FieldCipher, key_id_of
from opdesk.security.keys import KEYRING_FILE, dev_keyring
from opdesk.security.rotation import count_stale, reencrypt, registered_columns
from opdesk.uow import transaction
from tests.factories import ctx_for
from tests.factories.cli import opdesk
from tests.factories.clinical_visits import signed_visit

# Tables the demo must reach for this test to mean what it says.
NO_ID_OF_THEIR_OWN = (
    "visits_soap_versions",
    "prescriptions_items",
    "message_providers",
    "billing_settings",
)


def _cipher(data_dir: Path) -> FieldCipher:
    keys_dir = Settings.model_construct(data_dir=data_dir).keys_dir
    return FieldCipher(dev_keyring(keys_dir / KEYRING_FILE))


def _add_message_settings(db: Database, cipher: FieldCipher) -> None:
    """The demo sends through the dev inbox; give its clinic an SMS account too."""
    with db.owner_engine.connect() as conn:
        tenant_id = conn.execute(text("select id from tenants order by id limit 1")).scalar_one()
    ctx = ctx_for(tenant_id)
    with transaction(db, ctx) as session:
        outbox.save_provider(
            session,
            ctx,
            cipher,
            channel="sms",
            values={"authKey": "demo-auth-key", "senderId": "OPDESK", "baseUrl": "http://sms"},
            templates=json.dumps({"otp": {"en": {"templateId": "tpl-otp"}}}),
            enabled=True,
        )


def _values(db: Database) -> dict[str, list[bytes]]:
    """Each encrypted column's ciphertexts across all clinics."""
    found: dict[str, list[bytes]] = {}
    with db.owner_engine.connect() as conn:
        for target in registered_columns():
            col = target.table.c[target.column]
            found[target.label] = list(conn.execute(select(col).where(col.is_not(None))).scalars())
    return found


def _keys_in_use(db: Database) -> dict[str, set[int]]:
    """Each encrypted column's key ids (prefix bytes) across all clinics."""
    return {label: {key_id_of(v) for v in values} for label, values in _values(db).items()}


@pytest.mark.slow
def test_rotation_moves_every_encrypted_value_of_the_demo_to_the_new_key(
    fresh_database: Database, tmp_path: Path
) -> None:
    load_all_models()
    made = opdesk("demo", database=fresh_database, data_dir=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    cipher = _cipher(tmp_path)
    _add_message_settings(fresh_database, cipher)
    before = _keys_in_use(fresh_database)
    reached = {label.split(".")[0] for label, kids in before.items() if kids}
    assert set(NO_ID_OF_THEIR_OWN) <= reached, set(NO_ID_OF_THEIR_OWN) - reached
    with fresh_database.owner_engine.connect() as conn:
        signed = conn.execute(text("select count(*) from visits where status = 'signed'"))
        issued = conn.execute(
            text("select count(*) from prescriptions where issued_at is not null")
        )
        assert signed.scalar_one() > 0 and issued.scalar_one() > 0  # frozen rows to re-key

    # In this process, as `opdesk keys rotate` does it (so mutation testing sees it).
    store = dev_keyring(Settings.model_construct(data_dir=tmp_path).keys_dir / KEYRING_FILE)
    assert store.add_active_key() == 2
    cipher = FieldCipher(store)
    done = reencrypt(fresh_database, cipher, batch_size=50)
    assert done.rows == sum(len(v) for v in _values(fresh_database).values())
    # Each batch left one audit event naming the rows it sealed anew, under which key.
    with fresh_database.owner_engine.connect() as conn:
        events = conn.execute(
            text("select entity_collection, diff from audit_events where diff ? 'rekeyed'")
        ).all()
    assert len(events) == done.batches
    assert {d["rekeyed"]["keyId"] for _c, d in events} == {2}
    assert sum(len(d["rekeyed"]["rows"]) for _c, d in events) == done.rows
    soap = [d["rekeyed"] for c, d in events if c == "visits_soap_versions"]
    assert soap and all(len(row) == 3 and "None" not in row for s in soap for row in s["rows"])
    assert {s["column"] for s in soap} <= {f"{part}_encrypted" for part in "soap"}
    after = _keys_in_use(fresh_database)
    assert {label: kids for label, kids in after.items() if kids - {2}} == {}
    assert {label for label, kids in after.items() if kids} == {
        label for label, kids in before.items() if kids
    }
    assert count_stale(fresh_database, cipher, registered_columns()) == 0
    # Run again (a crash after the last batch): nothing left to do.
    again = opdesk("keys", "rotate", "--resume", database=fresh_database, data_dir=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "complete: 0 values" in again.stdout


def test_the_app_role_cannot_claim_to_be_rekeying_a_signed_visit(
    db: Database, ident: Any, cipher: FieldCipher
) -> None:
    c, visit = signed_visit(db, ident, cipher)
    # The vitals of a signed visit: the app role may update vitals of an open visit, so
    # only the freeze stands in the way here.
    update = text("update visits_vitals set value_encrypted = value_encrypted where visit_id = :v")
    with db.app_engine.connect() as conn, pytest.raises(DBAPIError) as refused:
        conn.execute(text("select set_config('app.tenant_id', :t, true)"), {"t": str(c.tenant.id)})
        conn.execute(text("select set_config('opdesk.rekey', 'on', true)"))
        conn.execute(update, {"v": visit.id})
    assert getattr(refused.value.orig, "sqlstate", None) == "OD001"
    # The owner, saying so, may (rotation's way in); not saying so, may not.
    with db.owner_engine.connect() as conn, pytest.raises(DBAPIError) as unsaid:
        conn.execute(text("select set_config('app.tenant_id', :t, true)"), {"t": str(c.tenant.id)})
        conn.execute(update, {"v": visit.id})
    assert getattr(unsaid.value.orig, "sqlstate", None) == "OD001"
