"""Behind a proxy, every per-address limit counts the real client, and no client can name
its own address.

OPDesk runs as an operator runs it (``opdesk serve``, a real process) behind a real nginx
(Debian's package; ``.ci/run`` installs it) that sets ``X-Forwarded-For $remote_addr``
and ``X-Forwarded-Proto $scheme``, with ``OPDESK_TRUSTED_PROXIES=127.0.0.1`` (nginx's
address as OPDesk sees it). A second ``opdesk serve`` on the same database keeps the
default (no trusted proxies) and is reached directly. "Clients" are told apart by their
source address: Linux accepts any 127.0.0.0/8 address as a source on loopback.

The limit exhausted is the cheapest per-address one: holds on a clinic's public booking
page (``PUBLIC_HOLDS``: 10 in 15 minutes per clinic and address). Each test uses its own
client addresses, so the tests do not depend on each other's counts.
"""

from __future__ import annotations

import datetime as dt
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError
from sqlalchemy import text

from opdesk.config import Settings
from opdesk.db import Database, drop_database
from opdesk.demo import DEMO_SLUG
from opdesk.scheduling.deps import PUBLIC_HOLDS
from opdesk.security.keys import keyring_env, new_keyring
from opdesk.uow import transaction
from tests.conftest import PgServer, clone_database
from tests.factories import ctx_for
from tests.factories.serve import free_port, serving

pytestmark = pytest.mark.xdist_group("behind-nginx")

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
HOLDS = f"/api/v1/public/clinics/{DEMO_SLUG}/holds"
REFUSED = re.compile(r"^too many holds; try again in (\d+) minutes$")
HSTS = "strict-transport-security"


# --------------------------------------------------------------------------- the servers


@dataclass(frozen=True)
class Front:
    """nginx in front of OPDesk: its plain and TLS addresses, and its access log."""

    http: str
    https: str
    certificate: Path
    access_log: Path


@pytest.fixture(scope="module")
def database(pg: PgServer, template_name: str) -> Iterator[Database]:
    """One database for this module's two servers (the demo clinic is made once)."""
    name, db = clone_database(pg, template_name)
    yield db
    db.dispose()
    drop_database(pg.server_url, name)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """Both servers share the keys, so the second reads the demo clinic the first made."""
    return dict(keyring_env(new_keyring()))


@pytest.fixture(scope="module")
def behind_proxy(
    database: Database, keys: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """OPDesk believing forwarded headers from 127.0.0.1 (nginx) only."""
    data_dir = tmp_path_factory.mktemp("behind-proxy")
    with serving(
        database, data_dir, "--no-worker", OPDESK_TRUSTED_PROXIES="127.0.0.1", **keys
    ) as base:
        yield base


@pytest.fixture(scope="module")
def direct(
    database: Database, keys: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """OPDesk with the default: no trusted proxies."""
    data_dir = tmp_path_factory.mktemp("direct")
    with serving(database, data_dir, "--no-worker", OPDESK_TRUSTED_PROXIES="", **keys) as base:
        yield base


@pytest.fixture(scope="module")
def nginx(behind_proxy: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    home = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(home)
    http_port, https_port = free_port(), free_port()
    conf = home / "nginx.conf"
    conf.write_text(nginx_conf(home, behind_proxy, http_port, https_port, cert, key))
    error_log = home / "error.log"
    proc = subprocess.Popen(
        [NGINX, "-p", str(home), "-c", str(conf), "-e", str(error_log), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not (listening(http_port) and listening(https_port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = error_log.read_text() if error_log.exists() else "(no error log)"
                raise AssertionError(f"nginx did not start: {log[-3000:]}")
            time.sleep(0.05)
        yield Front(
            http=f"http://127.0.0.1:{http_port}",
            https=f"https://127.0.0.1:{https_port}",
            certificate=cert,
            access_log=home / "access.log",
        )
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in hand
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def nginx_conf(
    home: Path, upstream: str, http_port: int, https_port: int, cert: Path, key: Path
) -> str:
    """An nginx site as docs/deploy.md shows it, with every path inside ``home``."""
    # Started as root, nginx would run its workers as "nobody", who cannot enter pytest's
    # private temporary folders: keep them as the user running the tests.
    user = (
        f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
        if os.geteuid() == 0
        else ""
    )
    temp = "\n".join(
        f"    {kind}_temp_path {home / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
{user}
worker_processes 1;
pid {home / "nginx.pid"};
error_log {home / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log {home / "access.log"};
{temp}
    upstream opdesk {{ server {upstream.removeprefix("http://")}; }}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://opdesk;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def self_signed(home: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, so nginx ends TLS as it does in production."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = home / "cert.pem", home / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- clients and slots


def client_at(source: str, base: str, trusting: Path | None = None) -> httpx.Client:
    """A client whose connections come from ``source`` (an address on loopback), trusting
    the certificate ``trusting`` over TLS."""
    tls = ssl.create_default_context(cafile=trusting) if trusting else True
    return httpx.Client(
        base_url=base,
        transport=httpx.HTTPTransport(local_address=source, verify=tls),
        trust_env=False,
        timeout=30,
    )


@pytest.fixture(scope="module")
def free_slots(direct: str) -> deque[str]:
    """Free slots of the demo clinic's doctors, a few days out; each test takes its own."""
    found: deque[str] = deque()
    public = f"{direct}/api/v1/public/clinics/{DEMO_SLUG}"
    # Two days after today in UTC is after today in any clinic's timezone.
    first = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    doctors = httpx.get(f"{public}/doctors", timeout=30)
    assert doctors.status_code == 200, doctors.text
    for doctor in doctors.json():
        slots = httpx.get(
            f"{public}/slots",
            params={
                "doctorId": doctor["id"],
                "from": first.isoformat(),
                "to": (first + dt.timedelta(days=10)).isoformat(),
            },
            timeout=30,
        )
        assert slots.status_code == 200, slots.text
        found.extend(s["id"] for s in slots.json() if s["status"] == "free")
    assert len(found) >= 60, f"the demo clinic has only {len(found)} free slots"
    return found


def hold(client: httpx.Client, slots: deque[str], **headers: str) -> httpx.Response:
    return client.post(HOLDS, json={"slotId": slots.popleft()}, headers=headers)


def use_up_holds(
    client: httpx.Client, slots: deque[str], forwarded_for: Iterator[str] | None = None
) -> list[httpx.Response]:
    """As many holds as one address may make; every one is granted."""
    made = []
    for _ in range(PUBLIC_HOLDS.count):
        headers = {"X-Forwarded-For": next(forwarded_for)} if forwarded_for else {}
        made.append(hold(client, slots, **headers))
    assert [r.status_code for r in made] == [201] * PUBLIC_HOLDS.count, made[-1].text
    return made


def assert_refused(answer: httpx.Response) -> None:
    """The public-hold limit's refusal: 429 with a problem and Retry-After saying when to
    try again."""
    assert answer.status_code == 429, answer.text
    problem = answer.json()
    assert problem["title"] == "Too many attempts"
    minutes = REFUSED.match(problem["detail"])
    assert minutes, problem["detail"]
    window = int(PUBLIC_HOLDS.window.total_seconds() // 60)
    assert 1 <= int(minutes.group(1)) <= window + 1
    # The same wait in seconds, for a client's own back-off.
    seconds = int(answer.headers["retry-after"])
    assert 1 <= seconds <= PUBLIC_HOLDS.window.total_seconds() + 1
    assert (seconds - 1) // 60 + 1 == int(minutes.group(1))


def strangers() -> Iterator[str]:
    """Addresses a client might claim: a new one every time, none on loopback."""
    while True:
        yield f"203.0.113.{secrets.randbelow(254) + 1}, 198.51.100.{secrets.randbelow(254) + 1}"


def recorded_ips(db: Database, answers: list[httpx.Response]) -> list[str | None]:
    """The address the audit trail stored for each answered request (by its request id)."""
    ids = [a.headers["x-request-id"] for a in answers]
    with db.owner_engine.connect() as conn:
        tenant_id = conn.execute(
            text("select id from tenants where slug = :s"), {"s": DEMO_SLUG}
        ).scalar_one()
    with transaction(db, ctx_for(tenant_id)) as session:
        rows: dict[str, str | None] = dict(
            session.execute(
                text(
                    "select request_id, ip from audit_events "
                    "where request_id = any(:ids) and entity_collection = 'slots' "
                    "and to_state = 'held'"
                ),
                {"ids": ids},
            ).all()
        )
    assert set(rows) == set(ids), "every hold writes one audit event"
    return [rows[i] for i in ids]


def ips_stored_as(db: Database, values: list[str]) -> int:
    """Audit events (any clinic) whose stored address is one of ``values``."""
    parts = {p.strip() for v in values for p in v.split(",")}
    with db.owner_engine.connect() as conn:
        found: int = conn.execute(
            text("select count(*) from audit_events where ip = any(:v)"), {"v": sorted(parts)}
        ).scalar_one()
    return found


# --------------------------------------------------------------------------- behind nginx


def test_the_limit_counts_each_real_client_behind_nginx(
    nginx: Front, database: Database, free_slots: deque[str]
) -> None:
    """A uses up its holds and is refused; B, through the same nginx, is not; A naming
    another address of its own is still refused; the trail stores each real address."""
    with client_at("127.0.0.2", nginx.http) as a, client_at("127.0.0.3", nginx.http) as b:
        granted = use_up_holds(a, free_slots)
        assert_refused(hold(a, free_slots))
        other = hold(b, free_slots)
        assert other.status_code == 201, other.text
        claimed = f"192.0.2.{secrets.randbelow(254) + 1}"
        assert_refused(hold(a, free_slots, **{"X-Forwarded-For": claimed}))
    assert recorded_ips(database, granted) == ["127.0.0.2"] * len(granted)
    assert recorded_ips(database, [other]) == ["127.0.0.3"]
    # All of it went through nginx, which saw the two clients as they are.
    seen = [line.split()[0] for line in nginx.access_log.read_text().splitlines()]
    assert seen.count("127.0.0.2") == len(granted) + 2
    assert seen.count("127.0.0.3") == 1


def test_a_forwarded_for_sent_by_the_client_counts_for_nothing_behind_nginx(
    nginx: Front, database: Database, free_slots: deque[str]
) -> None:
    """Claiming a new address on every request does not get a client past its limit:
    nginx replaces the header, and OPDesk believes nginx only."""
    claims = strangers()
    with client_at("127.0.0.4", nginx.http) as client:
        granted = use_up_holds(client, free_slots, claims)
        assert_refused(hold(client, free_slots, **{"X-Forwarded-For": next(claims)}))
    assert recorded_ips(database, granted) == ["127.0.0.4"] * len(granted)


def test_a_client_that_goes_around_nginx_is_not_believed(
    nginx: Front, behind_proxy: str, database: Database, free_slots: deque[str]
) -> None:
    """Only nginx's address is trusted: a client reaching OPDesk itself, from any other
    address, is its socket address whatever it claims (and is limited as such)."""
    with client_at("127.0.0.5", behind_proxy) as sneaky:
        granted = use_up_holds(sneaky, free_slots, strangers())
        assert_refused(hold(sneaky, free_slots, **{"X-Forwarded-For": "127.0.0.99"}))
    assert recorded_ips(database, granted) == ["127.0.0.5"] * len(granted)


def test_tls_ends_at_nginx_and_only_nginx_says_so(nginx: Front, direct: str) -> None:
    """OPDesk's base URL here is http (so it does not send HSTS on its own): the HSTS
    header shows which requests it took for https."""
    with client_at("127.0.0.6", nginx.https, trusting=nginx.certificate) as over_tls:
        assert over_tls.get("/healthz").headers.get(HSTS, "").startswith("max-age=")
    claim = {"X-Forwarded-Proto": "https"}
    with client_at("127.0.0.6", nginx.http) as plain:
        answer = plain.get("/healthz", headers=claim)
        assert answer.status_code == 200 and HSTS not in answer.headers
    with client_at("127.0.0.6", direct) as bare:
        answer = bare.get("/healthz", headers=claim)
        assert answer.status_code == 200 and HSTS not in answer.headers


# --------------------------------------------------------------------------- no proxy (default)


def test_with_no_trusted_proxy_the_socket_address_is_the_client(
    direct: str, database: Database, free_slots: deque[str]
) -> None:
    """The default: a client's X-Forwarded-For is never believed, so a new claimed address
    on every request neither escapes the limit nor lands in the audit trail."""
    claims: list[str] = []

    def claiming() -> Iterator[str]:
        for value in strangers():
            claims.append(value)
            yield value

    with client_at("127.0.0.7", direct) as client:
        granted = use_up_holds(client, free_slots, claiming())
        assert_refused(hold(client, free_slots, **{"X-Forwarded-For": "127.0.0.8"}))
        # Another address is its own client, limits and all.
        with client_at("127.0.0.8", direct) as other:
            assert hold(other, free_slots).status_code == 201
    assert recorded_ips(database, granted) == ["127.0.0.7"] * len(granted)
    assert ips_stored_as(database, claims) == 0


# --------------------------------------------------------------------------- the setting


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("*", "'*'"),
        ("not-an-ip", "'not-an-ip'"),
        ("10.0.0.1, 10.0.0.0/33", "'10.0.0.0/33'"),
        ("192.168.1.10,proxy.example.in", "'proxy.example.in'"),
    ],
)
def test_a_bad_trusted_proxies_value_is_refused_by_name(value: str, named: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(trusted_proxies=value, _env_file=None)
    message = str(refused.value)
    assert "trusted_proxies" in message
    assert named in message


def test_trusted_proxies_are_addresses_or_networks_and_none_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = Settings(trusted_proxies=" 10.0.0.5 , 10.1.0.0/16,,::1", _env_file=None)
    assert listed.proxy_networks == ["10.0.0.5", "10.1.0.0/16", "::1"]
    monkeypatch.delenv("OPDESK_TRUSTED_PROXIES", raising=False)
    assert Settings(_env_file=None).proxy_networks == []
