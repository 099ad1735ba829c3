"""``opdesk`` command line: serve, worker, migrate, demo, sweep, audit verify, keys rotate,
fhir export, tenant create and admin-link."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError
from sqlalchemy import text

from opdesk.config import Settings, get_settings
from opdesk.context import system_context
from opdesk.db import Database, EmbeddedServer, open_configured
from opdesk.errors import DomainError
from opdesk.logsetup import configure_logging
from opdesk.migrate import schema_problem, upgrade
from opdesk.security.crypto import FieldCipher, KeyringSource
from opdesk.security.keys import (
    KEYRING_FILE,
    FileKeyring,
    KeyConfigError,
    keyring_env,
    keys_in_place,
    load_keyring,
    new_keyring,
)
from opdesk.uow import transaction

if TYPE_CHECKING:
    from opdesk.automation.worker import Worker
    from opdesk.identity.service import Identity


@dataclass
class Runtime:
    settings: Settings
    db: Database
    server: EmbeddedServer | None


@contextmanager
def runtime(migrate: bool | None = None, *, any_schema: bool = False) -> Iterator[Runtime]:
    """Settings and the database (embedded when no URL is set), its schema current.

    ``migrate=None``: a dev install migrates itself, so a fresh clone just runs; production
    refuses to run on a schema other than this release's, because migrating is a step an
    operator takes on purpose, after a backup (``opdesk migrate``). ``any_schema``: leave
    the schema alone, whatever it is (restore brings its own).
    """
    settings = get_settings()
    configure_logging(settings.log_level)
    db, server = open_configured(settings)
    try:
        if any_schema:
            pass
        elif migrate or (migrate is None and settings.env == "dev"):
            upgrade(db.owner_engine)
        else:
            with db.owner_engine.connect() as conn:
                problem = schema_problem(conn)
            if problem:
                fail(problem)
        yield Runtime(settings, db, server)
    finally:
        db.dispose()


def fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """OPDesk: the outpatient clinic desk."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default from settings).")
@click.option("--port", default=None, type=int, help="Port (default from settings, 8000).")
@click.option(
    "--workers", default=2, show_default=True, help="Uvicorn worker processes (2 measured best)."
)
@click.option(
    "--no-worker",
    is_flag=True,
    help="Do not start the message and automation worker in this process "
    "(run `opdesk worker` elsewhere).",
)
def serve(host: str | None, port: int | None, workers: int, no_worker: bool) -> None:
    """Migrate, then serve OPDesk over HTTP (embedded PostgreSQL when no URL is set).

    Unless --no-worker, one worker (`opdesk worker`) runs in this process beside the web
    server, whatever --workers says, so messages are sent with nothing else started.
    """
    import uvicorn

    settings = get_settings()
    # Before anything imports prometheus_client: each uvicorn worker counts into files here,
    # and /metrics adds them up. Emptied at each start (counters restart, as a process's do).
    metrics_dir = settings.data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    with runtime() as rt:
        _keys_for_start(rt.settings)
        if rt.settings.env == "dev":
            _ensure_demo(rt)
        # Workers read the database from the environment, so they share this server.
        os.environ["OPDESK_DATABASE_URL"] = rt.db.owner_url.render_as_string(False)
        if rt.db.app_url is not None:
            os.environ["OPDESK_APP_DATABASE_URL"] = rt.db.app_url.render_as_string(False)
        bind_host, bind_port = host or rt.settings.host, port or rt.settings.port
        click.echo(f"OPDesk on http://{bind_host}:{bind_port}  (Ctrl+C stops it)")
        # A thread of this (the supervising) process: uvicorn's worker processes are
        # started from here and never start one of their own, so there is exactly one.
        background = None if no_worker else _start_worker(rt)
        try:
            uvicorn.run(
                "opdesk.app:app_from_env",
                factory=True,
                host=bind_host,
                port=bind_port,
                workers=workers,
                access_log=False,
                log_config=None,
                # The app believes forwarded headers from OPDESK_TRUSTED_PROXIES only.
                proxy_headers=False,
            )
        finally:
            if background is not None:
                worker_, thread = background
                worker_.stop()  # finishes the message in hand, releases the rest
                thread.join(timeout=rt.settings.worker_send_timeout_seconds + 10)


def _start_worker(rt: Runtime) -> tuple[Worker, threading.Thread]:
    from opdesk.automation.worker import for_settings

    worker_ = for_settings(rt.db, rt.settings, FieldCipher(_keyring_or_fail(rt.settings)))
    thread = threading.Thread(target=worker_.run, name="opdesk-worker", daemon=True)
    thread.start()
    return worker_, thread


@main.command()
@click.option("--once", is_flag=True, help="One pass over the work due now, then exit.")
def worker(once: bool) -> None:
    """Run due automation events and send due messages until stopped, and the sweeps
    every few minutes. Any number may run side by side.

    SIGTERM or Ctrl+C: the message being sent is finished and recorded, the rest of the
    worker's batch is released at once for the others.
    """
    from opdesk.automation.worker import for_settings

    with runtime() as rt:
        worker_ = for_settings(rt.db, rt.settings, FieldCipher(_keys_for_start(rt.settings)))
        if once:
            click.echo(f"handled {worker_.run_once()} due rows")
            return
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda *_: worker_.stop())
        click.echo(f"worker {worker_.name} waiting for work (SIGTERM stops it)")
        worker_.run()


def _ensure_demo(rt: Runtime) -> None:
    from opdesk.demo import DEMO_SLUG

    with transaction(rt.db, system_context(None)) as session:
        known = session.execute(
            text("select 1 from tenants where slug = :s"), {"s": DEMO_SLUG}
        ).scalar()
    if not known:
        demo.callback()  # type: ignore[misc]


@main.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    with runtime(migrate=True) as rt:
        from opdesk.migrate import head_revision

        click.echo(f"database at migration {head_revision()} ({rt.db.owner_url.database})")


@main.command()
def demo() -> None:
    """Create the demo clinic with its staff and patients, or refresh it."""
    from opdesk.billing.demo import refresh_demo_billing
    from opdesk.clinical.demo import refresh_demo_clinical
    from opdesk.demo import (
        DEMO_PATIENTS,
        demo_passwords,
        refresh_demo,
        refresh_demo_paperwork,
        refresh_demo_patients,
        refresh_demo_people,
    )
    from opdesk.documents.storage import LocalStorage
    from opdesk.identity.service import Identity
    from opdesk.scheduling.demo import refresh_demo_schedule

    with runtime() as rt:
        ident = Identity.create(rt.settings, FieldCipher(_keyring_or_fail(rt.settings)))
        ctx = system_context(None)
        with transaction(rt.db, ctx) as session:
            tenant = refresh_demo(session, ctx)
            logins = refresh_demo_people(session, ctx, ident, demo_passwords(rt.settings.data_dir))
            patients = refresh_demo_patients(session, ctx, ident)
            paperwork = refresh_demo_paperwork(
                session,
                ctx,
                ident,
                LocalStorage(rt.settings.data_dir / "files"),
                rt.settings.data_dir / "fonts",
            )
            slots = refresh_demo_schedule(session, ctx, ident)
            consultations = refresh_demo_clinical(
                session,
                ctx,
                ident,
                LocalStorage(rt.settings.data_dir / "files"),
                rt.settings.base_url,
            )
            bills = refresh_demo_billing(session, ctx, ident.cipher, tenant)
        _build_demo_reports(rt, tenant.id, tenant.timezone)
        base = rt.settings.base_url
        click.echo(f"demo clinic: {tenant.name} -> {base}/c/{tenant.slug}")
        if patients:
            click.echo(f"registered {patients} demo patients")
        if paperwork:
            click.echo(f"recorded {paperwork} signed consents with their PDF copies")
        if slots:
            click.echo(f"made {slots} slots for the next 60 days; today's calendar is busy")
        if consultations:
            click.echo(
                f"signed {consultations} consultations: prescriptions, diet plans, lab orders"
            )
        if bills:
            click.echo(f"issued {bills} invoices: paid by cash, card, UPI, split and link")
        click.echo(f"self-booking page: {base}/c/{tenant.slug}/book")
        click.echo(f"staff sign-in at {base}/sign-in with clinic code {tenant.slug}:")
        for login in logins:
            click.echo(f"  {login.role:<10} {login.email:<36} {login.password}")
        phones = ", ".join(phone for phone, _ in DEMO_PATIENTS)
        click.echo(f"patients sign in at {base}/patient/sign-in with {phones};")
        click.echo(f"  their codes appear in the dev inbox: {base}/dev/inbox")


def _build_demo_reports(rt: Runtime, tenant_id: uuid.UUID, zone: str) -> None:
    """The demo's last 90 days on the reports dashboard (today's figures are live); once:
    a refreshed demo keeps what the nightly rule has built since.
    """
    from zoneinfo import ZoneInfo

    from sqlalchemy import exists, select

    from opdesk.reports.build import build
    from opdesk.reports.models import ReportDaily

    ctx = system_context(tenant_id)
    yesterday = ctx.now().astimezone(ZoneInfo(zone)).date() - timedelta(days=1)
    with transaction(rt.db, ctx) as session:
        if not session.scalar(select(exists().where(ReportDaily.date == yesterday))):
            build(session, ctx, ZoneInfo(zone), yesterday - timedelta(days=89), yesterday)


def _keyring_or_fail(settings: Settings) -> KeyringSource:
    try:
        return load_keyring(settings)
    except KeyConfigError as exc:
        fail(str(exc))
        raise


def _keys_for_start(settings: Settings) -> KeyringSource:
    """The keys a server or worker runs with, after production's refusals (all of them)."""
    from opdesk.ops.startup import production_refusals

    source = _keyring_or_fail(settings)
    refusals = production_refusals(settings, source.current())
    if refusals:
        fail("Production start refused:\n" + "\n".join(f"  - {r}" for r in refusals))
    return source


@main.command()
def sweep() -> None:
    """Run the sweepers once: expired OTP codes, share links, slot holds and waitlist
    offers (the next patient in line gets the slot), old counters and idempotency keys.

    Each sweeper runs in a transaction per clinic: one clinic's failure is reported and
    the others are still swept.
    """

    from opdesk.jobs.runner import run_all
    from opdesk.jobs.sweeps import sweep_jobs
    from opdesk.scheduling import waitlist

    with runtime() as rt:
        offers = waitlist.Offers(FieldCipher(load_keyring(rt.settings)), rt.settings.offer_for)
        outcomes = run_all(rt.db, sweep_jobs(offers))
    click.echo("swept " + ", ".join(f"{o.done} {o.name}" for o in outcomes))
    for failed in (o for o in outcomes if not o.ok):
        click.secho(
            f"{failed.name} failed for {len(failed.failed)} clinic(s); see the log", fg="red"
        )
    if not all(o.ok for o in outcomes):
        sys.exit(1)


@main.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("verify")
@click.option("--tenant", "tenant", default=None, help="Clinic code (slug) or id; default all.")
def audit_verify(tenant: str | None) -> None:
    """Check each clinic's hash chain; name the first event that does not fit."""
    from opdesk.audit.verify import verify_all

    with runtime() as rt, rt.db.owner_engine.connect() as conn:
        tenant_id = _resolve_tenant(conn, tenant) if tenant else None
        reports = verify_all(conn, tenant_id)
        conn.rollback()
    for report in reports:
        click.secho(report.describe(), fg="green" if report.ok else "red")
    if not all(r.ok for r in reports):
        sys.exit(1)


def _resolve_tenant(conn: object, value: str) -> uuid.UUID:
    from sqlalchemy import Connection

    assert isinstance(conn, Connection)
    try:
        return uuid.UUID(value)
    except ValueError:
        found = conn.execute(text("select id from tenants where slug = :s"), {"s": value}).scalar()
        if found is None:
            fail(f"no clinic with the code {value!r}")
        return uuid.UUID(str(found))


def _clinics(rt: Runtime, tenant: str | None) -> list[tuple[uuid.UUID, str, str]]:
    """``(id, code, time zone)`` of the clinic ``--tenant`` names, or of every clinic."""
    with rt.db.owner_engine.connect() as conn:
        wanted = _resolve_tenant(conn, tenant) if tenant else None
        rows = conn.execute(text("select id, slug, timezone from tenants order by slug")).all()
    return [
        (uuid.UUID(str(i)), slug, zone)
        for i, slug, zone in rows
        if wanted in (None, uuid.UUID(str(i)))
    ]


@main.group()
def ledger() -> None:
    """The patients' ledger."""


@ledger.command("check")
@click.option("--tenant", "tenant", default=None, help="Clinic code (slug) or id; default all.")
def ledger_check(tenant: str | None) -> None:
    """Reconcile each clinic's invoices, payments, refunds and ledger; print every
    difference (exit 1 if there is any).
    """
    from opdesk.billing.ledger import check

    with runtime() as rt:
        clinics = _clinics(rt, tenant)
        clean = True
        for tenant_id, name, _zone in clinics:
            with transaction(rt.db, system_context(tenant_id)) as session:
                problems = check(session)
            if problems:
                clean = False
                click.secho(f"{name}: {len(problems)} difference(s)", fg="red")
                for problem in problems:
                    click.echo(f"  {problem}")
            else:
                click.secho(f"{name}: invoices, payments, refunds and ledger agree", fg="green")
    if not clean:
        sys.exit(1)


@main.group()
def report() -> None:
    """The daily figures behind the reports dashboard."""


@report.command("build")
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--tenant", "tenant", default=None, help="Clinic code (slug) or id; default all.")
def report_build(first: datetime, last: datetime, tenant: str | None) -> None:
    """Build (or build again) each clinic's daily report for the days FROM..TO, both
    included, in the clinic's own time zone. Safe to repeat: a day keeps one row.
    """
    from zoneinfo import ZoneInfo

    from opdesk.reports.build import MAX_DAYS, build

    start, end = first.date(), last.date()
    if end < start:
        fail("--to comes before --from")
    with runtime() as rt:
        for tenant_id, name, zone in _clinics(rt, tenant):
            chunk, days, changed = start, 0, 0
            while chunk <= end:
                upto = min(end, chunk + timedelta(days=MAX_DAYS - 1))
                ctx = system_context(tenant_id)
                with transaction(rt.db, ctx) as session:
                    built = build(session, ctx, ZoneInfo(zone), chunk, upto)
                days, changed = days + built.days, changed + built.changed
                chunk = upto + timedelta(days=1)
            click.echo(f"{name}: {days} day(s) built, {changed} changed")


@main.group()
def keys() -> None:
    """Encryption keys."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a fresh set of production keys as environment variables."""
    for name, value in keyring_env(new_keyring()).items():
        click.echo(f"{name}='{value}'")


@keys.command("export")
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The sealed keys file to write; its printable sheet goes beside it as .pdf.",
)
def keys_export(to: Path) -> None:
    """Write the keys sealed with a passphrase, and a recovery sheet to print.

    The passphrase is asked for twice (or read from OPDESK_KEYS_PASSPHRASE). Keep the file
    or the printed sheet apart from the backups: a backup cannot be read without them.
    """
    from opdesk.ops.keysheet import SealedKeysError, recovery_sheet, seal_keys

    settings = get_settings()
    ring = _keyring_or_fail(settings).current()
    passphrase = _passphrase(confirm=True)
    try:
        doc = seal_keys(ring, passphrase)
    except SealedKeysError as exc:
        fail(str(exc))
    _write_private(to, json.dumps(doc, indent=1).encode())
    sheet = to.with_suffix(".pdf")
    _write_private(sheet, recovery_sheet(doc, installation=settings.base_url))
    click.echo(f"keys {doc['fingerprint']} sealed into {to}; print {sheet} and keep it safe")


@keys.command("import")
@click.argument("sealed", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def keys_import(sealed: Path) -> None:
    """Open a sealed keys file (from `opdesk keys export`) for this installation.

    Development: writes the data folder's key file (refused if a different one is there).
    Production: prints the environment variables to set.
    """
    from opdesk.ops.keysheet import SealedKeysError, fingerprint, open_keys

    settings = get_settings()
    try:
        ring = open_keys(json.loads(sealed.read_bytes()), _passphrase(confirm=False))
    except (SealedKeysError, KeyConfigError, ValueError) as exc:
        fail(str(exc))
    if settings.env == "prod":
        for name, value in keyring_env(ring).items():
            click.echo(f"{name}='{value}'")
        return
    path = settings.keys_dir / KEYRING_FILE
    if path.exists() and FileKeyring(path).reload() != ring:
        fail(f"{path} holds other keys; move it away first if these are to replace them")
    FileKeyring(path).save(ring)
    click.echo(f"keys {fingerprint(ring)} written to {path}")


def _passphrase(*, confirm: bool) -> str:
    given = os.environ.get("OPDESK_KEYS_PASSPHRASE")
    if given:
        return given
    answer: str = click.prompt(
        "Passphrase for the keys", hide_input=True, confirmation_prompt=confirm
    )
    return answer


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@main.command()
@click.option(
    "--to",
    "to",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write it into (default OPDESK_BACKUP_DIR, or <data dir>/backups).",
)
def backup(to: Path | None) -> None:
    """Write one sealed archive of the database, the documents and a manifest.

    It is sealed with this installation's keys and does not contain them: without the keys
    (`opdesk keys export`) the backup cannot be read.
    """
    from opdesk.ops.backup import BackupError, make_backup

    with runtime(any_schema=True) as rt:
        ring = _keyring_or_fail(rt.settings).current()
        try:
            made = make_backup(
                rt.db,
                ring,
                data_dir=rt.settings.data_dir,
                to_dir=to or rt.settings.backups,
                bin_dir=rt.settings.pg_bin_dir,
            )
        except BackupError as exc:
            fail(str(exc))
        click.echo(
            f"{made.path}: {made.bytes / 1e6:.1f} MB in {made.seconds:.1f} s "
            f"({made.tables} tables, {made.rows} rows, {made.files} documents)"
        )


@main.command()
def check() -> None:
    """Check keys, schema, table ownership and row-level security, the worker, the last
    backup and free disk; exit 1 if anything is wrong."""
    from opdesk.ops.checks import run_checks

    with runtime(any_schema=True) as rt:
        findings = run_checks(rt.db, rt.settings)
    for finding in findings:
        mark = click.style("ok", fg="green") if finding.ok else click.style("PROBLEM", fg="red")
        click.echo(f"{mark:>7}  {finding.name}" + ("" if finding.ok else f": {finding.problem}"))
    if not all(finding.ok for finding in findings):
        sys.exit(1)


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Replace a database that holds data (its schema is dropped) and set the documents "
    "folder aside.",
)
def restore(archive: Path, force: bool) -> None:
    """Restore a backup into an empty database and data folder, then check it.

    The keys it was sealed with must be in place first (`opdesk keys import`, or the
    environment in production).
    """
    from opdesk.ops.restore import RestoreError
    from opdesk.ops.restore import restore as restore_archive
    from opdesk.ops.sealed import SealError

    with runtime(any_schema=True) as rt:
        cipher = FieldCipher(_existing_keys(rt.settings))
        try:
            report = restore_archive(
                archive,
                rt.db,
                cipher,
                data_dir=rt.settings.data_dir,
                force=force,
                bin_dir=rt.settings.pg_bin_dir,
            )
        except (RestoreError, SealError) as exc:
            fail(f"restore refused: {exc}")
        click.echo(
            f"restored {report.tables} tables ({report.rows} rows) and {report.files} "
            f"documents in {report.seconds:.1f} s; {report.clinics_verified} audit chains "
            f"verified, {report.decrypted} encrypted values decrypted"
        )
        if report.problems:
            fail("the restored data does not match the backup:\n" + "\n".join(report.problems))


def _existing_keys(settings: Settings) -> KeyringSource:
    """The keys in place; never new ones (new keys could not read what is restored)."""
    if not keys_in_place(settings):
        fail(
            f"no keys: put the keys this backup was made with in place first "
            f"(`opdesk keys import KEYS_FILE`, which writes {settings.keys_dir / KEYRING_FILE})"
        )
    return _keyring_or_fail(settings)


@keys.command("rotate")
@click.option("--resume", is_flag=True, help="Only finish re-encrypting (after a crash).")
@click.option("--batch-size", default=500, show_default=True, help="Rows per transaction.")
def keys_rotate(resume: bool, batch_size: int) -> None:
    """Add a new active data key, then re-encrypt every encrypted column in batches."""
    from opdesk.models import load_all_models
    from opdesk.security.rotation import reencrypt

    load_all_models()
    with runtime() as rt:
        try:
            source = load_keyring(rt.settings)
        except KeyConfigError as exc:
            fail(str(exc))
        if not resume:
            if not isinstance(source, FileKeyring):
                fail(
                    "keys come from OPDESK_MASTER_KEYS: add a new key there, make it active, "
                    "restart OPDesk, then run `opdesk keys rotate --resume`."
                )
            assert isinstance(source, FileKeyring)
            kid = source.add_active_key()
            click.echo(f"data key {kid} is now active")
        cipher = FieldCipher(source)

        def report(progress: object) -> None:
            click.echo(f"  re-encrypted {getattr(progress, 'rows', 0)} values", err=True)

        done = reencrypt(rt.db, cipher, batch_size=batch_size, after_batch=report)
        click.echo(
            f"re-encryption complete: {done.rows} values in {done.batches} batches "
            f"now use key {cipher.keyring.active_key_id}"
        )


@main.group()
def fhir() -> None:
    """Patients' records as FHIR R4 (ABDM's NRCeS profiles)."""


@fhir.command("export")
@click.option("--clinic", "clinic", required=True, help="Clinic code (slug).")
@click.option(
    "--patient", "patient", required=True, help="Patient number (P-000123) or patient id."
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the files into (made if missing).",
)
def fhir_export(clinic: str, patient: str, out: Path) -> None:
    """Write the patient's NRCeS document bundles (one <RecordType>-<bundle id>.json per
    care event) and everything.json (Patient/$everything) into OUT; recorded in the
    clinic's audit trail. The files hold health records: keep them private.
    """
    from opdesk.documents.storage import LocalStorage
    from opdesk.fhir.export import export_to_folder

    with runtime() as rt:
        try:
            done = export_to_folder(
                rt.db,
                FieldCipher(_keyring_or_fail(rt.settings)),
                LocalStorage(rt.settings.data_dir / "files"),
                clinic=clinic,
                patient=patient,
                out=out,
                base_url=rt.settings.base_url,
            )
        except DomainError as exc:
            fail(exc.detail)
            return
    click.echo(f"{done.patient_number}: {len(done.files)} file(s) written to {out}")


@main.group()
def tenant() -> None:
    """Clinics."""


@tenant.command("create")
@click.option("--name", required=True, help="Clinic name as patients know it.")
@click.option("--slug", required=True, help="Clinic code used in its web address.")
@click.option("--admin-email", default=None, help="Email of the clinic's first admin (required).")
@click.option("--admin-name", default=None, help="Name of the clinic's first admin (required).")
@click.option("--timezone", default="Asia/Kolkata", show_default=True)
@click.option("--gstin", default=None, help="GSTIN, if the clinic is registered for GST.")
@click.option("--phone", default=None, help="Reception phone number.")
@click.option("--city", default=None)
@click.option("--state", default=None)
@click.option(
    "--invoice-prefix",
    default="INV",
    show_default=True,
    help="Up to three capital letters or digits, e.g. OPD (GST numbers are at most 16 characters)",
)
def tenant_create(
    name: str,
    slug: str,
    admin_email: str | None,
    admin_name: str | None,
    timezone: str,
    gstin: str | None,
    phone: str | None,
    city: str | None,
    state: str | None,
    invoice_prefix: str,
) -> None:
    """Create a clinic and its first admin, and print the admin's one-time link to
    choose a password (shown this once; it expires).
    """
    from opdesk.identity.schemas import FirstAdmin
    from opdesk.identity.service import create_first_admin
    from opdesk.tenancy.schemas import TenantCreate
    from opdesk.tenancy.service import create_tenant

    problems: list[str] = []
    try:
        data = TenantCreate.model_validate(
            {
                "name": name,
                "slug": slug,
                "timezone": timezone,
                "gstin": gstin,
                "phone": phone,
                "address": {"city": city, "state": state},
                "invoicePrefix": invoice_prefix,
            }
        )
    except ValidationError as exc:
        problems += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    try:
        admin = FirstAdmin(name=admin_name or "", email=admin_email or "")
    except ValidationError as exc:
        problems += [f"--admin-{e['loc'][0]}: {_admin_problem(e)}" for e in exc.errors()]
    if problems:
        fail("invalid clinic: " + "; ".join(problems))
        return
    with runtime() as rt:
        ident = _identity(rt)
        ctx = system_context(None)
        try:
            with transaction(rt.db, ctx) as session:
                created = create_tenant(session, ctx, data=data)
                user, token = create_first_admin(
                    session, ctx, ident, name=admin.name, email=admin.email
                )
        except DomainError as exc:
            fail(exc.detail)
            return
        click.echo(f"created {created.name} ({created.slug}) id={created.id}")
        _print_link(rt.settings, user.name, user.email or "", token)


def _admin_problem(error: object) -> str:
    assert isinstance(error, dict)
    if error.get("input") == "":
        return "the clinic's first admin is required; give it"
    return str(error.get("msg", "not valid"))


def _identity(rt: Runtime) -> Identity:
    from opdesk.identity.service import Identity

    return Identity.create(rt.settings, FieldCipher(_keyring_or_fail(rt.settings)))


def _print_link(settings: Settings, name: str, email: str, token: str) -> None:
    hours = settings.password_link_hours
    click.echo(f"first admin: {name} <{email}>")
    click.echo(f"  one-time link to choose a password (works once, for {hours} hours):")
    click.echo(f"  {settings.base_url.rstrip('/')}/set-password?token={token}")
    click.echo("  It is shown only now: send it to the admin privately.")


@tenant.command("admin-link")
@click.option("--clinic", "clinic", required=True, help="Clinic code (slug).")
@click.option("--email", required=True, help="Email of a staff member of that clinic.")
def tenant_admin_link(clinic: str, email: str) -> None:
    """A new one-time link for a staff member to choose a password (when the first
    admin's link has expired, or no admin is left to reset a password). Earlier links of
    that person stop working.
    """
    from sqlalchemy import select

    from opdesk.identity.models import User
    from opdesk.identity.service import issue_password_link
    from opdesk.tenancy.service import find_by_slug
    from opdesk.uow import enter_tenant

    with runtime() as rt:
        ident = _identity(rt)
        ctx = system_context(None)
        with transaction(rt.db, ctx) as session:
            found = find_by_slug(session, clinic)
            if found is None:
                fail(f"no clinic with the code {clinic!r}")
                return
            enter_tenant(session, ctx, found.id)
            user = session.execute(
                select(User).where(User.email == email.strip().lower(), User.role != "patient")
            ).scalar_one_or_none()
            if user is None or not user.active:
                fail(f"{found.name} has no active staff member with the email {email!r}")
                return
            token = issue_password_link(session, ctx, ident, user=user)
        _print_link(rt.settings, user.name, user.email or "", token)


if __name__ == "__main__":
    main()
