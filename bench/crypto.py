"""Field encryption cost: encrypt + decrypt of one field, and one blind index."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import new_keyring


def _per_call_us(fn: Callable[[], object], calls: int, rounds: int = 5) -> tuple[float, float]:
    """Median and best of ``rounds`` timings, in microseconds per call."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(results), min(results)


def run(calls: int = 20_000) -> None:
    cipher = FieldCipher(StaticKeyring(new_keyring()))
    where = {
        "tenant_id": uuid.uuid4(),
        "table": "patients",
        "column": "phone_encrypted",
        "row_id": uuid.uuid4(),
    }
    phone = "+919876543210"
    sealed = cipher.encrypt(phone, **where)  # type: ignore[arg-type]

    def round_trip() -> object:
        return cipher.decrypt(cipher.encrypt(phone, **where), **where)  # type: ignore[arg-type]

    print("\nfield-level encryption (AES-256-GCM, one E.164 phone number)")
    for label, fn in (
        ("encrypt + decrypt", round_trip),
        ("encrypt", lambda: cipher.encrypt(phone, **where)),  # type: ignore[arg-type]
        ("decrypt", lambda: cipher.decrypt(sealed, **where)),  # type: ignore[arg-type]
        ("blind index (HMAC-SHA256)", lambda: cipher.blind_index(phone, purpose="phone")),
    ):
        median, best = _per_call_us(fn, calls)
        print(f"  {label:<28} {median:7.2f} µs/op median   {best:7.2f} µs/op best")
