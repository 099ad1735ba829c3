"""OPDesk benchmarks: ``python -m bench`` (or ``make bench``) prints figures.

Runs against ``OPDESK_DATABASE_URL`` when set, else a throw-away embedded server.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from bench import (
    audit_append,
    backup,
    billing,
    booking,
    booking_parts,
    clinical,
    crypto,
    patient_search,
    reports,
    search_http,
    worker,
)
from opdesk.db import (
    APP_ROLE,
    Database,
    EmbeddedServer,
    embedded_settings,
    ensure_app_login,
    psycopg_url,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per audit scenario")
    parser.add_argument(
        "--only",
        choices=[
            "crypto",
            "audit",
            "patients",
            "booking",
            "booking-parts",
            "search",
            "worker",
            "clinical",
            "billing",
            "reports",
            "backup",  # only when named: it builds a second year of ~1,000,000 appointments
        ],
        default=None,
    )
    parser.add_argument(
        "--clients", type=int, default=16, help="client processes (booking, search over HTTP)"
    )
    parser.add_argument(
        "--patients", type=int, nargs="+", default=[100_000, 1_000_000], help="table sizes"
    )
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    if args.only in (None, "crypto"):
        crypto.run()
    if args.only in (
        None,
        "audit",
        "patients",
        "booking",
        "booking-parts",
        "search",
        "worker",
        "clinical",
        "billing",
        "reports",
        "backup",
    ):
        with database() as db:
            if args.only in (None, "audit"):
                audit_append.run(db, seconds=args.seconds)
            if args.only in (None, "patients"):
                patient_search.run(db, sizes=tuple(args.patients))
            for name, bench in (
                ("booking", booking),
                ("search", search_http),
                ("billing", billing),
                ("reports", reports),
            ):
                if args.only in (None, name):
                    with tempfile.TemporaryDirectory(prefix="opdesk-bench-data-") as data_dir:
                        bench.run(
                            db, Path(data_dir), clients=args.clients, seconds=args.seconds * 3
                        )
            if args.only == "booking-parts":  # only when named: a diagnosis, not a figure
                with tempfile.TemporaryDirectory(prefix="opdesk-bench-data-") as data_dir:
                    booking_parts.run(db, Path(data_dir))
            if args.only in (None, "worker"):
                worker.run(db)
            if args.only in (None, "clinical"):
                with tempfile.TemporaryDirectory(prefix="opdesk-bench-data-") as data_dir:
                    clinical.run(db, Path(data_dir))
            if args.only == "backup":  # not in the default run (about 15 minutes more)
                with tempfile.TemporaryDirectory(prefix="opdesk-bench-data-") as data_dir:
                    backup.run(db, Path(data_dir))


class database:  # noqa: N801 - used as a context manager, reads like a function
    def __enter__(self) -> Database:
        url = os.environ.get("OPDESK_DATABASE_URL")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: EmbeddedServer | None = None
        if url:
            self.db = Database(psycopg_url(url), None, pool_size=10, max_overflow=10)
            print(f"database: {self.db.owner_url.render_as_string()}")
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="opdesk-bench-")
            self._server = EmbeddedServer(Path(self._tmp.name) / "pg", cleanup_mode="delete")
            # As `opdesk serve` runs it: sized to the machine.
            self._server.tune(embedded_settings())
            ensure_app_login(self._server.superuser_url)
            owner = self._server.database_url("opdesk_bench")
            self.db = Database(owner, owner.set(username=APP_ROLE, password=None))
            print("database: embedded PostgreSQL in a temporary folder, sized as serve sizes it")
        from opdesk.migrate import upgrade

        upgrade(self.db.owner_engine)
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.dispose()
        if self._server is not None:
            self._server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


if __name__ == "__main__":
    main()
