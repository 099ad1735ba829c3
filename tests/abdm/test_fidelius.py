"""ABDM Fidelius encryption: the published vector, the curve, and the refusals.

No database: nothing here takes a fixture from tests/conftest.py.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import example, given, settings
from hypothesis import strategies as st

from opdesk.abdm import fidelius
from opdesk.abdm.fidelius import (
    GX,
    GY,
    A,
    B,
    KeyMaterial,
    N,
    P,
    decrypt,
    encrypt,
    generate,
    key_material_json,
    multiply,
    on_curve,
    read_key_material,
    shared_secret,
)

# The published example of the reference CLI: repository mgrmtech/fidelius-cli, README.md,
# sections "Key Material Generation", "Encryption" and "Decryption" (made by its Java /
# Bouncy Castle build). The requester is the HIU, the sender the HIP.
HIU_PRIVATE = "DMxHPri8d7IT23KgLk281zZenMfVHSdeamq0RhwlIBk="
HIU_PUBLIC = (
    "BAheD5rUqTy4V5xR4/6HWmYpopu5CO+KO8BECS0udNqUTSNo91TIqIIy1A4Vh+F94c+n9vAcwXU2bGcfsI5f69Y="
)
HIU_NONCE = "6uj1RdDUbcpI3lVMZvijkMC8Te20O4Bcyz0SyivX8Eg="
HIP_PRIVATE = "AYhVZpbVeX4KS5Qm/W0+9Ye2q3rnVVGmqRICmseWni4="
HIP_PUBLIC = (
    "BABVt+mpRLMXiQpIfEq6bj8hlXsdtXIxLsspmMgLNI1SR5mHgDVbjHO2A+U4QlMddGzqyEidzm1AkhtSxSO2Ahg="
)
HIP_NONCE = "lmXgblZwotx+DfBgKJF0lZXtAXgBEYr5khh79Zytr2Y="
ENCRYPTED = (
    "pzMvVZNNVtJzqPkkxcCbBUWgDEBy/mBXIeT2dJWI16ZAQnnXUb9lI+S4k8XK6mgZSKKSRIHkcNvJpllnBg548wUgav"
    "Ba0vCRRwdL6kY6Yw=="
)
# The README's command line reads "...never have been the Potter cottage's...", but its
# ciphertext authenticates (GCM tag) only as the sentence without "the": 63 bytes + 16 of tag
# = the 79 bytes above. dimagi/pyfidelius tests.py, checked against the same CLI, has this one.
PLAINTEXT = "Wormtail should never have been Potter cottage's secret keeper."
# The same vector's ECDH secret as dimagi/pyfidelius tests.py (test_compute_shared_secret) has it.
SECRET = "HZbc9a4h9kMAReILN5VtvbSYHWQpfIcrZ9pWHlQZUHs="
# The README's x509PublicKey of the HIU, one stray "q" at offset 226 taken out: as printed it is
# 413 characters, not valid base64 (Utils.java's own comment says such keys are 412).
HIU_X509 = (
    "MIIBMTCB6gYHKoZIzj0CATCB3gIBATArBgcqhkjOPQEBAiB/////////////////////////////////////////7TBE"
    "BCAqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqYSRShRAQge0Je0Je0Je0Je0Je0Je0Je0Je0Je0Je0JgtenHcQyGQE"
    "QQQqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq0kWiCuGaG4oIa04B7dLHdI0UySPU1+bXxhsinpxaJ+ztPZAiAQ"
    "AAAAAAAAAAAAAAAAAAAAFN753qL3nNZYEmMaXPXT7QIBCANCAAQIXg+a1Kk8uFecUeP+h1pmKaKbuQjvijvARAktLnTa"
    "lE0jaPdUyKiCMtQOFYfhfeHPp/bwHMF1NmxnH7COX+vW"
)

# RFC 7748 section 4.1: Curve25519's Montgomery A, order and the base point's v coordinate.
MONTGOMERY_A = 486662
BASE_V = 14781619447589544791020593568409986887264606134616475288964881837755586237401

# A pair whose shared secret starts with a zero byte (x < 2^248; one pair in 256), found
# offline: A = sha256(b"opdesk-fidelius-a") mod n against B = sha256(b"opdesk-fidelius-b-%d"
# % i) mod n for i = 0, 1, ...; the first hit is i = 381, secret 0x00645542cb5a...57298429.
ZERO_LEADING_A = 0x8E44DC1202F237CB6B4B68F09268BA1D64A1DBB2D1EB362E957CE524189A46B
ZERO_LEADING_B = 0x11AFD021B0624E3CCDE253C5E7CA325BA1BEDC8C9277530F889EE685239253C

ANY_NONCE = base64.b64encode(bytes(range(32))).decode()


def hiu() -> KeyMaterial:
    return KeyMaterial.from_base64(HIU_PRIVATE, HIU_NONCE)


def hip() -> KeyMaterial:
    return KeyMaterial.from_base64(HIP_PRIVATE, HIP_NONCE)


def public_of(d: int) -> str:
    return KeyMaterial(d, ANY_NONCE).public_key


# --- the published vector -------------------------------------------------------------------


def test_published_private_keys_give_the_published_public_keys() -> None:
    assert hiu().public_key == HIU_PUBLIC
    assert hip().public_key == HIP_PUBLIC


def test_private_keys_read_and_write_as_the_cli_does() -> None:
    assert hiu().private_key_b64 == HIU_PRIVATE
    assert hip().private_key_b64 == HIP_PRIVATE


def test_published_shared_secret_from_both_sides() -> None:
    secret = base64.b64decode(SECRET)
    assert shared_secret(hiu().private_key, HIP_PUBLIC) == secret
    assert shared_secret(hip().private_key, HIU_PUBLIC) == secret


def test_hiu_decrypts_the_published_ciphertext() -> None:
    got = decrypt(
        ENCRYPTED, receiver=hiu(), sender_public_b64=HIP_PUBLIC, sender_nonce_b64=HIP_NONCE
    )
    assert got == PLAINTEXT


def test_hip_encrypts_to_the_published_ciphertext() -> None:
    got = encrypt(
        PLAINTEXT, sender=hip(), receiver_public_b64=HIU_PUBLIC, receiver_nonce_b64=HIU_NONCE
    )
    assert got == ENCRYPTED


def test_published_x509_key_is_read_and_written() -> None:
    assert hiu().x509_public_key == HIU_X509
    got = encrypt(
        PLAINTEXT, sender=hip(), receiver_public_b64=HIU_X509, receiver_nonce_b64=HIU_NONCE
    )
    assert got == ENCRYPTED


# --- the curve --------------------------------------------------------------------------------


def test_curve_constants_are_curve25519_in_weierstrass_form() -> None:
    third = pow(3, -1, P)
    assert (3 - MONTGOMERY_A**2) * third % P == A
    assert (2 * MONTGOMERY_A**3 - 9 * MONTGOMERY_A) * pow(27, -1, P) % P == B
    assert (9 + MONTGOMERY_A * third) % P == GX  # the base point u = 9
    assert BASE_V == GY
    assert N == 2**252 + 27742317777372353535851937790883648493
    assert on_curve((GX, GY))
    assert multiply(N, (GX, GY)) is None


def _clamped(private: bytes) -> int:
    scalar = bytearray(private)
    scalar[0] &= 248
    scalar[31] = (scalar[31] & 127) | 64
    return int.from_bytes(scalar, "little")


def _weierstrass_x(montgomery_u: bytes) -> int:
    return (int.from_bytes(montgomery_u, "little") + MONTGOMERY_A * pow(3, -1, P)) % P


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_agrees_with_x25519_through_the_birational_map(a: bytes, b: bytes) -> None:
    # X25519 clamps its scalar; on the prime-order base point only the scalar mod n counts.
    d_a, d_b = _clamped(a) % N, _clamped(b) % N
    x_a, x_b = X25519PrivateKey.from_private_bytes(a), X25519PrivateKey.from_private_bytes(b)

    ours = base64.b64decode(public_of(d_a))
    assert int.from_bytes(ours[1:33], "big") == _weierstrass_x(x_a.public_key().public_bytes_raw())

    theirs = x_a.exchange(x_b.public_key())
    assert int.from_bytes(shared_secret(d_a, public_of(d_b)), "big") == _weierstrass_x(theirs)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(1, N - 1), st.integers(1, N - 1))
@example(ZERO_LEADING_A, ZERO_LEADING_B)
def test_ecdh_is_symmetric_and_always_32_bytes(d_a: int, d_b: int) -> None:
    one_way = shared_secret(d_a, public_of(d_b))
    assert one_way == shared_secret(d_b, public_of(d_a))
    assert len(one_way) == 32
    point = multiply(d_a * d_b % N, (GX, GY))
    assert point is not None
    assert int.from_bytes(one_way, "big") == point[0]


def test_a_leading_zero_byte_of_the_secret_is_kept() -> None:
    # Stripping it (as BigInteger-to-minimal-bytes code does) would break one transfer in 256.
    secret = shared_secret(ZERO_LEADING_A, public_of(ZERO_LEADING_B))
    assert len(secret) == 32
    assert secret[0] == 0

    sender = KeyMaterial(ZERO_LEADING_A, HIP_NONCE)
    got = encrypt(
        PLAINTEXT,
        sender=sender,
        receiver_public_b64=public_of(ZERO_LEADING_B),
        receiver_nonce_b64=HIU_NONCE,
    )
    mixed = bytes(
        x ^ y for x, y in zip(base64.b64decode(HIP_NONCE), base64.b64decode(HIU_NONCE), strict=True)
    )

    def sealed_with(ikm: bytes) -> str:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=mixed[:20], info=None).derive(ikm)
        return base64.b64encode(AESGCM(key).encrypt(mixed[-12:], PLAINTEXT.encode(), None)).decode()

    assert got == sealed_with(secret)
    assert got != sealed_with(secret.lstrip(b"\x00"))


# --- round trips --------------------------------------------------------------------------------


BUNDLE = '{"resourceType": "Bundle", "entry": [{"note": "रक्तचाप सामान्य"}]}'


def test_round_trip_with_fresh_keys() -> None:
    hiu_keys, hip_keys = generate(), generate()
    sealed = encrypt(
        BUNDLE,
        sender=hip_keys,
        receiver_public_b64=hiu_keys.public_key,
        receiver_nonce_b64=hiu_keys.nonce,
    )
    opened = decrypt(
        sealed,
        receiver=hiu_keys,
        sender_public_b64=hip_keys.public_key,
        sender_nonce_b64=hip_keys.nonce,
    )
    assert opened == BUNDLE


def test_round_trip_through_key_material_json() -> None:
    hiu_keys, hip_keys = generate(), generate()
    expiry = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    request = key_material_json(hiu_keys, expiry=expiry)
    to_hiu = read_key_material(request)
    sealed = encrypt(
        BUNDLE,
        sender=hip_keys,
        receiver_public_b64=to_hiu.public_key,
        receiver_nonce_b64=to_hiu.nonce,
    )
    push = key_material_json(hip_keys, expiry=expiry, x509=True)
    from_hip = read_key_material(push)
    opened = decrypt(
        sealed,
        receiver=hiu_keys,
        sender_public_b64=from_hip.public_key,
        sender_nonce_b64=from_hip.nonce,
    )
    assert opened == BUNDLE


def test_key_material_json_has_abdms_fields() -> None:
    keys = hip()
    ist = timezone(timedelta(hours=5, minutes=30))
    got = key_material_json(keys, expiry=datetime(2027, 3, 1, 17, 30, 0, 413000, tzinfo=ist))
    assert got == {
        "cryptoAlg": "ECDH",
        "curve": "Curve25519",
        "dhPublicKey": {
            "expiry": "2027-03-01T12:00:00.413Z",
            "parameters": "Curve25519/32byte random key",
            "keyValue": HIP_PUBLIC,
        },
        "nonce": HIP_NONCE,
    }


def test_private_key_stays_out_of_repr() -> None:
    assert str(hiu().private_key) not in repr(hiu())


# --- refusals -----------------------------------------------------------------------------------


def test_tampered_ciphertext_is_refused() -> None:
    raw = bytearray(base64.b64decode(ENCRYPTED))
    raw[5] ^= 1
    tampered = base64.b64encode(raw).decode()
    with pytest.raises(ValueError, match="failed authentication"):
        decrypt(tampered, receiver=hiu(), sender_public_b64=HIP_PUBLIC, sender_nonce_b64=HIP_NONCE)


def test_wrong_nonce_is_refused() -> None:
    with pytest.raises(ValueError, match="failed authentication"):
        decrypt(ENCRYPTED, receiver=hiu(), sender_public_b64=HIP_PUBLIC, sender_nonce_b64=ANY_NONCE)


def test_wrong_key_is_refused() -> None:
    with pytest.raises(ValueError, match="failed authentication"):
        decrypt(
            ENCRYPTED,
            receiver=hiu(),
            sender_public_b64=public_of(12345),
            sender_nonce_b64=HIP_NONCE,
        )


def test_nonce_of_the_wrong_length_is_refused() -> None:
    short = base64.b64encode(bytes(31)).decode()
    with pytest.raises(ValueError, match="peer nonce must be 32 bytes, got 31"):
        decrypt(ENCRYPTED, receiver=hiu(), sender_public_b64=HIP_PUBLIC, sender_nonce_b64=short)
    with pytest.raises(ValueError, match="own nonce must be 32 bytes"):
        KeyMaterial(5, short)


def test_point_off_the_curve_is_refused() -> None:
    raw = bytearray(base64.b64decode(HIU_PUBLIC))
    raw[-1] ^= 1
    off = base64.b64encode(raw).decode()
    with pytest.raises(ValueError, match="not a point on the curve"):
        encrypt(PLAINTEXT, sender=hip(), receiver_public_b64=off, receiver_nonce_b64=HIU_NONCE)


def test_point_of_small_order_is_refused() -> None:
    # Montgomery's (0, 0) has order 2; in Weierstrass form it is (A/3, 0).
    small = (MONTGOMERY_A * pow(3, -1, P) % P, 0)
    assert on_curve(small)
    key = base64.b64encode(b"\x04" + small[0].to_bytes(32, "big") + bytes(32)).decode()
    with pytest.raises(ValueError, match="prime-order subgroup"):
        shared_secret(hip().private_key, key)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not base64 at all!", "not valid base64"),
        (base64.b64encode(bytes(32)).decode(), "got 32 bytes"),  # a raw X25519 key
        (base64.b64encode(b"\x00").decode(), "got 1 bytes"),  # Bouncy Castle's infinity
        (base64.b64encode(b"\x02" + bytes(64)).decode(), "starting 02"),
        (base64.b64encode(b"\x04" + P.to_bytes(32, "big") + bytes(32)).decode(), "not a point"),
    ],
)
def test_malformed_public_keys_are_refused(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fidelius.decode_public_key(key)


@pytest.mark.parametrize("private_key", [0, N, -1])
def test_private_keys_out_of_range_are_refused(private_key: int) -> None:
    with pytest.raises(ValueError, match=r"private key must be an integer in \[1, n-1\]"):
        KeyMaterial(private_key, ANY_NONCE)


def test_negative_cli_private_key_is_refused() -> None:
    with pytest.raises(ValueError, match="private key must be"):
        # Java's BigInteger reads 0xff as -1, where an unsigned reading would give 255.
        KeyMaterial.from_base64(base64.b64encode(b"\xff").decode(), ANY_NONCE)


def test_key_material_of_another_curve_is_refused() -> None:
    payload = key_material_json(hiu(), expiry=datetime(2027, 3, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="curve 'Curve25519'"):
        read_key_material({**payload, "curve": "P-256"})
    with pytest.raises(ValueError, match="keyValue and nonce"):
        read_key_material({**payload, "dhPublicKey": None})


def test_naive_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        key_material_json(hiu(), expiry=datetime(2027, 3, 1))
