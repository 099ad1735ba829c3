"""A stand-in for an ABDM health information user (HIU), for tests of the HIP's data push.

In a consent-based transfer the HIU asks (through the gateway) for the records a consent
covers, and the HIP POSTs them, Fidelius-encrypted, straight to the ``dataPushUrl`` the
request named. This fake plays the HIU's two parts of that exchange:

* ``hi_request_body(...)`` issues a transaction: a fresh Fidelius key pair and nonce of its
  own, and the body the gateway would deliver to the HIP at
  ``POST /api/v3/hip/health-information/request`` (``transactionId`` + ``hiRequest``
  {consent, dateRange, dataPushUrl, keyMaterial}), in the shape
  ``messages.parse_health_information_request`` reads.
* A real local server takes the push at that ``dataPushUrl``: it checks the body's shape,
  reads the HIP's ``keyMaterial``, decrypts every entry with the transaction's private key,
  compares each entry's ``checksum`` with ``messages.checksum`` of the plaintext, and reads
  the plaintext as a JSON object. A page that passes is answered 202 and recorded in
  ``received`` (a ``Transfer``); one that fails anywhere is answered 400 with the reason
  and nothing of it is kept but the ``Rejection``. A transaction it never issued gets 404.

TLS: ``parse_health_information_request`` accepts only an https ``dataPushUrl``, so by
default the fake serves TLS. ``start()`` makes a throwaway certificate authority and a
server certificate it signs (EC P-256, SAN = the host, one day long) with ``cryptography``,
writes them to a temporary folder that ``stop()`` removes, and exposes ``ca_path`` (the
authority's PEM) and ``ssl_context`` (a client context trusting it), so a client trusts the
fake with ``httpx.Client(verify=fake.ssl_context)``. A client left on its default trust
store fails the handshake (CERTIFICATE_VERIFY_FAILED), as a real HIP's client should.
``FakeHiu(tls=False)`` serves plain http, whose URLs that parser refuses.

What a real HIU would check that this fake does too, beyond the cryptography:

* every page of one transaction carries the same HIP key material and the same
  ``pageCount`` (``messages.data_push`` says one sender per transfer);
* the HIU's own key has not expired (``key_expiry`` of the request) and the HIP's
  ``dhPublicKey.expiry`` is a timestamp not already past;
* ``media`` is ``application/fhir+json``; entries that carry a ``link`` instead of
  ``content`` are refused, since the fake fetches nothing.

It does not know the consent's care contexts or HI types, so it does not check that the
pushed care context references were consented to; a test can compare ``received`` itself.
A page sent again (a retry) is accepted and recorded again.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opdesk.abdm import fidelius, messages
from opdesk.abdm.gateway import timestamp

DEFAULT_PUSH_PATH = "/data/push"
DEFAULT_KEY_LIFETIME = timedelta(hours=1)
HANDSHAKE_TIMEOUT = 10.0  # seconds a connection may take to finish TLS (and then each read)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class IssuedTransaction:
    """One HI request the fake made: the key pair it holds for that transaction alone."""

    transaction_id: str
    consent_id: str
    keys: fidelius.KeyMaterial = field(repr=False)
    key_expiry: datetime
    date_from: datetime
    date_to: datetime
    push_path: str


class ReceivedEntry(NamedTuple):
    """One decrypted ``entries[]`` item: compares equal to ``(reference, bundle)``."""

    care_context_reference: str
    bundle: dict[str, Any]


@dataclass(frozen=True)
class Transfer:
    """One accepted page of a data push.

    ``plaintexts`` holds each entry's decrypted text, in the order of ``entries``, for a
    test that wants the exact bytes the HIP encrypted rather than their parsed JSON.
    """

    transaction_id: str
    consent_id: str
    page_number: int
    page_count: int
    entries: list[ReceivedEntry]
    plaintexts: list[str]
    sender: fidelius.PeerKey  # the HIP's public key and nonce from the page's keyMaterial
    path: str
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Rejection:
    """A request the push endpoint refused, with the reason it answered."""

    status: int
    reason: str
    method: str
    path: str
    body: Any
    transaction_id: str | None
    at: float = field(default_factory=time.monotonic)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _bad(where: str, reason: str) -> _Refused:
    return _Refused(400, f"{where}: {reason}")


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class _Certificates:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _make_certificates(host: str) -> _Certificates:
    """A one-day authority and a server certificate for ``host`` (and localhost) it signs.

    Two certificates rather than one self-signed leaf: OpenSSL's stricter verification
    modes want a trust anchor that is a proper CA and a leaf that is not one.
    """
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OPDesk fake HIU test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [_host_name(host)]
    for extra in ("localhost", "127.0.0.1"):
        candidate = _host_name(extra)
        if candidate not in names:
            names.append(candidate)
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _Certificates(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=leaf_cert.public_bytes(serialization.Encoding.PEM),
        key_pem=leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


class _Server(ThreadingHTTPServer):
    """A threaded server whose TLS handshake happens in each connection's own thread, so a
    client that stalls (or distrusts the certificate) never holds up the accept loop."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            # wrap_socket detaches ``request``; the wrapped socket is ours to close.
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client gave up on the handshake: nothing to answer
        try:
            super().finish_request(wrapped, client_address)
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass  # the client went away mid-request
        finally:
            wrapped.close()


# --------------------------------------------------------------------------- the fake


class FakeHiu:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls: bool = True) -> None:
        self.host = host
        self.tls = tls
        self.received: list[Transfer] = []
        self.rejected: list[Rejection] = []
        self.transactions: dict[str, IssuedTransaction] = {}
        self.lock = threading.Lock()
        self._arrived = threading.Condition(self.lock)
        # What the first accepted page of each transaction fixed for the ones after it.
        self._first_page: dict[str, tuple[fidelius.PeerKey, int]] = {}
        self._latest: str | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._client_context: ssl.SSLContext | None = None
        self.server = _Server((host, port), self._handler())

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        if ":" in name:
            name = f"[{name}]"
        return f"{'https' if self.tls else 'http'}://{name}:{port}"

    def push_url(self, push_path: str = DEFAULT_PUSH_PATH) -> str:
        return self.url + push_path

    def start(self) -> FakeHiu:
        if self.tls:
            self._set_up_tls()
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> FakeHiu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _set_up_tls(self) -> None:
        made = _make_certificates(self.host)
        self._folder = tempfile.TemporaryDirectory(prefix="fake-hiu-")
        folder = Path(self._folder.name)
        (folder / "ca.pem").write_bytes(made.ca_pem)
        (folder / "server.pem").write_bytes(made.cert_pem)
        key_path = folder / "server.key"
        key_path.write_bytes(made.key_pem)
        key_path.chmod(0o600)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.minimum_version = ssl.TLSVersion.TLSv1_2
        server_context.load_cert_chain(folder / "server.pem", key_path)
        self.server.tls = server_context
        self._client_context = ssl.create_default_context(cafile=str(folder / "ca.pem"))

    @property
    def ca_path(self) -> Path:
        """The PEM of the authority that signed the fake's certificate (after ``start``)."""
        if self._folder is None:
            raise RuntimeError("the fake serves no TLS, or has not been started")
        return Path(self._folder.name) / "ca.pem"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the fake (and nothing else): httpx's ``verify=``."""
        if self._client_context is None:
            raise RuntimeError("the fake serves no TLS, or has not been started")
        return self._client_context

    # ------------------------------------------------------------------ the HI request

    def hi_request_body(
        self,
        *,
        consent_id: str,
        transaction_id: str,
        date_from: datetime,
        date_to: datetime,
        push_path: str = DEFAULT_PUSH_PATH,
        key_expiry: datetime | None = None,
        x509: bool = False,
    ) -> dict[str, Any]:
        """Issue a transaction (fresh keys) and give the HI request the gateway would post.

        ``key_expiry`` (default an hour from now) is the HIU key's ``dhPublicKey.expiry``;
        a push after it is refused. ``x509`` sends the public key in Bouncy Castle's X.509
        form, as some HIUs do. The same transaction id cannot be issued twice.
        """
        for name, moment in (("date_from", date_from), ("date_to", date_to)):
            if moment.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if not push_path.startswith("/"):
            raise ValueError("push_path must start with /")
        expiry = key_expiry or datetime.now(UTC) + DEFAULT_KEY_LIFETIME
        if expiry.tzinfo is None:
            raise ValueError("key_expiry must be timezone-aware")
        issued = IssuedTransaction(
            transaction_id=transaction_id,
            consent_id=consent_id,
            keys=fidelius.generate(),
            key_expiry=expiry,
            date_from=date_from,
            date_to=date_to,
            push_path=push_path,
        )
        with self.lock:
            if transaction_id in self.transactions:
                raise ValueError(f"transaction {transaction_id} was already issued")
            self.transactions[transaction_id] = issued
            self._latest = transaction_id
        return {
            "transactionId": transaction_id,
            "hiRequest": {
                "consent": {"id": consent_id},
                "dateRange": {"from": timestamp(date_from), "to": timestamp(date_to)},
                "dataPushUrl": self.push_url(push_path),
                "keyMaterial": self.key_material(transaction_id, x509=x509),
            },
        }

    def key_material(
        self,
        transaction_id: str | None = None,
        *,
        expiry: datetime | None = None,
        x509: bool = False,
    ) -> dict[str, Any]:
        """The ``keyMaterial`` of a transaction's HI request (by default the latest issued);
        ``expiry`` overrides the ``dhPublicKey.expiry`` written (not the one enforced)."""
        issued = self.transaction(transaction_id)
        return fidelius.key_material_json(
            issued.keys, expiry=expiry or issued.key_expiry, x509=x509
        )

    def transaction(self, transaction_id: str | None = None) -> IssuedTransaction:
        with self.lock:
            wanted = transaction_id if transaction_id is not None else self._latest
            if wanted is None or wanted not in self.transactions:
                raise LookupError(f"no transaction {wanted!r} was issued")
            return self.transactions[wanted]

    # ------------------------------------------------------------------ reading back

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Transfer]:
        """Block until ``count`` pages were accepted; all of them so far. AssertionError
        (naming what was refused meanwhile) if they do not arrive within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    refused = [f"{r.status} {r.reason}" for r in self.rejected]
                    raise AssertionError(
                        f"{len(self.received)} of {count} pages arrived in {timeout}s; "
                        f"refused meanwhile: {refused or 'none'}"
                    )
                self._arrived.wait(left)
            return list(self.received)

    def entries(self, transaction_id: str | None = None) -> list[ReceivedEntry]:
        """Every decrypted entry accepted so far (of one transaction, if named), in order."""
        with self.lock:
            return [
                entry
                for transfer in self.received
                if transaction_id is None or transfer.transaction_id == transaction_id
                for entry in transfer.entries
            ]

    # ------------------------------------------------------------------ the push

    def _accept_push(self, path: str, body: Any) -> Transfer:
        """The page's Transfer, or ``_Refused`` with the status and reason to answer."""
        with self.lock:
            push_paths = {t.push_path for t in self.transactions.values()}
        if path not in push_paths:
            raise _Refused(404, f"no data push endpoint at {path}")
        if not isinstance(body, Mapping):
            raise _bad("$", "the body must be a JSON object")
        transaction_id = body.get("transactionId")
        if not isinstance(transaction_id, str) or not transaction_id.strip():
            raise _bad("transactionId", "missing or not a string")
        with self.lock:
            issued = self.transactions.get(transaction_id)
        if issued is None:
            raise _Refused(404, f"transactionId: this HIU never requested {transaction_id}")
        if path != issued.push_path:
            raise _Refused(
                404, f"transaction {transaction_id} pushes to {issued.push_path}, not {path}"
            )
        if datetime.now(UTC) > issued.key_expiry:
            raise _bad("keyMaterial", f"the HIU's key expired at {timestamp(issued.key_expiry)}")

        page_number = _whole(body, "pageNumber")
        page_count = _whole(body, "pageCount")
        if not 1 <= page_number <= page_count:
            raise _bad("pageNumber", f"{page_number} is not between 1 and pageCount")
        sender = _sender_key(body.get("keyMaterial"))
        with self.lock:
            first = self._first_page.get(transaction_id)
        if first is not None:
            if first[0] != sender:
                raise _bad("keyMaterial", "differs from this transfer's earlier pages")
            if first[1] != page_count:
                raise _bad("pageCount", f"was {first[1]} on this transfer's earlier pages")

        raw_entries = body.get("entries")
        if not isinstance(raw_entries, list):
            raise _bad("entries", "missing or not an array")
        entries: list[ReceivedEntry] = []
        plaintexts: list[str] = []
        for index, raw in enumerate(raw_entries):
            where = f"entries[{index}]"
            reference, plaintext, bundle = self._open_entry(raw, where, issued, sender)
            entries.append(ReceivedEntry(reference, bundle))
            plaintexts.append(plaintext)

        transfer = Transfer(
            transaction_id=transaction_id,
            consent_id=issued.consent_id,
            page_number=page_number,
            page_count=page_count,
            entries=entries,
            plaintexts=plaintexts,
            sender=sender,
            path=path,
        )
        with self._arrived:
            self._first_page.setdefault(transaction_id, (sender, page_count))
            self.received.append(transfer)
            self._arrived.notify_all()
        return transfer

    @staticmethod
    def _open_entry(
        raw: Any, where: str, issued: IssuedTransaction, sender: fidelius.PeerKey
    ) -> tuple[str, str, dict[str, Any]]:
        if not isinstance(raw, Mapping):
            raise _bad(where, "must be an object")
        if "content" not in raw and "link" in raw:
            raise _bad(where, "carries a link; this HIU takes content only")
        fields: dict[str, str] = {}
        for name in ("content", "media", "checksum", "careContextReference"):
            value = raw.get(name)
            if not isinstance(value, str) or not value.strip():
                raise _bad(f"{where}.{name}", "missing, blank or not a string")
            fields[name] = value
        if fields["media"] != messages.FHIR_MEDIA:
            raise _bad(f"{where}.media", f"must be {messages.FHIR_MEDIA}")
        try:
            plaintext = fidelius.decrypt(
                fields["content"],
                receiver=issued.keys,
                sender_public_b64=sender.public_key,
                sender_nonce_b64=sender.nonce,
            )
        except ValueError as exc:
            raise _bad(f"{where}.content", f"cannot be decrypted: {exc}") from exc
        expected = messages.checksum(plaintext)
        if fields["checksum"] != expected:
            raise _bad(
                f"{where}.checksum",
                f"{fields['checksum'][:40]!r} is not the MD5 of the decrypted content",
            )
        try:
            bundle = json.loads(plaintext)
        except ValueError as exc:
            raise _bad(f"{where}.content", "decrypts to something that is not JSON") from exc
        if not isinstance(bundle, dict):
            raise _bad(f"{where}.content", "decrypts to JSON that is not an object")
        return fields["careContextReference"], plaintext, bundle

    def _refuse(self, status: int, reason: str, method: str, path: str, body: Any) -> None:
        transaction_id = body.get("transactionId") if isinstance(body, Mapping) else None
        with self.lock:
            self.rejected.append(
                Rejection(
                    status=status,
                    reason=reason,
                    method=method,
                    path=path,
                    body=body,
                    transaction_id=transaction_id if isinstance(transaction_id, str) else None,
                )
            )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, each call costs 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    fake._refuse(400, "$: the body is not JSON", "POST", path, None)
                    self._answer(400, "$: the body is not JSON")
                    return
                try:
                    fake._accept_push(path, body)
                except _Refused as refused:
                    fake._refuse(refused.status, refused.reason, "POST", path, body)
                    self._answer(refused.status, refused.reason)
                    return
                self._answer(202, None)

            def do_GET(self) -> None:
                self._not_allowed()

            def do_PUT(self) -> None:
                self._not_allowed()

            def do_PATCH(self) -> None:
                self._not_allowed()

            def do_DELETE(self) -> None:
                self._not_allowed()

            def _not_allowed(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                reason = f"{self.command} is not allowed; the data push is a POST"
                fake._refuse(405, reason, self.command, self.path.split("?", 1)[0], None)
                self._answer(405, reason, {"allow": "POST"})

            def _answer(
                self, status: int, reason: str | None, headers: dict[str, str] | None = None
            ) -> None:
                payload = b""
                if reason is not None:
                    payload = json.dumps({"error": {"message": reason}}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def _whole(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "missing or not a whole number")
    return value


def _sender_key(material: Any) -> fidelius.PeerKey:
    """The HIP's public key and nonce, checked; its expiry must be a time not yet past."""
    if not isinstance(material, Mapping):
        raise _bad("keyMaterial", "missing or not an object")
    try:
        sender = fidelius.read_key_material(material)
    except ValueError as exc:
        raise _bad("keyMaterial", str(exc)) from exc
    dh_public_key = material.get("dhPublicKey")
    expiry_text = dh_public_key.get("expiry") if isinstance(dh_public_key, Mapping) else None
    if not isinstance(expiry_text, str):
        raise _bad("keyMaterial.dhPublicKey.expiry", "missing or not a string")
    try:
        expiry = datetime.fromisoformat(expiry_text)
    except ValueError as exc:
        raise _bad("keyMaterial.dhPublicKey.expiry", "is not an ISO 8601 time") from exc
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)  # ABDM's times are UTC, written with or without Z
    if expiry < datetime.now(UTC):
        raise _bad("keyMaterial.dhPublicKey.expiry", f"{expiry_text} is already past")
    return sender
