"""Field-level encryption, blind index and signatures."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opdesk.security.crypto import (
    DecryptionError,
    FieldCipher,
    Keyring,
    StaticKeyring,
    key_id_of,
    verify_signature,
)
from opdesk.security.keys import new_keyring
from tests.factories import Where

WHERE = Where(
    tenant_id=uuid.uuid4(), table="patients", column="phone_encrypted", row_id=uuid.uuid4()
)


def test_round_trip_keeps_text_including_indian_scripts(cipher: FieldCipher) -> None:
    for text in ("+919876543210", "पेनिसिलिन से एलर्जी", "பென்சிலின்", ""):
        sealed = cipher.encrypt(text, **WHERE)
        assert text.encode() not in sealed or text == ""
        assert cipher.decrypt_str(sealed, **WHERE) == text


@given(st.binary(max_size=2048))
def test_round_trip_any_bytes(data: bytes) -> None:
    cipher = FieldCipher(StaticKeyring(_RING))
    assert cipher.decrypt(cipher.encrypt(data, **WHERE), **WHERE) == data


_RING = new_keyring()


def test_same_plaintext_encrypts_differently_each_time(cipher: FieldCipher) -> None:
    assert cipher.encrypt("same", **WHERE) != cipher.encrypt("same", **WHERE)


def test_ciphertext_carries_the_active_key_id(cipher: FieldCipher) -> None:
    sealed = cipher.encrypt("x", **WHERE)
    assert key_id_of(sealed) == cipher.keyring.active_key_id


@pytest.mark.parametrize("position", [0, 3, 6, 20, -1])
def test_any_flipped_byte_is_detected(cipher: FieldCipher, position: int) -> None:
    sealed = bytearray(cipher.encrypt("allergic to sulfa drugs", **WHERE))
    sealed[position] ^= 0x01
    with pytest.raises(DecryptionError):
        cipher.decrypt(bytes(sealed), **WHERE)


@pytest.mark.parametrize(
    "moved",
    [
        {"row_id": uuid.uuid4()},
        {"column": "email_encrypted"},
        {"table": "users"},
        {"tenant_id": uuid.uuid4()},
    ],
    ids=["other-row", "other-column", "other-table", "other-tenant"],
)
def test_ciphertext_copied_elsewhere_does_not_decrypt(
    cipher: FieldCipher, moved: dict[str, object]
) -> None:
    sealed = cipher.encrypt("+919876543210", **WHERE)
    elsewhere = Where(**{**WHERE, **moved})  # type: ignore[typeddict-item]
    with pytest.raises(DecryptionError, match="failed authentication"):
        cipher.decrypt(sealed, **elsewhere)


def test_truncated_or_unknown_format_is_rejected(cipher: FieldCipher) -> None:
    sealed = cipher.encrypt("x", **WHERE)
    with pytest.raises(DecryptionError, match="too short"):
        cipher.decrypt(sealed[:10], **WHERE)
    with pytest.raises(DecryptionError, match="unknown ciphertext format"):
        cipher.decrypt(b"\x09" + sealed[1:], **WHERE)


def test_unknown_key_id_is_rejected() -> None:
    ring = new_keyring()
    other = Keyring({7: b"k" * 32}, 7, ring.blind_index_key, ring.signing_seed)
    sealed = FieldCipher(StaticKeyring(other)).encrypt("x", **WHERE)
    with pytest.raises(DecryptionError, match="data key 7 is not in the keyring"):
        FieldCipher(StaticKeyring(ring)).decrypt(sealed, **WHERE)


def test_old_keys_still_decrypt_after_a_new_key_becomes_active() -> None:
    ring = new_keyring()
    old = FieldCipher(StaticKeyring(ring)).encrypt("old data", **WHERE)
    rotated = Keyring({**ring.data_keys, 2: b"n" * 32}, 2, ring.blind_index_key, ring.signing_seed)
    cipher = FieldCipher(StaticKeyring(rotated))
    assert cipher.decrypt_str(old, **WHERE) == "old data"
    assert key_id_of(cipher.encrypt("new data", **WHERE)) == 2


def test_blind_index_is_deterministic_keyed_and_purpose_bound(cipher: FieldCipher) -> None:
    a = cipher.blind_index("+919876543210", purpose="phone")
    assert a == cipher.blind_index("+919876543210", purpose="phone")
    assert len(a) == 32
    assert a != cipher.blind_index("+919876543211", purpose="phone")
    assert a != cipher.blind_index("+919876543210", purpose="email")
    other = FieldCipher(StaticKeyring(new_keyring()))
    assert a != other.blind_index("+919876543210", purpose="phone")


def test_signatures_verify_and_detect_changes(cipher: FieldCipher) -> None:
    payload = {"drug": "Amoxicillin", "dose": "500 mg", "days": 5}
    signature = cipher.sign(payload)
    public = cipher.public_key()
    assert verify_signature(public, signature, payload)
    # Key order does not matter: the canonical form is signed.
    assert verify_signature(public, signature, dict(reversed(payload.items())))
    assert not verify_signature(public, signature, {**payload, "days": 50})
    assert not verify_signature(
        FieldCipher(StaticKeyring(new_keyring())).public_key(), signature, payload
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"active_key_id": 9}, "active key 9"),
        ({"data_keys": {1: b"short"}}, "must be 32 bytes"),
        ({"blind_index_key": b"short"}, "blind-index key"),
        ({"signing_seed": b"short"}, "signing key"),
    ],
)
def test_malformed_keyrings_are_refused(change: dict[str, object], message: str) -> None:
    ring = new_keyring()
    fields = {
        "data_keys": ring.data_keys,
        "active_key_id": ring.active_key_id,
        "blind_index_key": ring.blind_index_key,
        "signing_seed": ring.signing_seed,
        **change,
    }
    with pytest.raises(ValueError, match=message):
        Keyring(**fields)  # type: ignore[arg-type]
