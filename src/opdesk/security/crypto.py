"""Field-level encryption, blind indexes and signatures.

Ciphertext layout (all of it stored in one ``bytea`` column)::

    0x01 | key id (uint32, big-endian) | nonce (12 bytes) | AES-256-GCM ciphertext + tag

The associated data is ``tenant|table|column|row id``: a ciphertext copied to another
row, column or tenant fails authentication instead of decrypting to the wrong place.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import rfc8785
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_VERSION = 1
_HEADER = struct.Struct(">BI")
NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """The ciphertext is damaged, belongs elsewhere, or its key is unknown."""


@dataclass(frozen=True)
class Keyring:
    """Data keys by id (one active), the blind-index key and the signing key."""

    data_keys: dict[int, bytes]
    active_key_id: int
    blind_index_key: bytes
    signing_seed: bytes

    def __post_init__(self) -> None:
        if self.active_key_id not in self.data_keys:
            raise ValueError(f"active key {self.active_key_id} is not in the keyring")
        for kid, key in self.data_keys.items():
            if len(key) != KEY_BYTES:
                raise ValueError(f"data key {kid} must be {KEY_BYTES} bytes")
        if len(self.blind_index_key) < KEY_BYTES:
            raise ValueError(f"the blind-index key must be at least {KEY_BYTES} bytes")
        if len(self.signing_seed) != KEY_BYTES:
            raise ValueError(f"the signing key must be a {KEY_BYTES}-byte Ed25519 seed")

    def derived_key(self, purpose: str) -> bytes:
        """A sub-key for a named purpose (e.g. signing cookies), independent of the others."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return hkdf.derive(self.signing_seed)


class KeyringSource(Protocol):
    def current(self) -> Keyring: ...

    def reload(self) -> Keyring: ...


@dataclass
class StaticKeyring:
    """A keyring that never changes while the process runs (keys from the environment)."""

    keyring: Keyring

    def current(self) -> Keyring:
        return self.keyring

    def reload(self) -> Keyring:
        return self.keyring


def associated_data(tenant_id: uuid.UUID, table: str, column: str, row_id: uuid.UUID) -> bytes:
    return f"{tenant_id}|{table}|{column}|{row_id}".encode()


def key_id_of(ciphertext: bytes) -> int:
    if len(ciphertext) < _HEADER.size + NONCE_BYTES + 16:
        raise DecryptionError("ciphertext is too short")
    version, kid = _HEADER.unpack_from(ciphertext)
    if version != FORMAT_VERSION:
        raise DecryptionError(f"unknown ciphertext format {version}")
    return int(kid)


def key_id_prefix(kid: int) -> bytes:
    """The first bytes of every ciphertext made with key ``kid`` (for SQL filters)."""
    return _HEADER.pack(FORMAT_VERSION, kid)


class FieldCipher:
    """Encrypts and decrypts single column values bound to their row."""

    def __init__(self, source: KeyringSource) -> None:
        self._source = source

    @property
    def keyring(self) -> Keyring:
        return self._source.current()

    def encrypt(
        self,
        plaintext: str | bytes,
        *,
        tenant_id: uuid.UUID,
        table: str,
        column: str,
        row_id: uuid.UUID,
    ) -> bytes:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        ring = self.keyring
        nonce = os.urandom(NONCE_BYTES)
        aad = associated_data(tenant_id, table, column, row_id)
        sealed = AESGCM(ring.data_keys[ring.active_key_id]).encrypt(nonce, data, aad)
        return key_id_prefix(ring.active_key_id) + nonce + sealed

    def decrypt(
        self,
        ciphertext: bytes,
        *,
        tenant_id: uuid.UUID,
        table: str,
        column: str,
        row_id: uuid.UUID,
    ) -> bytes:
        kid = key_id_of(ciphertext)
        key = self._key(kid)
        start = _HEADER.size
        nonce, sealed = ciphertext[start : start + NONCE_BYTES], ciphertext[start + NONCE_BYTES :]
        try:
            return AESGCM(key).decrypt(
                nonce, sealed, associated_data(tenant_id, table, column, row_id)
            )
        except InvalidTag:
            raise DecryptionError(
                f"{table}.{column} of row {row_id} failed authentication"
            ) from None

    def decrypt_str(self, ciphertext: bytes, **where: Any) -> str:
        return self.decrypt(ciphertext, **where).decode()

    def _key(self, kid: int) -> bytes:
        key = self.keyring.data_keys.get(kid)
        if key is None:
            # Another process may have rotated keys since we loaded them.
            key = self._source.reload().data_keys.get(kid)
        if key is None:
            raise DecryptionError(f"data key {kid} is not in the keyring")
        return key

    # ------------------------------------------------------------------ blind index

    def blind_index(self, normalized: str, *, purpose: str) -> bytes:
        """HMAC-SHA256 of an already-normalised value; equal inputs give equal indexes.

        ``purpose`` separates index spaces, so a phone's index never equals an email's.
        """
        message = f"{purpose}\x00{normalized}".encode()
        return hmac.new(self.keyring.blind_index_key, message, hashlib.sha256).digest()

    # ------------------------------------------------------------------ signatures

    def sign(self, payload: Any) -> bytes:
        """Ed25519 signature over the RFC 8785 canonical JSON of ``payload``."""
        key = Ed25519PrivateKey.from_private_bytes(self.keyring.signing_seed)
        return key.sign(rfc8785.dumps(payload))

    def public_key(self) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(self.keyring.signing_seed)
        return key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )


def verify_signature(public_key: bytes, signature: bytes, payload: Any) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, rfc8785.dumps(payload))
    except InvalidSignature:
        return False
    return True
