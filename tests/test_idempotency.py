"""Idempotency keys: concurrent retries act once; a failed first attempt leaves the key free."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from opdesk import idempotency
from opdesk.db import Database
from opdesk.errors import Conflict
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import ctx_for


class Answer(BaseModel):
    n: int


def attempt(db: Database, tenant: Tenant, key: str, body: Any, act: Any) -> Any:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return idempotency.run_once(
            session,
            ctx,
            actor_key="desk-1",
            key=key,
            operation="book",
            body=body,
            act=act,
            status_code=201,
        )


def test_two_concurrent_requests_with_one_key_act_once(db: Database, tenant: Tenant) -> None:
    acted: list[int] = []

    def slow_act() -> Answer:
        acted.append(1)
        time.sleep(0.3)  # the retry arrives while the first is still working
        return Answer(n=len(acted))

    results: list[Any] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        results.append(attempt(db, tenant, "k-1", {"slot": 1}, slow_act))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acted) == 1
    replayed = [r for r in results if isinstance(r, idempotency.Replay)]
    assert len(replayed) == 1 and replayed[0].body == {"n": 1}


def test_a_failed_first_attempt_leaves_the_key_unused(db: Database, tenant: Tenant) -> None:
    def refuse() -> Answer:
        raise Conflict("slot taken")

    with pytest.raises(Conflict):
        attempt(db, tenant, "k-2", {"slot": 2}, refuse)
    done = attempt(db, tenant, "k-2", {"slot": 2}, lambda: Answer(n=7))
    assert done == Answer(n=7)
    with pytest.raises(Conflict, match="different request"):
        attempt(db, tenant, "k-2", {"slot": 3}, lambda: Answer(n=8))
