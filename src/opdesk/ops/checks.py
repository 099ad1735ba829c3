"""``opdesk check``: what an operator (or a cron job, or monitoring) asks each morning.

Each check says ``ok`` or what is wrong and what to do; the command exits non-zero when any
one is wrong. The faults looked for: keys missing, weak or the development ones in
production; the schema behind or ahead of this release; the app role owning a table, or a
clinic's table without forced row-level security (the backstop of clinic isolation); no
worker connected; no backup in the last day; the data folder's disk nearly full.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, text

from opdesk.automation.worker import workers_connected
from opdesk.config import Settings
from opdesk.db import APP_ROLE, Database
from opdesk.migrate import schema_problem
from opdesk.ops.backup import newest_age
from opdesk.ops.startup import production_refusals
from opdesk.security.crypto import Keyring
from opdesk.security.keys import KeyConfigError, keys_in_place, load_keyring

BACKUP_MAX_AGE_SECONDS = 26 * 3600
# Fewer distinct byte values than this in a 32-byte key means it was not drawn at random
# (random keys show about 30).
MIN_DISTINCT_KEY_BYTES = 16


@dataclass(frozen=True)
class Finding:
    name: str
    problem: str | None  # None: ok

    @property
    def ok(self) -> bool:
        return self.problem is None


def run_checks(db: Database, settings: Settings) -> list[Finding]:
    findings = [Finding("keys", _keys_problem(settings))]
    with db.owner_engine.connect() as conn:
        for name, check in DATABASE_CHECKS:
            findings.append(Finding(name, check(conn, settings)))
    findings.append(Finding("backup", _backup_problem(settings)))
    findings.append(Finding("disk", _disk_problem(settings.data_dir, settings.disk_min_free_gb)))
    return findings


def _keys_problem(settings: Settings) -> str | None:
    if not keys_in_place(settings):
        return "no keys: set OPDESK_MASTER_KEYS and the others (`opdesk keys generate`)"
    try:
        ring = load_keyring(settings).current()
    except (KeyConfigError, ValueError) as exc:
        return str(exc)
    weak = weak_keys(ring)
    if weak:
        return f"{', '.join(weak)} not random (too few distinct bytes): generate new keys"
    refused = production_refusals(settings, ring)
    return " ".join(r for r in refused if "keys" in r) or None


def weak_keys(ring: Keyring) -> list[str]:
    named = {f"data key {kid}": key for kid, key in ring.data_keys.items()}
    named |= {"the blind-index key": ring.blind_index_key, "the signing key": ring.signing_seed}
    return [name for name, key in named.items() if len(set(key)) < MIN_DISTINCT_KEY_BYTES]


def _schema(conn: Connection, _: Settings) -> str | None:
    return schema_problem(conn)


def _app_role_owns(conn: Connection, _: Settings) -> str | None:
    owned = conn.execute(
        text(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and pg_get_userbyid(c.relowner) = :role "
            "order by c.relname"
        ),
        {"role": APP_ROLE},
    ).scalars()
    names = list(owned)
    if names:
        return (
            f"the app role {APP_ROLE} owns {', '.join(names)}: an owner can turn row-level "
            "security off; make the migration role own them (ALTER TABLE ... OWNER TO)"
        )
    return None


def _forced_rls(conn: Connection, _: Settings) -> str | None:
    loose = conn.execute(
        text(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' "
            "where n.nspname = 'public' and c.relkind in ('r', 'p') "
            "and not (c.relrowsecurity and c.relforcerowsecurity) order by c.relname"
        )
    ).scalars()
    names = list(loose)
    if names:
        return (
            f"{', '.join(names)} lack forced row-level security: one clinic could read "
            "another's rows; run `opdesk migrate`, or ALTER TABLE ... FORCE ROW LEVEL SECURITY"
        )
    return None


def _worker_seen(conn: Connection, _: Settings) -> str | None:
    if not workers_connected(conn):
        return (
            "no worker is connected: messages, reminders and the daily backup wait; start "
            "`opdesk worker` (or `opdesk serve` without --no-worker)"
        )
    return None


def _backup_problem(settings: Settings) -> str | None:
    age = newest_age(settings.backups, datetime.now(UTC))
    if age is None:
        return f"no backup in {settings.backups}: run `opdesk backup`"
    if age > BACKUP_MAX_AGE_SECONDS:
        return f"the newest backup in {settings.backups} is {age / 3600:.0f} h old"
    return None


def _disk_problem(folder: Path, min_free_gb: float) -> str | None:
    where = folder if folder.exists() else Path.cwd()
    usage = shutil.disk_usage(where)
    free_gb = usage.free / 2**30
    if free_gb < min_free_gb or usage.free < usage.total * 0.05:
        return (
            f"{free_gb:.1f} GiB free of {usage.total / 2**30:.0f} GiB on the data folder's "
            "disk: PostgreSQL stops writing when it is full"
        )
    return None


DATABASE_CHECKS: tuple[tuple[str, Callable[[Connection, Settings], str | None]], ...] = (
    ("schema", _schema),
    ("table owners", _app_role_owns),
    ("row-level security", _forced_rls),
    ("worker", _worker_seen),
)
