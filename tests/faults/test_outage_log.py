"""``faults.Outage``: one log line when the database goes, one when it is back, and the
dead connections found just after it came back are not a new outage.
"""

from __future__ import annotations

import logging

import pytest

from opdesk.faults import Classified, Fault, Outage

GONE = Classified(Fault.UNAVAILABLE)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "opdesk.database"]


def test_an_outage_is_two_lines_with_its_length_and_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = Outage(clock)
    caplog.set_level(logging.WARNING, "opdesk.database")
    outage.refused(Classified(Fault.BUSY), "/api/v1/patients")  # busy is not an outage
    assert not outage.down
    for _ in range(7):
        outage.refused(GONE, "/api/v1/patients")
    assert outage.down
    clock.now += 8.0
    outage.connected()
    outage.connected()
    assert not outage.down
    assert outage.ended == 1
    said = lines(caplog)
    assert len(said) == 2
    assert said[0].startswith("database unavailable")
    assert said[1] == "database back after 8.0 s; 7 requests were answered 503 meanwhile"


def test_a_stale_connection_just_after_the_end_is_not_a_new_outage_but_later_one_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage(clock)
    caplog.set_level(logging.WARNING, "opdesk.database")
    outage.refused(GONE, "/a")
    clock.now += 3.0
    outage.connected()
    clock.now += 1.0
    outage.refused(GONE, "/a")  # a connection left over from before the restart
    assert not outage.down
    clock.now += 10.0
    outage.refused(GONE, "/a")  # gone again, for real
    assert outage.down
    assert [m.split(" after")[0].split(":")[0] for m in lines(caplog)] == [
        "database unavailable",
        "database back",
        "database unavailable",
    ]
