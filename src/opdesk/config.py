"""Settings read from the environment (prefix ``OPDESK_``) or a ``.env`` file."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from ipaddress import ip_network
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OPDESK_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["dev", "prod"] = "dev"
    # Owner URL: migrations run with it. Absent means "start the embedded server".
    database_url: str | None = None
    # Optional separate login for the application. Without it the app uses the owner
    # URL and switches to the table-less ``opdesk_app`` role on every connection.
    app_database_url: str | None = None
    data_dir: Path = Path("var")
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    # Addresses (or networks, comma-separated) of the reverse proxies in front of OPDesk.
    # Only a request arriving from one of them has its X-Forwarded-For / -Proto believed;
    # by default none is, and the client address is the socket's peer. Every per-address
    # limit (sign-in, codes, public holds) counts that address.
    trusted_proxies: str = ""
    # The page that shows every message the `log` provider "sent" (/dev/inbox). On in dev
    # unless set; production refuses to start with it on.
    dev_inbox: bool | None = None

    # Keys. In dev, missing keys are generated once into ``<data_dir>/keys``.
    master_keys: SecretStr | None = Field(
        default=None,
        description='JSON keyring: {"active": 2, "keys": {"1": "<base64 32 bytes>", ...}}',
    )
    blind_index_key: SecretStr | None = None
    signing_key: SecretStr | None = None

    # Sign-in
    staff_idle_minutes: int = 30
    patient_idle_minutes: int = 60
    session_hours: int = 12
    # Lighter argon2 parameters for the test suite only (refused in prod).
    fast_password_hashing: bool = False
    # Sign-in codes one clinic may send by SMS in any 24 hours (SMS pumping guard);
    # admins are warned at 80%. A busy clinic signs in a few hundred patients a day.
    sms_daily_budget: int = Field(default=500, ge=1)
    # How long the one-time link to set a password (a new clinic's first admin) works.
    password_link_hours: int = Field(default=72, ge=1, le=24 * 14)

    max_upload_mb: int = 20

    # Backups (`opdesk backup`, and the worker's daily one): where they go, and PostgreSQL's
    # bin folder for pg_dump / pg_restore (default: the embedded wheel's, the same release).
    backup_dir: Path | None = None
    pg_bin_dir: Path | None = None
    # The worker's daily backup (kept 7 daily, 4 weekly, 12 monthly): on in production
    # unless turned off, off in dev unless turned on; made after this hour, server time.
    daily_backup: bool | None = None
    daily_backup_hour: int = Field(default=2, ge=0, le=23)
    # `opdesk check` warns below this much free space on the data folder's disk.
    disk_min_free_gb: float = Field(default=2.0, ge=0)

    # Billing: where Razorpay's API answers (tests point it at a local test server), and
    # how long one call to it may take before the desk is told to try again.
    razorpay_base_url: str = "https://api.razorpay.com"
    razorpay_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # ABDM: where the gateway (HIE-CM) and the ABHA service answer in each environment a
    # clinic may choose (tests point them at a local fake), and how long one call may take.
    abdm_sandbox_gateway_url: str = "https://dev.abdm.gov.in"
    abdm_production_gateway_url: str = "https://live.abdm.gov.in"
    abdm_sandbox_abha_url: str = "https://abhasbx.abdm.gov.in/abha/api"
    abdm_production_abha_url: str = "https://abha.abdm.gov.in/abha/api"
    abdm_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Certificates to trust, beyond the system's, when pushing records to an HIU's
    # dataPushUrl (a private CA in a test or a closed network); unset: the system's only.
    abdm_push_ca_file: Path | None = None

    # Scheduling
    hold_minutes: int = 5
    waitlist_offer_minutes: int = 15
    slot_days_ahead: int = 60

    # The worker (`opdesk worker`, or the one `opdesk serve` starts).
    # Attempts of a message or an automation event before it is failed (an admin may retry).
    worker_max_attempts: int = Field(default=5, ge=1, le=50)
    # Backoff after attempt n: a random delay in [0, min(cap, base * 2**(n-1))] ("full
    # jitter"), so workers that failed together do not retry together.
    worker_backoff_base_seconds: float = Field(default=30.0, gt=0)
    worker_backoff_cap_seconds: float = Field(default=3600.0, gt=0)
    # A claimed row is the worker's for this long; if the worker dies it is due again after.
    # Longer than a provider call may take (worker_send_timeout_seconds) with room to spare.
    worker_lease_seconds: float = Field(default=120.0, gt=0)
    worker_send_timeout_seconds: float = Field(default=15.0, gt=0)
    # The timer: without a notification, a worker looks for due work this often.
    worker_poll_seconds: float = Field(default=5.0, gt=0)
    # Rows claimed at once per clinic (the next clinic gets its turn after them).
    worker_batch_size: int = Field(default=20, ge=1, le=1000)
    # The sweeps (`opdesk sweep`) run this often, by one worker at a time.
    worker_sweep_seconds: float = Field(default=60.0, gt=0)
    # /readyz warns when the oldest due row has waited longer than this.
    worker_lag_warning_seconds: float = Field(default=300.0, gt=0)

    # /metrics answers a scraper sending "Authorization: Bearer <this>"; unset: no /metrics.
    metrics_token: SecretStr | None = None

    # Connections per web worker process, for the services (SQLAlchemy) and again for the
    # hot paths (psycopg); a request waits at most db_pool_wait_seconds for one. Small and
    # without overflow: more connections than cores only queue inside PostgreSQL.
    db_pool_size: int = Field(default=5, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    db_pool_wait_seconds: float = Field(default=10.0, gt=0, le=300)
    # A statement of the app (a request's or the worker's) running longer is cancelled
    # and its request answered 503: one slow query cannot pin a connection. Migrations,
    # backups and `opdesk audit verify` are not bound by it.
    db_statement_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    log_level: str = "INFO"

    @property
    def hold_for(self) -> timedelta:
        """How long a held slot waits for its booking."""
        return timedelta(minutes=self.hold_minutes)

    @property
    def offer_for(self) -> timedelta:
        """How long a freed slot is kept for the waitlisted patient it is offered to."""
        return timedelta(minutes=self.waitlist_offer_minutes)

    @model_validator(mode="after")
    def _no_test_shortcuts_in_prod(self) -> Settings:
        if self.env == "prod" and self.fast_password_hashing:
            raise ValueError("OPDESK_FAST_PASSWORD_HASHING is for tests only, never in prod")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for entry in _entries(value):
            if entry == "*":
                raise ValueError(
                    "'*' would believe a forwarded address from anyone; "
                    "list the proxies' addresses or networks"
                )
            try:
                ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or network") from exc
        return value

    @property
    def proxy_networks(self) -> list[str]:
        """The trusted proxies, one address or network per entry (empty: trust none)."""
        return _entries(self.trusted_proxies)

    @property
    def dev_inbox_on(self) -> bool:
        return self.env == "dev" if self.dev_inbox is None else self.dev_inbox

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def backups(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def daily_backup_on(self) -> bool:
        return self.env == "prod" if self.daily_backup is None else self.daily_backup

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")


def _entries(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
