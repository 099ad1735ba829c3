"""The sealed stream a backup is written in: what it gives back, and every damage it refuses."""

from __future__ import annotations

import io
import os
import struct

import pytest

from opdesk.ops.sealed import MAGIC, SealedReader, SealedWriter, SealError, read_header
from opdesk.security.crypto import Keyring
from opdesk.security.keys import new_keyring

CHUNK = 64


def seal(data: bytes, ring: Keyring, *, writes: int = 7) -> bytes:
    out = io.BytesIO()
    writer = SealedWriter(out, ring, chunk=CHUNK)
    for start in range(0, len(data), writes):
        writer.write(data[start : start + writes])
    writer.close()
    return out.getvalue()


def unseal(sealed: bytes, ring: Keyring, *, reads: int = 5) -> bytes:
    reader = SealedReader(io.BytesIO(sealed), ring)
    parts = []
    while part := reader.read(reads):
        parts.append(part)
    return b"".join(parts)


def chunk_offsets(sealed: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each sealed chunk's body."""
    at = len(MAGIC)
    (size,) = struct.unpack(">I", sealed[at : at + 4])
    at += 4 + size
    found = []
    while at < len(sealed):
        (size,) = struct.unpack(">I", sealed[at : at + 4])
        found.append((at + 4, size))
        at += 4 + size
    return found


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 3])
def test_what_is_sealed_comes_back_whole(size: int) -> None:
    ring = new_keyring()
    data = os.urandom(size)
    sealed = seal(data, ring)
    assert size < 16 or data not in sealed  # long enough not to turn up by chance
    assert unseal(sealed, ring) == data
    assert SealedReader(io.BytesIO(sealed), ring).read() == data


def test_the_header_names_the_key_and_is_readable_without_it() -> None:
    ring = new_keyring()
    header = read_header(io.BytesIO(seal(b"x", ring)))
    assert header.key_id == ring.active_key_id and header.chunk == CHUNK


def test_a_flipped_byte_anywhere_in_a_chunk_is_refused() -> None:
    ring = new_keyring()
    sealed = bytearray(seal(os.urandom(3 * CHUNK), ring))
    for offset, length in chunk_offsets(bytes(sealed)):
        for where in (offset, offset + length // 2, offset + length - 1):
            damaged = bytearray(sealed)
            damaged[where] ^= 0x01
            with pytest.raises(SealError, match="altered or damaged"):
                unseal(bytes(damaged), ring)


def test_an_edited_header_is_refused() -> None:
    ring = new_keyring()
    sealed = seal(os.urandom(100), ring)
    edited = sealed.replace(b'"createdAt": "2', b'"createdAt": "1', 1)
    assert edited != sealed and len(edited) == len(sealed)
    with pytest.raises(SealError, match="altered or damaged"):
        unseal(edited, ring)


def test_a_backup_cut_at_a_chunk_boundary_is_refused() -> None:
    ring = new_keyring()
    sealed = seal(os.urandom(4 * CHUNK), ring)
    offset, length = chunk_offsets(sealed)[1]
    with pytest.raises(SealError, match="altered or damaged"):
        unseal(sealed[: offset + length], ring)  # the second chunk thinks it is not the last


def test_a_backup_cut_inside_a_chunk_is_refused() -> None:
    ring = new_keyring()
    sealed = seal(os.urandom(4 * CHUNK), ring)
    with pytest.raises(SealError, match="cut off"):
        unseal(sealed[:-3], ring)


def test_swapped_chunks_are_refused() -> None:
    ring = new_keyring()
    sealed = seal(os.urandom(4 * CHUNK), ring)
    (a, la), (b, lb) = chunk_offsets(sealed)[:2]
    swapped = sealed[: a - 4] + sealed[b - 4 : b + lb] + sealed[a - 4 : a + la] + sealed[b + lb :]
    with pytest.raises(SealError, match="altered or damaged"):
        unseal(swapped, ring)


def test_other_keys_are_told_which_key_the_backup_needs() -> None:
    sealed = seal(b"records", new_keyring())
    with pytest.raises(SealError, match=r"keys in use are not the ones it was sealed with \(data"):
        unseal(sealed, new_keyring())  # same key id, other bytes: caught by the first chunk
    rotated = new_keyring()
    other = Keyring({2: os.urandom(32)}, 2, rotated.blind_index_key, rotated.signing_seed)
    with pytest.raises(SealError, match=r"data key 1, .* \(they hold \[2\]\)"):
        unseal(sealed, other)


def test_something_else_is_not_taken_for_a_backup() -> None:
    with pytest.raises(SealError, match="not an OPDesk backup"):
        SealedReader(io.BytesIO(b"PGDMP\x01\x0e\x00" + os.urandom(100)), new_keyring())
