"""The connections of the hot paths: an async psycopg pool, one statement per request.

A hot path (DESIGN, "Hot paths") is one SQL function that checks the session, sets the
clinic, writes and audits. It runs as one autocommit statement, so its transaction is
exactly that statement: nothing is held open across an ``await``, and a connection goes
back to the pool the moment the answer arrives. Connections log in as the app role (or
switch to it), so row-level security and grants apply as they do to the ORM's sessions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from opdesk import faults
from opdesk.db import APP_ROLE, Database, libpq_url
from opdesk.faults import OUTAGE, Unavailable


class HotPool:
    """One pool per event loop: a server process has one loop; a test may run several
    clients of one app, each with its loop, and a pool's connections belong to the loop
    that opened them.
    """

    def __init__(self, db: Database, *, size: int, wait_seconds: float) -> None:
        self._db = db
        self._size = size
        self._wait = wait_seconds
        self._pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool[Any]] = {}
        # Per loop: how many outages had ended when its pool was opened (OUTAGE.ended),
        # whether one of its connections just broke, and old pools still closing.
        self._outages_seen: dict[asyncio.AbstractEventLoop, int] = {}
        self._broken: set[asyncio.AbstractEventLoop] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def open(self) -> None:
        await self._pool()

    async def close(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    async def row(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """The one row ``statement`` returns, run as its own transaction."""
        pool = await self._pool_after_outages()
        # While the database is down, a request does not wait the pool's whole timeout
        # for a connection the pool cannot open: it is answered at once.
        wait = _WHILE_DOWN if OUTAGE.down else None
        try:
            async with pool.connection(timeout=wait) as conn:
                try:
                    return await _row(conn, statement, params)
                except psycopg.OperationalError:
                    if conn.broken:  # not a cancelled statement: the connection died
                        self._broken.add(asyncio.get_running_loop())
                    raise
        except PoolTimeout:
            if wait is not None:
                raise Unavailable("the database is not answering") from None
            raise

    async def _pool_after_outages(self) -> AsyncConnectionPool[Any]:
        """This loop's pool, fit for use after a fault.

        A pool that lived through an outage holds dead connections, each of which would
        fail the request that takes it, and it reopens its connections on a backoff that
        doubles with every failed try (seconds after the database is back). So once an
        outage has ended the pool is replaced by a new one, which connects at once, and
        the old one closes in the background. A single broken connection (its backend
        ended) has its idle siblings tested instead.
        """
        loop = asyncio.get_running_loop()
        pool = await self._pool()
        if OUTAGE.down:
            return pool
        if self._outages_seen.setdefault(loop, OUTAGE.ended) != OUTAGE.ended:
            self._outages_seen[loop] = OUTAGE.ended
            self._broken.discard(loop)
            del self._pools[loop]
            closing = asyncio.create_task(pool.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            return await self._pool()
        if loop in self._broken:
            self._broken.discard(loop)
            await pool.check()
        return pool

    async def _pool(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        # One opening at a time, and a pool is handed out only once it is open.
        async with self._opening.setdefault(loop, asyncio.Lock()):
            pool = self._pools.get(loop)
            if pool is None:
                pool = AsyncConnectionPool(
                    libpq_url(self._db.app_url or self._db.owner_url),
                    min_size=1,
                    max_size=self._size,
                    timeout=self._wait,
                    open=False,
                    kwargs={"autocommit": True, **self._db.connect_options()},
                    configure=self._configure,
                    name="opdesk-hot",
                )
                await pool.open()
                self._pools[loop] = pool
        return pool

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        if self._db.app_url is None:  # the owner's login: act as the app role
            await conn.execute(f"SET ROLE {APP_ROLE}")
        OUTAGE.connected()


async def _row(
    conn: AsyncConnection[Any], statement: str, params: tuple[Any, ...]
) -> tuple[Any, ...]:
    # The statement is its own transaction: once sent, a broken connection leaves it
    # unknown whether it committed.
    faults.commit_sent()
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(statement, params)
    row = await cursor.fetchone()
    assert row is not None
    return row


# How long a request waits for a connection while the database is known to be down: the
# pool keeps trying in the background, and a connection it opens ends the outage.
_WHILE_DOWN = 0.5
