"""The ``opdesk`` command, run as a real process against a real database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from opdesk.db import Database
from opdesk.security.keys import keyring_env, new_keyring
from tests.factories import clinic_session, make_tenant, unaudited
from tests.factories.cli import opdesk


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["worker"],
        ["migrate"],
        ["demo"],
        ["sweep"],
        ["audit", "verify"],
        ["ledger", "check"],
        ["report", "build"],
        ["keys", "rotate"],
        ["keys", "generate"],
        ["tenant", "create"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opdesk", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_tenant_create_validates_creates_and_refuses_duplicates(
    fresh_database: Database, tmp_path: Path
) -> None:
    bad = opdesk(
        "tenant",
        "create",
        "--name",
        "X",
        "--slug",
        "x-clinic",
        "--gstin",
        "27AAAAA0000A1Z0",
        database=fresh_database,
        data_dir=tmp_path,
    )
    assert bad.returncode == 1
    assert "gstin" in bad.stderr
    assert "not a valid GSTIN" in bad.stderr

    args = ["tenant", "create", "--name", "Nilgiri Clinic", "--slug", "nilgiri", "--city", "Ooty"]
    args += ["--admin-email", "admin@nilgiri.in", "--admin-name", "Nilgiri Admin"]
    made = opdesk(*args, database=fresh_database, data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "created Nilgiri Clinic (nilgiri)" in made.stdout

    again = opdesk(*args, database=fresh_database, data_dir=tmp_path)
    assert again.returncode == 1
    assert "'nilgiri' is taken" in again.stderr


def test_demo_is_idempotent_and_audit_verify_catches_tampering(
    fresh_database: Database, tmp_path: Path
) -> None:
    trail_lengths = []
    for _ in range(2):
        done = opdesk("demo", database=fresh_database, data_dir=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "/c/sunrise-clinic" in done.stdout
        assert "admin@sunrise-clinic.example" in done.stdout
        assert "dev inbox" in done.stdout
        with fresh_database.owner_engine.connect() as conn:
            trail_lengths.append(conn.execute(text("select count(*) from audit_events")).scalar())
    assert trail_lengths[0] == trail_lengths[1]  # refreshing an intact demo changes nothing
    with fresh_database.owner_engine.connect() as conn:
        assert conn.execute(text("select count(*) from tenants")).scalar() == 1

    verified = opdesk("audit", "verify", database=fresh_database, data_dir=tmp_path)
    assert verified.returncode == 0, verified.stderr
    with fresh_database.owner_engine.connect() as conn:
        patients = conn.execute(text("select count(*) from patients")).scalar_one()
        events = conn.execute(text("select count(*) from audit_events")).scalar_one()
        devanagari = conn.execute(
            text("select count(*) from patients where name_first ~ '[\u0900-\u097f]'")
        ).scalar_one()
        families = conn.execute(
            text("select count(*) from patients where guardian_id is not null")
        ).scalar_one()
    assert patients == 300
    assert devanagari > 10 and families > 10
    assert_demo_schedule(fresh_database)
    assert f": ok, {events} events" in verified.stdout

    with fresh_database.owner_engine.begin() as conn:
        conn.execute(text("update audit_events set actor_role = 'admin'"))
    broken = opdesk(
        "audit", "verify", "--tenant", "sunrise-clinic", database=fresh_database, data_dir=tmp_path
    )
    assert broken.returncode == 1
    assert "BROKEN at seq 1" in broken.stdout
    assert "edited" in broken.stdout

    unknown = opdesk(
        "audit", "verify", "--tenant", "nobody", database=fresh_database, data_dir=tmp_path
    )
    assert unknown.returncode == 1
    assert "no clinic with the code 'nobody'" in unknown.stderr


def test_keys_rotate_with_a_dev_key_file(fresh_database: Database, tmp_path: Path) -> None:
    done = opdesk("keys", "rotate", database=fresh_database, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "data key 2 is now active" in done.stdout
    assert "re-encryption complete" in done.stdout
    ring = json.loads((tmp_path / "keys" / "keyring.json").read_text())
    assert ring["active"] == 2
    assert set(ring["keys"]) == {"1", "2"}


def test_keys_from_the_environment_are_rotated_by_the_operator(
    fresh_database: Database, tmp_path: Path
) -> None:
    env = keyring_env(new_keyring())
    done = opdesk("keys", "rotate", database=fresh_database, data_dir=tmp_path, **env)
    assert done.returncode == 1
    assert "add a new key there" in done.stderr
    resumed = opdesk(
        "keys", "rotate", "--resume", database=fresh_database, data_dir=tmp_path, **env
    )
    assert resumed.returncode == 0, resumed.stderr


def test_prod_without_keys_refuses_to_serve(fresh_database: Database, tmp_path: Path) -> None:
    done = opdesk("serve", database=fresh_database, data_dir=tmp_path, OPDESK_ENV="prod")
    assert done.returncode == 1
    assert "production start refused" in done.stderr
    assert not (tmp_path / "keys").exists()


def test_keys_generate_prints_usable_environment(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opdesk", "keys", "generate"],
        capture_output=True,
        text=True,
        check=False,
    )
    names = [line.split("=", 1)[0] for line in done.stdout.splitlines()]
    assert names == ["OPDESK_MASTER_KEYS", "OPDESK_BLIND_INDEX_KEY", "OPDESK_SIGNING_KEY"]


def test_sweep_removes_expired_codes_only(fresh_database: Database, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    clinic = make_tenant(fresh_database)
    now = datetime.now(UTC)
    with clinic_session(fresh_database, None) as session:
        unaudited(session)  # codes with known hashes, one expired already: no sign-in makes those
        for minutes, attempt in ((-10, b"old"), (10, b"new")):
            session.execute(
                text(
                    "insert into otp_tokens (id, phone_hash, otp_hash, attempt_hash, expires_at, "
                    "attempts, created_at, clinic_id) values (gen_random_uuid(), 'p', 'o', :a, "
                    ":e, 0, :c, :t)"
                ),
                {"a": attempt, "e": now + timedelta(minutes=minutes), "c": now, "t": clinic.id},
            )
    done = opdesk("sweep", database=fresh_database, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "swept 1 expired sign-in codes," in done.stdout
    assert "0 lapsed waitlist offers, 0 lapsed holds" in done.stdout
    with clinic_session(fresh_database, None) as session:
        left = session.execute(text("select attempt_hash from otp_tokens")).scalars().all()
    assert left == [b"new"]


def assert_demo_schedule(database: Database) -> None:
    """Three doctors, two months of slots, and a clinic day (today, or the next open day)
    with an appointment in every state.
    """
    with database.owner_engine.connect() as conn:
        doctors = conn.execute(text("select count(*) from doctor_profiles")).scalar_one()
        days = conn.execute(text("select max(date) - min(date) from slots")).scalar_one()
        states = set(
            conn.execute(
                text(
                    "select distinct a.status from appointments a "
                    "left join slots s on s.tenant_id = a.tenant_id and s.id = a.slot_id "
                    "where coalesce(s.date, a.queue_date) = "
                    "(select max(queue_date) from appointments)"
                )
            ).scalars()
        )
        tokens = conn.execute(
            text("select count(*) from appointments where token_number is not null")
        ).scalar_one()
    assert doctors == 3
    assert days >= 57  # 60 days from today, less a closed Sunday or two at the end
    assert states >= {"completed", "in-consult", "checked-in", "confirmed", "no-show", "cancelled"}
    assert tokens >= 6  # three done, one with the doctor, two waiting, and the walk-in
