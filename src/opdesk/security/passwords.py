"""Password hashing with argon2id (pwdlib)."""

from __future__ import annotations

from functools import cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_LENGTH = 10


@cache
def hasher(fast: bool = False) -> PasswordHash:
    """argon2id with the library's defaults; ``fast`` (tests only) uses tiny parameters."""
    if fast:
        return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    return PasswordHash((Argon2Hasher(),))


@cache
def _dummy_hash(fast: bool) -> str:
    return hasher(fast).hash("not-a-real-password-but-hashed-the-same-way")


def hash_password(password: str, *, fast: bool = False) -> str:
    return hasher(fast).hash(password)


def verify_password(password: str, stored: str | None, *, fast: bool = False) -> bool:
    """Constant work whether or not the account exists, so timing reveals nothing."""
    if stored is None:
        hasher(fast).verify(password, _dummy_hash(fast))
        return False
    return hasher(fast).verify(password, stored)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > 256:
        return "must be at most 256 characters"
    if password.strip() != password:
        return "must not start or end with spaces"
    return None
