"""Migration 0010 gives the patients registered before it their search keys."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from opdesk.audit.guard import SKIP_SETTING
from opdesk.config import get_settings
from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.migrate import alembic_config, is_current
from opdesk.patients import queries
from opdesk.security.crypto import StaticKeyring
from opdesk.security.keys import keyring_env
from tests.factories import clinic_session, make_patient, make_tenant

REVISION = "0010"


def _migrate(db: Database, down: bool) -> None:
    with db.owner_engine.connect() as conn:
        # The backfill writes patients without audit events, as a migration does.
        conn.execute(text(f"select set_config('{SKIP_SETTING}', 'on', false)"))
        conn.commit()
        config = alembic_config(conn)
        if down:
            before = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
            command.downgrade(config, str(before))
        else:
            command.upgrade(config, "head")
        conn.commit()


def test_patients_registered_before_it_are_found_by_phone_digits_and_across_scripts(
    fresh_database: Database,
    ident: Identity,
    keyring: StaticKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clinic = make_tenant(fresh_database, "Old Clinic")
    hindi = make_patient(
        fresh_database, ident, clinic, name={"first": "अमित", "last": "शर्मा"}, phone="+919822043210"
    )
    latin = make_patient(fresh_database, ident, clinic, name={"first": "Suresh", "last": "Jadhav"})
    _migrate(fresh_database, down=True)

    for name, value in keyring_env(keyring.keyring).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        _migrate(fresh_database, down=False)
    finally:
        get_settings.cache_clear()

    with fresh_database.owner_engine.connect() as conn:
        assert is_current(conn)
    with clinic_session(fresh_database, clinic.id) as session:
        for typed, expected in (
            ("98220", hindi.id),
            ("43210", hindi.id),
            ("Amit Sharma", hindi.id),
            ("सुरेश जाधव", latin.id),
        ):
            assert expected in [p.id for p in queries.search(session, ident.cipher, typed)], typed
