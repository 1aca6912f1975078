"""The Store: one object that opens (and migrates) the database and offers every storage operation of the bot."""

from __future__ import annotations

import asyncio
import contextvars
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from .base import translate_errors
from .deliveries import DeliveryStore
from .engine import Engines, WalCheckpointer, create_engines, ensure_wal, normalize_url, safe_url
from .errors import StoreError, StoreUnavailable
from .events import EventStore
from .grants import GrantStore
from .migrate import current_revision, lock, upgrade
from .outbox import OutboxStore
from .plans import PlanStore
from .results import ResultStore
from .runs import RunStore

# Set while a task holds a Store.transaction(): calling the Store itself then (instead of the transaction object)
# would wait for a second write connection that SQLite never gives, or silently write outside the transaction.
_IN_TRANSACTION: contextvars.ContextVar[bool] = contextvars.ContextVar("tunebot_store_tx", default=False)


class _Operations(DeliveryStore, RunStore, EventStore, ResultStore, GrantStore, OutboxStore, PlanStore):
    """Every storage operation; the Store and its transactions differ only in where connections come from."""


class Store(_Operations):
    """The bot's database. `store = await Store.open(url)` … `await store.close()` (or `async with`).

    Every method is one transaction of its own; `async with store.transaction() as tx:` groups several (e.g. mark a
    delivery done + create the run + enqueue the dispatch) so a crash keeps all or none of them. Timestamps are
    always passed in by the caller (aware datetimes, stored as UTC); the store never reads a clock.
    """

    def __init__(self, engines: Engines, url: URL, schema: str | None = None) -> None:
        self._engines = engines
        self._dialect = engines.dialect
        self._schema = schema
        self.url = url
        self._checkpointer: WalCheckpointer | None = None

    @classmethod
    async def open(cls, url: str | os.PathLike[str] | URL, *, schema: str | None = None, migrate: bool = True,
                   busy_timeout_s: float = 30.0, pool_size: int = 5, connect_timeout_s: float = 10.0,
                   echo: bool = False) -> Store:
        """Connect, check the database is usable and (by default) migrate it to the newest schema.

        `url`: a SQLite file path / `sqlite:///...` (created if missing, WAL mode) or `postgresql://...`.
        `schema`: PostgreSQL only, a schema to keep the tables in (created if missing).
        Raises StoreUnavailable (cannot connect / not a database) or SchemaError (migrated by a newer tunebot).
        """
        norm = normalize_url(os.fspath(url) if isinstance(url, os.PathLike) else url)
        engines = create_engines(norm, schema=schema, busy_timeout_s=busy_timeout_s, pool_size=pool_size,
                                 connect_timeout_s=connect_timeout_s, echo=echo)
        store = cls(engines, norm, schema)
        try:
            if engines.dialect == "sqlite":
                assert norm.database is not None
                async with store._connect_errors():
                    await asyncio.to_thread(ensure_wal, norm.database, busy_timeout_s)
            if migrate:
                await store.migrate()
            else:
                await store.schema_revision()
        except BaseException:
            await engines.dispose()
            raise
        if engines.dialect == "sqlite":
            assert norm.database is not None
            store._checkpointer = WalCheckpointer(norm.database)
            store._checkpointer.start()
        return store

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.stop()
        await self._engines.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self._dialect

    async def migrate(self) -> str:
        """Run `alembic upgrade head` in one transaction (a no-op at head); returns the revision."""
        async with self._connect_errors(), self._engines.writer.begin() as conn:
            await conn.run_sync(lock)
            if self._schema is not None:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"'))
            return await conn.run_sync(upgrade)

    async def schema_revision(self) -> str | None:
        """The database's schema revision (None when never migrated)."""
        async with self._connect_errors(), self._engines.reader.connect() as conn:
            return await conn.run_sync(current_revision)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (for health checks)."""
        async with self._connect_errors(), self._engines.reader.connect() as conn:
            await conn.execute(select(1))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """One write transaction for several operations: commits at the end, rolls back on any exception.

        Use the yielded object (it has every Store method), not the Store, until the block ends. On SQLite the
        transaction holds the database's write lock for its whole duration: keep it short, no network calls inside.
        """
        if _IN_TRANSACTION.get():
            raise StoreError("Store.transaction() is already open in this task; use its transaction object")
        token = _IN_TRANSACTION.set(True)
        try:
            async with translate_errors("transaction", os_errors=False), self._engines.writer.begin() as conn:
                yield StoreTransaction(conn, self._dialect)
        finally:
            _IN_TRANSACTION.reset(token)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        self._refuse_inside_transaction()
        async with translate_errors("database write"), self._engines.writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        self._refuse_inside_transaction()
        async with translate_errors("database read"), self._engines.reader.begin() as conn:
            yield conn

    @staticmethod
    def _refuse_inside_transaction() -> None:
        if _IN_TRANSACTION.get():
            raise StoreError("a Store method was called inside Store.transaction(); call it on the transaction "
                             "object instead (async with store.transaction() as tx: await tx.…)")

    @asynccontextmanager
    async def _connect_errors(self) -> AsyncIterator[None]:
        where = safe_url(self.url)
        try:
            yield
        except StoreError:
            raise
        except DBAPIError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
            raise StoreUnavailable(f"cannot use the database at {where}: {detail}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot use the database at {where}: {exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot connect to the database at {where}: {exc}") from exc


class StoreTransaction(_Operations):
    """The Store's operations bound to one open transaction (see `Store.transaction`)."""

    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self._conn = conn
        self._dialect = dialect

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        yield self._conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        yield self._conn
