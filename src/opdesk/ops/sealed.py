"""A sealed stream: the bytes of a backup, encrypted and authenticated in chunks.

Layout: ``MAGIC``, a 4-byte header length, the header (JSON: format, key id, nonce prefix,
chunk size, when), then chunks, each a 4-byte length and AES-256-GCM ciphertext with its
tag. Chunk ``n`` uses the nonce ``prefix || n`` and authenticates the header's hash, ``n``
and whether it is the last chunk, so a chunk edited, dropped, moved or cut off at the end is
refused; nothing unauthenticated is ever handed to the reader.

The key is derived from one of the keyring's data keys (named in the header), so the
archive needs the clinic's keys to be read and never carries them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from opdesk.security.crypto import Keyring

MAGIC = b"OPDESK-BACKUP\x00"
FORMAT = 1
CHUNK = 1 << 20
_LENGTH = struct.Struct(">I")
_MAX_HEADER = 4096
_TAG = 16


class SealError(ValueError):
    """The stream is not a sealed backup, is damaged or altered, or needs keys we lack."""


@dataclass(frozen=True)
class Header:
    key_id: int
    nonce_prefix: bytes
    chunk: int
    created_at: str

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "keyId": self.key_id,
            "noncePrefix": self.nonce_prefix.hex(),
            "chunk": self.chunk,
            "createdAt": self.created_at,
        }
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Header:
        try:
            doc = json.loads(raw)
            if doc["format"] != FORMAT:
                raise SealError(f"backup format {doc['format']} is not one this release reads")
            header = cls(
                int(doc["keyId"]),
                bytes.fromhex(doc["noncePrefix"]),
                int(doc["chunk"]),
                doc["createdAt"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, SealError):
                raise
            raise SealError("the backup's header is damaged") from exc
        if len(header.nonce_prefix) != 8 or not 0 < header.chunk <= 64 * CHUNK:
            raise SealError("the backup's header is damaged")
        return header


def _key(ring: Keyring, header: Header) -> AESGCM:
    data_key = ring.data_keys.get(header.key_id)
    if data_key is None:
        raise SealError(
            f"this backup was sealed with data key {header.key_id}, which the keys in use do "
            f"not hold (they hold {sorted(ring.data_keys)}): restore with the keys exported "
            "when it was made (`opdesk keys import`)"
        )
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=header.nonce_prefix, info=b"opdesk backup v1"
    )
    return AESGCM(hkdf.derive(data_key))


def _aad(header_hash: bytes, index: int, last: bool) -> bytes:
    return header_hash + struct.pack(">QB", index, last)


class SealedWriter:
    """A write-only stream that seals what it is given into ``out``; ``close`` seals the end."""

    def __init__(self, out: BinaryIO, ring: Keyring, *, chunk: int = CHUNK) -> None:
        self._out = out
        self.header = Header(
            ring.active_key_id, os.urandom(8), chunk, datetime.now(UTC).isoformat()
        )
        raw = self.header.to_bytes()
        out.write(MAGIC + _LENGTH.pack(len(raw)) + raw)
        self._hash = hashlib.sha256(MAGIC + raw).digest()
        self._aead = _key(ring, self.header)
        self._buffer = bytearray()
        self._index = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) > self.header.chunk:  # keep one back: it may be the last
            self._seal(bytes(self._buffer[: self.header.chunk]), last=False)
            del self._buffer[: self.header.chunk]
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self.closed = True

    def _seal(self, plain: bytes, *, last: bool) -> None:
        nonce = self.header.nonce_prefix + struct.pack(">I", self._index)
        sealed = self._aead.encrypt(nonce, plain, _aad(self._hash, self._index, last))
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._index += 1


class SealedReader:
    """A read-only stream of what ``SealedWriter`` sealed; raises ``SealError`` on any damage."""

    def __init__(self, source: BinaryIO, ring: Keyring) -> None:
        self._in = source
        self.header, raw = _read_header(source)
        self._hash = hashlib.sha256(MAGIC + raw).digest()
        self._aead = _key(ring, self.header)
        self._index = 0
        self._pending = self._next_sealed()
        self._plain = b""
        self._at = 0  # how much of _plain has been read (never re-sliced: tar reads 10 KiB)
        self._done = False

    def _next_sealed(self) -> bytes | None:
        head = self._in.read(_LENGTH.size)
        if not head:
            return None
        if len(head) < _LENGTH.size:
            raise SealError("the backup is cut off (a chunk's length is incomplete)")
        (size,) = _LENGTH.unpack(head)
        if not _TAG <= size <= self.header.chunk + _TAG:
            raise SealError("the backup is damaged (a chunk has an impossible length)")
        sealed = self._in.read(size)
        if len(sealed) < size:
            raise SealError("the backup is cut off (its last chunk is incomplete)")
        return sealed

    def _open_next(self) -> None:
        if self._pending is None:
            raise SealError("the backup is cut off (its sealed end is missing)")
        following = self._next_sealed()
        last = following is None
        nonce = self.header.nonce_prefix + struct.pack(">I", self._index)
        try:
            self._plain = self._aead.decrypt(
                nonce, self._pending, _aad(self._hash, self._index, last)
            )
            self._at = 0
        except InvalidTag as exc:
            if self._index == 0:
                raise SealError(
                    "the backup was altered or damaged, or the keys in use are not the ones it "
                    f"was sealed with (data key {self.header.key_id})"
                ) from exc
            raise SealError(
                f"the backup was altered or damaged (chunk {self._index} fails its check)"
            ) from exc
        self._index += 1
        self._pending = following
        self._done = last

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            left = len(self._plain) - self._at
            if not left:
                if self._done:
                    break
                self._open_next()
                continue
            end = len(self._plain) if wanted is None else self._at + min(wanted, left)
            take = self._plain[self._at : end]
            self._at = end
            parts.append(take)
            if wanted is not None:
                wanted -= len(take)
        return b"".join(parts)


def read_header(source: BinaryIO) -> Header:
    """The header of a sealed backup (readable without keys: which key, when)."""
    return _read_header(source)[0]


def _read_header(source: BinaryIO) -> tuple[Header, bytes]:
    if source.read(len(MAGIC)) != MAGIC:
        raise SealError("this is not an OPDesk backup")
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise SealError("the backup is cut off (its header is incomplete)")
    (size,) = _LENGTH.unpack(head)
    if size > _MAX_HEADER:
        raise SealError("the backup's header is damaged")
    raw = source.read(size)
    if len(raw) < size:
        raise SealError("the backup is cut off (its header is incomplete)")
    return Header.from_bytes(raw), raw
