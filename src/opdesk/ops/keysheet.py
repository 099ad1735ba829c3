"""``opdesk keys export`` / ``import``: the keys, sealed with a passphrase, and a sheet to print.

A backup is sealed with the installation's keys and never carries them; these files are how
the keys survive the loss of the machine. The keyring is sealed with AES-256-GCM under a key
derived from the passphrase by scrypt (N = 2^17, r = 8: about 128 MiB and a fraction of a second
per try, so guessing a good passphrase is out of reach). The recovery sheet prints the same
sealed text as a QR code and as lines of text, with a fingerprint to tell keyrings apart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import textwrap
from datetime import UTC, datetime
from typing import Any

import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from fpdf import FPDF

from opdesk.security.crypto import Keyring
from opdesk.security.keys import keyring_from_file_doc, keyring_to_json

KIND = "opdesk-keys"
MIN_PASSPHRASE = 12
_SCRYPT = {"n": 2**17, "r": 8, "p": 1}
_AAD = b"opdesk keys v1"


class SealedKeysError(ValueError):
    """The sealed keys cannot be opened: wrong passphrase, damaged, or not such a file."""


def check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise SealedKeysError(
            f"the passphrase must be at least {MIN_PASSPHRASE} characters; four or five "
            "unrelated words are easy to keep and hard to guess"
        )


def fingerprint(ring: Keyring) -> str:
    """A short, stable name for a keyring (the same keys always give the same one)."""
    doc = json.dumps(keyring_to_json(ring), sort_keys=True).encode()
    digest = hashlib.sha256(doc).hexdigest()[:20].upper()
    return " ".join(digest[i : i + 4] for i in range(0, 20, 4))


def seal_keys(ring: Keyring, passphrase: str) -> dict[str, Any]:
    check_passphrase(passphrase)
    salt, nonce = os.urandom(16), os.urandom(12)
    plain = json.dumps(keyring_to_json(ring), sort_keys=True).encode()
    sealed = AESGCM(_derive(passphrase, salt, _SCRYPT)).encrypt(nonce, plain, _AAD)
    return {
        "kind": KIND,
        "version": 1,
        "kdf": {"name": "scrypt", **_SCRYPT, "salt": _b64(salt)},
        "nonce": _b64(nonce),
        "sealed": _b64(sealed),
        "fingerprint": fingerprint(ring),
        "madeAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def open_keys(doc: dict[str, Any], passphrase: str) -> Keyring:
    try:
        if doc.get("kind") != KIND or doc.get("version") != 1:
            raise SealedKeysError("this is not an OPDesk keys file")
        kdf = doc["kdf"]
        params = {"n": int(kdf["n"]), "r": int(kdf["r"]), "p": int(kdf["p"])}
        if params["n"] > 2**20 or params["r"] > 16 or params["p"] > 4:
            raise SealedKeysError("the keys file asks for an unreasonable scrypt cost")
        key = _derive(passphrase, base64.b64decode(kdf["salt"]), params)
        plain = AESGCM(key).decrypt(
            base64.b64decode(doc["nonce"]), base64.b64decode(doc["sealed"]), _AAD
        )
    except InvalidTag as exc:
        raise SealedKeysError("wrong passphrase, or the keys file was altered") from exc
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SealedKeysError):
            raise
        raise SealedKeysError(f"the keys file is damaged: {exc}") from exc
    return keyring_from_file_doc(json.loads(plain))


def _derive(passphrase: str, salt: bytes, params: dict[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, **params).derive(passphrase.encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def compact(doc: dict[str, Any]) -> str:
    """The sealed keys as one line: what the QR code and the text lines carry."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def recovery_sheet(doc: dict[str, Any], *, installation: str) -> bytes:
    """A one-page PDF to print and keep apart from the backups."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=False)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 10, "OPDesk key recovery sheet", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    for line in (
        f"Installation: {installation}",
        f"Keys fingerprint: {doc['fingerprint']}",
        f"Made: {doc['madeAt']}",
        "",
        "These are the keys that unlock this installation's backups and encrypted records,",
        "sealed with a passphrase. Without them a backup cannot be read. Keep this sheet",
        "away from the backups (a safe, a bank locker) and the passphrase somewhere else.",
        "To restore: save the text below (or scan the code) as keys.json, then run",
        "  opdesk keys import keys.json     and then     opdesk restore BACKUP",
    ):
        pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    text = compact(doc)
    code = segno.make(text, error="m", micro=False)
    side, top, left = 90.0, pdf.get_y() + 4, 60.0
    cell = side / len(code.matrix)
    for y, row in enumerate(code.matrix):
        for x, dark in enumerate(row):
            if dark:
                pdf.rect(left + x * cell, top + y * cell, cell, cell, style="F")
    pdf.set_y(top + side + 6)
    pdf.set_font("courier", "", 7)
    for line in textwrap.wrap(text, 100, break_on_hyphens=False):
        pdf.cell(0, 3.4, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
