"""The keys sealed with a passphrase, and the printed sheet that carries the same."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from opdesk.ops.keysheet import (
    SealedKeysError,
    compact,
    fingerprint,
    open_keys,
    recovery_sheet,
    seal_keys,
)
from opdesk.security.keys import new_keyring

PASSPHRASE = "tamarind kettle harbour violet"


def test_sealed_keys_open_only_with_their_passphrase() -> None:
    ring = new_keyring()
    doc = seal_keys(ring, PASSPHRASE)
    assert open_keys(doc, PASSPHRASE) == ring
    assert doc["fingerprint"] == fingerprint(ring) != fingerprint(new_keyring())
    for secret in (ring.signing_seed, ring.blind_index_key, *ring.data_keys.values()):
        assert secret.hex() not in compact(doc)
    with pytest.raises(SealedKeysError, match="wrong passphrase"):
        open_keys(doc, PASSPHRASE + " ")
    altered = {**doc, "sealed": doc["sealed"][:-6] + "AAAA=="}
    with pytest.raises(SealedKeysError, match="wrong passphrase, or the keys file was altered"):
        open_keys(altered, PASSPHRASE)
    with pytest.raises(SealedKeysError, match="not an OPDesk keys file"):
        open_keys({"kind": "something else"}, PASSPHRASE)
    greedy = {**doc, "kdf": {**doc["kdf"], "n": 2**30}}
    with pytest.raises(SealedKeysError, match="unreasonable scrypt cost"):
        open_keys(greedy, PASSPHRASE)


def test_a_short_passphrase_is_refused() -> None:
    with pytest.raises(SealedKeysError, match="at least 12 characters"):
        seal_keys(new_keyring(), "short pass")


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_the_printed_sheet_carries_the_sealed_keys_as_text() -> None:
    ring = new_keyring()
    doc = seal_keys(ring, PASSPHRASE)
    pdf = recovery_sheet(doc, installation="https://clinic.example.in")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sheet.pdf"
        path.write_bytes(pdf)
        words = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout
    assert f"Keys fingerprint: {doc['fingerprint']}" in words
    assert "https://clinic.example.in" in words and "opdesk keys import" in words
    # The text lines, joined, are the sealed keys: typed back in, they open.
    lines = [line.strip() for line in words.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith('{"fingerprint"'))
    block = []
    for line in lines[start:]:
        if not line:
            break
        block.append(line)
    typed = "".join(block)
    assert typed == compact(doc)
    assert open_keys(json.loads(typed), PASSPHRASE) == ring
