"""ABDM "Fidelius" encryption: how an HIP encrypts the health records it pushes to an HIU.

The scheme, as the reference implementation runs it (NHA/mgrmtech ``fidelius-cli``, Java
with Bouncy Castle; repository mgrmtech/fidelius-cli, files ``src/main/java/com/mgrm/
fidelius/Utils.java``, ``encryption/EncryptionController.java``, ``decryption/
DecryptionController.java``, ``keypairgen/KeyPairGenController.java``, and its guide
``abdm/Encryption and Decryption Implementation Guidelines for FHIR data in ABDM.md``):

1. Each side makes an ECDH key pair on Bouncy Castle's ``curve25519``: Curve25519 rewritten
   in short Weierstrass form (not X25519's Montgomery form), and a 32-byte random nonce.
   Public keys travel as base64 of the uncompressed point ``0x04 || X || Y`` (65 bytes);
   some HIUs send and expect Bouncy Castle's X.509 encoding instead, which is read too.
2. The shared secret is the x-coordinate of ``d * Q``, always 32 bytes big-endian (Bouncy
   Castle's ``X9IntegerConverter`` pads it to the field length: a leading zero byte stays).
3. ``nonce_sender XOR nonce_receiver``: its first 20 bytes are the HKDF salt, its last 12
   bytes the AES-GCM IV.
4. HKDF-SHA256(secret, salt, empty info) gives a 32-byte AES-256-GCM key; the bundle's
   UTF-8 bytes are encrypted with a 128-bit tag and no associated data, and sent as
   base64(ciphertext || tag).

Python's integers are not constant-time, so the ladder below only keeps the same sequence
of operations for every scalar; keys here are ephemeral (one pair per data transfer).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Bouncy Castle's curve25519 (bcgit/bc-java: core/src/main/java/org/bouncycastle/math/ec/
# custom/djb/Curve25519.java for a, b, n, h; core/src/main/java/org/bouncycastle/crypto/ec/
# CustomNamedCurves.java for G). RFC 7748 section 4.1 gives the same curve in Montgomery form
# (A = 486662): a = (3 - A^2) / 3, b = (2A^3 - 9A) / 27 and x = u + A/3, which the tests check.
P = 2**255 - 19
A = 0x2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA984914A144
B = 0x7B425ED097B425ED097B425ED097B425ED097B425ED097B4260B5E9C7710C864
N = 0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED
COFACTOR = 8
GX = 0x2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAD245A
GY = 0x20AE19A1B8A086B4E01EDD2C7748D14C923D4D7E6D7C61B229E9C5A27ECED3D9

FIELD_BYTES = 32
NONCE_BYTES = 32
SALT_BYTES = 20
IV_BYTES = 12
KEY_BYTES = 32
POINT_BYTES = 1 + 2 * FIELD_BYTES


def _field(n: int) -> bytes:
    return n.to_bytes(FIELD_BYTES, "big")


# Bouncy Castle's SubjectPublicKeyInfo for this curve, everything before the BIT STRING's
# point: id-ecPublicKey with the curve spelt out (version 1, prime field p, a, b, G, n,
# cofactor, no seed), since curve25519 has no OID there. A key in this form is this prefix +
# the 65-byte point. DER tags: 30 SEQUENCE, 06 OID (id-ecPublicKey, prime-field), 02 INTEGER,
# 04 OCTET STRING, 03 BIT STRING (0 unused bits); every length here is fixed.
X509_PREFIX = b"".join(
    (
        bytes.fromhex("30 82 01 31  30 81 ea  06 07 2a8648ce3d0201  30 81 de  02 01 01"),
        bytes.fromhex("30 2b  06 07 2a8648ce3d0101  02 20"),
        _field(P),
        bytes.fromhex("30 44  04 20"),
        _field(A),
        bytes.fromhex("04 20"),
        _field(B),
        bytes.fromhex("04 41 04"),
        _field(GX),
        _field(GY),
        bytes.fromhex("02 20"),
        _field(N),
        bytes((0x02, 0x01, COFACTOR)),
        bytes.fromhex("03 42 00"),
    )
)

# The field names and fixed values of ABDM's keyMaterial (HIU's request, HIP's data push).
CRYPTO_ALG = "ECDH"
CURVE = "Curve25519"
KEY_PARAMETERS = "Curve25519/32byte random key"

Affine = tuple[int, int]
_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)
_LADDER_BITS = N.bit_length()  # every scalar used (1..n) fits; n itself for the subgroup check


def _double(p: _Jacobian) -> _Jacobian:
    # Z3 = 2*Y*Z comes out 0 for the point at infinity and for points of order 2, as it should.
    x, y, z = p
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = (3 * x * x + A * zz * zz) % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    return x3, y3, 2 * y * z % P


def _add(p: _Jacobian, q: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p
    x2, y2, z2 = q
    if z1 == 0:
        return q
    if z2 == 0:
        return p
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    h, r = (u2 - u1) % P, (s2 - s1) % P
    if h == 0:
        # Same x. The ladder meets P + (-P) at the last step of n*Q (the subgroup check) and
        # of (n-1)*Q; never P + P (its two points differ by Q), kept for a complete addition.
        return _double(p) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    return x3, y3, h * z1 * z2 % P


def _to_affine(p: _Jacobian) -> Affine | None:
    x, y, z = p
    if z == 0:
        return None
    z_inv = pow(z, -1, P)
    z_inv2 = z_inv * z_inv % P
    return x * z_inv2 % P, y * z_inv2 * z_inv % P


def multiply(k: int, point: Affine) -> Affine | None:
    """``k * point`` by a Montgomery ladder; ``None`` is the point at infinity."""
    if not 0 <= k < 1 << _LADDER_BITS:
        raise ValueError(f"scalar out of range: {k.bit_length()} bits")
    r0, r1 = _INFINITY, (point[0], point[1], 1)
    # The same add-and-double at every bit, whatever its value; only the operands swap.
    for i in reversed(range(_LADDER_BITS)):
        if (k >> i) & 1:
            r0, r1 = _add(r0, r1), _double(r1)
        else:
            r0, r1 = _double(r0), _add(r0, r1)
    return _to_affine(r0)


def on_curve(point: Affine) -> bool:
    x, y = point
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _encode_point(point: Affine) -> bytes:
    return b"\x04" + _field(point[0]) + _field(point[1])


def decode_public_key(public_key_b64: str) -> Affine:
    """The point of a received public key, checked as Bouncy Castle checks it on decoding.

    Bouncy Castle (``ECCurve.decodePoint`` -> ``ECPoint.isValid``) refuses a point off the
    curve and, the cofactor being 8, one outside the prime-order subgroup (``n * Q`` must be
    infinity); an unchecked point could leak bits of our private key (small-subgroup attack).
    """
    raw = _b64decode(public_key_b64, "public key")
    if len(raw) == len(X509_PREFIX) + POINT_BYTES and raw.startswith(X509_PREFIX):
        raw = raw[len(X509_PREFIX) :]
    if len(raw) != POINT_BYTES or raw[0] != 0x04:
        raise ValueError(
            "public key must be an uncompressed point (0x04 || X || Y, 65 bytes) or its "
            f"X.509 form on curve25519; got {len(raw)} bytes starting {raw[:1].hex() or 'empty'}"
        )
    point = (
        int.from_bytes(raw[1 : 1 + FIELD_BYTES], "big"),
        int.from_bytes(raw[1 + FIELD_BYTES :], "big"),
    )
    if not on_curve(point):
        raise ValueError("public key is not a point on the curve (Curve25519, Weierstrass form)")
    if multiply(N, point) is not None:
        raise ValueError("public key is not in the curve's prime-order subgroup")
    return point


def _check_private_key(private_key: int) -> None:
    if not 1 <= private_key < N:
        raise ValueError("private key must be an integer in [1, n-1] for curve25519")


def _decode_nonce(nonce_b64: str, whose: str) -> bytes:
    nonce = _b64decode(nonce_b64, f"{whose} nonce")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"{whose} nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    return nonce


@dataclass(frozen=True)
class KeyMaterial:
    """One side's ephemeral key pair and nonce for one data transfer.

    ``public_key`` is derived from ``private_key``, so the two can never disagree; it is the
    base64 uncompressed point that goes into ``keyMaterial.dhPublicKey.keyValue``.
    """

    private_key: int = field(repr=False)
    nonce: str
    public_key: str = field(init=False)

    def __post_init__(self) -> None:
        _check_private_key(self.private_key)
        _decode_nonce(self.nonce, "own")
        point = multiply(self.private_key, (GX, GY))
        assert point is not None  # 1 <= d < n and G has order n
        object.__setattr__(self, "public_key", _b64encode(_encode_point(point)))

    @classmethod
    def from_base64(cls, private_key_b64: str, nonce_b64: str) -> KeyMaterial:
        """Key material saved as fidelius-cli writes it (its ``privateKey`` and ``nonce``)."""
        raw = _b64decode(private_key_b64, "private key")
        if not raw:
            raise ValueError("private key is empty")
        # Java's BigInteger.toByteArray(): big-endian two's complement, so a set top bit
        # would be a negative number, never a valid key.
        return cls(int.from_bytes(raw, "big", signed=True), nonce_b64)

    @property
    def private_key_b64(self) -> str:
        """The private key as fidelius-cli writes it, so either tool can read the other's."""
        d = self.private_key
        return _b64encode(d.to_bytes(d.bit_length() // 8 + 1, "big"))

    @property
    def x509_public_key(self) -> str:
        """The public key in Bouncy Castle's X.509 encoding, for HIUs that accept only that."""
        return _b64encode(X509_PREFIX + _b64decode(self.public_key, "public key"))


def generate() -> KeyMaterial:
    """A fresh key pair and nonce; make one per data transfer, never reuse it."""
    return KeyMaterial(secrets.randbelow(N - 1) + 1, _b64encode(os.urandom(NONCE_BYTES)))


def shared_secret(private_key: int, peer_public_b64: str) -> bytes:
    """The ECDH x-coordinate, 32 bytes big-endian whatever its leading bytes."""
    _check_private_key(private_key)
    point = multiply(private_key, decode_public_key(peer_public_b64))
    if point is None:  # unreachable for a checked key; Bouncy Castle refuses it likewise
        raise ValueError("ECDH gave the point at infinity")
    return _field(point[0])


def _session_key(secret: bytes, own_nonce_b64: str, peer_nonce_b64: str) -> tuple[bytes, bytes]:
    own = _decode_nonce(own_nonce_b64, "own")
    peer = _decode_nonce(peer_nonce_b64, "peer")
    mixed = bytes(a ^ b for a, b in zip(own, peer, strict=True))
    salt, iv = mixed[:SALT_BYTES], mixed[-IV_BYTES:]
    key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=None).derive(secret)
    return key, iv


def encrypt(
    plaintext: str, *, sender: KeyMaterial, receiver_public_b64: str, receiver_nonce_b64: str
) -> str:
    """What the HIP puts in ``entries[].content``: base64(ciphertext || tag)."""
    secret = shared_secret(sender.private_key, receiver_public_b64)
    key, iv = _session_key(secret, sender.nonce, receiver_nonce_b64)
    return _b64encode(AESGCM(key).encrypt(iv, plaintext.encode("utf-8"), None))


def decrypt(
    ciphertext_b64: str, *, receiver: KeyMaterial, sender_public_b64: str, sender_nonce_b64: str
) -> str:
    """The plaintext of ``entries[].content``; ValueError if it fails authentication."""
    secret = shared_secret(receiver.private_key, sender_public_b64)
    key, iv = _session_key(secret, receiver.nonce, sender_nonce_b64)
    data = _b64decode(ciphertext_b64, "ciphertext")
    try:
        plain = AESGCM(key).decrypt(iv, data, None)
    except InvalidTag as exc:
        raise ValueError(
            "ciphertext failed authentication (GCM tag): tampered, or wrong key or nonce"
        ) from exc
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("decrypted data is not UTF-8 text") from exc


def _abdm_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("expiry must be a timezone-aware datetime")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def key_material_json(
    material: KeyMaterial, *, expiry: datetime, x509: bool = False
) -> dict[str, Any]:
    """The ``keyMaterial`` object of ABDM's health-information request and data push.

    ``x509`` sends the public key in Bouncy Castle's X.509 form, which some HIUs require.
    """
    return {
        "cryptoAlg": CRYPTO_ALG,
        "curve": CURVE,
        "dhPublicKey": {
            "expiry": _abdm_timestamp(expiry),
            "parameters": KEY_PARAMETERS,
            "keyValue": material.x509_public_key if x509 else material.public_key,
        },
        "nonce": material.nonce,
    }


class PeerKey(NamedTuple):
    public_key: str
    nonce: str


def read_key_material(payload: Mapping[str, Any]) -> PeerKey:
    """The peer's public key and nonce from a received ``keyMaterial``, both checked."""
    if payload.get("cryptoAlg") != CRYPTO_ALG or payload.get("curve") != CURVE:
        raise ValueError(
            f"keyMaterial must use cryptoAlg {CRYPTO_ALG!r} and curve {CURVE!r}; got "
            f"{payload.get('cryptoAlg')!r} and {payload.get('curve')!r}"
        )
    dh_public_key = payload.get("dhPublicKey")
    key_value = dh_public_key.get("keyValue") if isinstance(dh_public_key, Mapping) else None
    nonce = payload.get("nonce")
    if not isinstance(key_value, str) or not isinstance(nonce, str):
        raise ValueError("keyMaterial needs dhPublicKey.keyValue and nonce as strings")
    decode_public_key(key_value)
    _decode_nonce(nonce, "peer")
    return PeerKey(key_value, nonce)
