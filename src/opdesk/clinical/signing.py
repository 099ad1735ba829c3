"""A clinic's Ed25519 key for prescriptions, and signing and checking canonical JSON.

The key is made on first use; its private half is kept encrypted with the field cipher
(bound to the clinic, the table, the column and the key's id). Retired keys stay, so
what they signed can still be checked. What is signed is the RFC 8785 canonical JSON of
a payload; its SHA-256 (hex) is kept beside the signature.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.clinical.models import SigningKey
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.security.crypto import FieldCipher

TABLE = "signing_keys"
COLUMN = "private_key_encrypted"


def canonical(payload: Any) -> bytes:
    return rfc8785.dumps(payload)


def digest(payload: Any) -> str:
    """SHA-256 (hex) of the canonical JSON."""
    return hashlib.sha256(canonical(payload)).hexdigest()


def _where(key: SigningKey) -> dict[str, Any]:
    return {"tenant_id": key.tenant_id, "table": TABLE, "column": COLUMN, "row_id": key.id}


def current_key(session: Session, ctx: RequestContext, cipher: FieldCipher) -> SigningKey:
    """The clinic's key in use, made (and audited) the first time it is needed.

    Two first uses at once: the unique index lets one key in; the other reads it.
    """
    found = _current(session)
    if found is not None:
        return found
    assert ctx.tenant_id is not None
    private = Ed25519PrivateKey.generate()
    key = SigningKey(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        public_key=private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ),
        created_at=ctx.now(),
    )
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key.private_key_encrypted = cipher.encrypt(raw, **_where(key))
    try:
        with session.begin_nested():
            session.add(key)
            session.flush()
    except IntegrityError:
        other = _current(session)
        assert other is not None
        return other
    audit.record(
        ctx,
        entity=TABLE,
        entity_id=key.id,
        action="create",
        diff={"added": {"publicKey": key.public_key.hex()}, "updated": {}, "removed": {}},
    )
    return key


def _current(session: Session) -> SigningKey | None:
    return session.execute(
        select(SigningKey).where(SigningKey.retired_at.is_(None))
    ).scalar_one_or_none()


def sign(cipher: FieldCipher, key: SigningKey, payload: Any) -> bytes:
    raw = cipher.decrypt(key.private_key_encrypted, **_where(key))
    return Ed25519PrivateKey.from_private_bytes(raw).sign(canonical(payload))


def verify(public_key: bytes, signature: bytes, payload: Any) -> bool:
    """Whether ``signature`` is the key's signature of exactly this payload."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, canonical(payload))
    except (InvalidSignature, ValueError):
        return False
    return True


def key_by_id(session: Session, key_id: uuid.UUID) -> SigningKey | None:
    return session.execute(select(SigningKey).where(SigningKey.id == key_id)).scalar_one_or_none()
