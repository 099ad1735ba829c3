"""Where the keys come from: the environment in production, a key file in development."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opdesk.config import Settings
from opdesk.security.crypto import KEY_BYTES, Keyring, KeyringSource, StaticKeyring

log = logging.getLogger(__name__)

KEYRING_FILE = "keyring.json"


class KeyConfigError(RuntimeError):
    """Keys are missing or malformed; the message says which and how to fix it."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(name: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise KeyConfigError(f"{name} is not valid base64") from exc


def keyring_from_json(doc: dict[str, Any], blind: bytes, seed: bytes) -> Keyring:
    try:
        keys = {int(k): _unb64(f"data key {k}", v) for k, v in doc["keys"].items()}
        return Keyring(keys, int(doc["active"]), blind, seed)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyConfigError(f"master keys are malformed: {exc}") from exc


def keyring_from_file_doc(doc: dict[str, Any]) -> Keyring:
    """A keyring from the document ``keyring_to_json`` wrote (the key file's shape)."""
    try:
        blind = _unb64("blind_index_key", doc["blind_index_key"])
        seed = _unb64("signing_key", doc["signing_key"])
    except (KeyError, TypeError) as exc:
        raise KeyConfigError(f"the keyring is malformed: {exc}") from exc
    return keyring_from_json(doc, blind, seed)


def keyring_to_json(ring: Keyring) -> dict[str, Any]:
    return {
        "active": ring.active_key_id,
        "keys": {str(k): _b64(v) for k, v in sorted(ring.data_keys.items())},
        "blind_index_key": _b64(ring.blind_index_key),
        "signing_key": _b64(ring.signing_seed),
    }


def new_keyring() -> Keyring:
    return Keyring({1: os.urandom(KEY_BYTES)}, 1, os.urandom(KEY_BYTES), os.urandom(KEY_BYTES))


@dataclass
class FileKeyring:
    """A keyring kept in a JSON file (mode 0600); reloaded when another process rotates it."""

    path: Path
    _ring: Keyring | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def current(self) -> Keyring:
        if self._ring is None:
            return self.reload()
        return self._ring

    def reload(self) -> Keyring:
        with self._lock:
            self._ring = keyring_from_file_doc(json.loads(self.path.read_text()))
            return self._ring

    def save(self, ring: Keyring) -> None:
        """Atomically replace the file so a crash never leaves half a keyring."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(keyring_to_json(ring), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        with self._lock:
            self._ring = ring

    def add_active_key(self) -> int:
        """Add a fresh data key and make it the one new ciphertexts use."""
        ring = self.reload()
        kid = max(ring.data_keys) + 1
        keys = {**ring.data_keys, kid: os.urandom(KEY_BYTES)}
        self.save(Keyring(keys, kid, ring.blind_index_key, ring.signing_seed))
        return kid


def load_keyring(settings: Settings) -> KeyringSource:
    """The environment's keys when all are set; else the dev key file (generated once)."""
    master, blind_key, signing = (
        settings.master_keys,
        settings.blind_index_key,
        settings.signing_key,
    )
    if master is not None and blind_key is not None and signing is not None:
        try:
            doc = json.loads(master.get_secret_value())
        except json.JSONDecodeError as exc:
            raise KeyConfigError("OPDESK_MASTER_KEYS is not valid JSON") from exc
        blind = _unb64("OPDESK_BLIND_INDEX_KEY", blind_key.get_secret_value())
        seed = _unb64("OPDESK_SIGNING_KEY", signing.get_secret_value())
        return StaticKeyring(keyring_from_json(doc, blind, seed))
    given = {
        "OPDESK_MASTER_KEYS": master,
        "OPDESK_BLIND_INDEX_KEY": blind_key,
        "OPDESK_SIGNING_KEY": signing,
    }
    if settings.env == "prod":
        missing = ", ".join(name for name, v in given.items() if v is None)
        raise KeyConfigError(
            f"production start refused: {missing} not set. Generate keys with "
            "`opdesk keys generate` and provide them through the environment."
        )
    return dev_keyring(settings.keys_dir / KEYRING_FILE)


def keys_in_place(settings: Settings) -> bool:
    """Whether keys exist already (environment or key file), without making new ones."""
    return settings.master_keys is not None or (settings.keys_dir / KEYRING_FILE).exists()


def dev_keyring(path: Path) -> FileKeyring:
    store = FileKeyring(path)
    if not path.exists():
        store.save(new_keyring())
        log.warning("generated DEVELOPMENT keys in %s; never use them for real patient data", path)
    return store


def keyring_env(ring: Keyring) -> dict[str, str]:
    """The environment variables that carry ``ring`` (for ``opdesk keys generate``)."""
    doc = keyring_to_json(ring)
    return {
        "OPDESK_MASTER_KEYS": json.dumps({"active": doc["active"], "keys": doc["keys"]}),
        "OPDESK_BLIND_INDEX_KEY": doc["blind_index_key"],
        "OPDESK_SIGNING_KEY": doc["signing_key"],
    }
