"""Ids are UUIDv7: version 7, RFC 9562 variant, ordered by creation time."""

from __future__ import annotations

import time
import uuid

from opdesk.db import new_id


def test_new_ids_are_version_7_with_the_rfc_variant() -> None:
    value = new_id()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_ids_carry_their_creation_millisecond_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= first.int >> 80 <= after
    assert first < second


def test_ids_do_not_repeat() -> None:
    assert len({new_id() for _ in range(50_000)}) == 50_000
