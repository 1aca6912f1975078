"""Database URLs and engines: which URL forms tunebot accepts and how SQLite and PostgreSQL connections are tuned."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from .errors import StoreError

log = logging.getLogger(__name__)

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def normalize_url(url: str | URL) -> URL:
    """The async SQLAlchemy URL for what a user wrote.

    Accepted: a bare file path (SQLite), `sqlite:///path.db`, `sqlite+aiosqlite:///path.db`, `postgresql://...`,
    `postgres://...`, `postgresql+asyncpg://...` (libpq's `sslmode=` becomes asyncpg's `ssl=`). An in-memory SQLite
    database is refused: the store needs a file so that WAL, several connections and restarts all see one database.
    """
    if isinstance(url, str):
        text = url.strip()
        if not text:
            raise StoreError("database URL is empty; give a SQLite file path or a postgresql:// URL")
        if "://" not in text:
            # A bare path is the zero-setup default: an embedded SQLite file.
            text = "sqlite:///" + text
        try:
            parsed = make_url(text)
        except ArgumentError as exc:
            raise StoreError(f"database URL {url!r} is not a valid URL: {exc}") from None
    else:
        parsed = url
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "aiosqlite", "pysqlite"):
            raise StoreError(f"SQLite driver {driver!r} is not supported; use sqlite:/// or sqlite+aiosqlite:///")
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file::memory:"):
            raise StoreError("an in-memory SQLite database cannot be shared between connections or survive a "
                             "restart; give a file path, e.g. sqlite:///.tunebot/tunebot.db")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg", "psycopg2", "psycopg"):
            raise StoreError(f"PostgreSQL driver {driver!r} is not supported; use postgresql:// or "
                             "postgresql+asyncpg://")
        query = dict(parsed.query)
        if "sslmode" in query and "ssl" not in query:
            query["ssl"] = query.pop("sslmode")
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    raise StoreError(f"unsupported database URL scheme {parsed.drivername!r}: use a SQLite path "
                     "(sqlite:///path.db) or PostgreSQL (postgresql://user@host/db)")


def safe_url(url: URL) -> str:
    """The URL for messages and logs, password hidden."""
    return url.render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class Engines:
    """The engines behind one store. On SQLite writes go through one connection (SQLite has one writer anyway; one
    in-process queue beats busy-waiting on the file lock) and reads through a small pool of read-only connections that
    WAL lets run beside the writer. On PostgreSQL both are the same pooled engine."""

    dialect: str
    writer: AsyncEngine
    reader: AsyncEngine

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def _dumps(value: Any) -> str:
    # Sorted keys: equal objects give equal text, so SQLite can tell an unchanged outbox payload by comparison.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def create_engines(url: URL, *, schema: str | None = None, busy_timeout_s: float = 30.0, pool_size: int = 5,
                   readers: int = 4, connect_timeout_s: float = 10.0, echo: bool = False) -> Engines:
    if url.get_backend_name() == "sqlite":
        if schema is not None:
            raise StoreError("a schema name only applies to PostgreSQL; SQLite keeps one database per file")
        assert url.database is not None
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        writer = _sqlite_engine(url, busy_timeout_s=busy_timeout_s, immediate=True, pool_size=1, echo=echo)
        reader = _sqlite_engine(url, busy_timeout_s=busy_timeout_s, immediate=False, pool_size=readers, echo=echo)
        return Engines("sqlite", writer, reader)
    server_settings = {"application_name": "tunebot"}
    if schema is not None:
        if not _SCHEMA_NAME.match(schema):
            raise StoreError(f"schema name {schema!r} must be a plain identifier (letters, digits, '_')")
        # The schema comes first on the search path, so tables, the Alembic version table and every query use it.
        server_settings["search_path"] = schema
    engine = create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
        json_serializer=_dumps, connect_args={"server_settings": server_settings, "timeout": connect_timeout_s},
    )
    return Engines("postgresql", engine, engine)


def ensure_wal(path: str, busy_timeout_s: float) -> None:
    """Put a SQLite file in WAL mode (persistent, so once per file), creating it if missing. Blocking: run it in a
    thread. Switching needs a moment alone with the file, and SQLite answers "locked" at once instead of waiting
    when others are opening it too, so retry until the busy timeout."""
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.01
    while True:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                log.warning("SQLite refused WAL mode for %s (got %s); readers will block the writer", path, mode)
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
        finally:
            conn.close()
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


WRITER_AUTOCHECKPOINT = 4096  # WAL frames (pages; 16 MB at 4 KB) after which the writer itself checkpoints


class WalCheckpointer:
    """Copies a SQLite WAL back into the database file every `interval_s`, on its own connection and thread.

    PASSIVE copies without waiting for (or blocking) the writer. But under steady writes there are always new frames
    by the time it ends, so SQLite would never start the WAL over and the file would grow without bound
    (https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files). The writer therefore keeps an automatic
    checkpoint at `WRITER_AUTOCHECKPOINT` frames: run by the writer between two writes, it lets the next write start
    the WAL over, and it is short because this thread has already copied nearly every frame.
    """

    def __init__(self, path: str, *, interval_s: float = 0.05) -> None:
        self._path = path
        self._interval_s = interval_s
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="sqlite-checkpointer")

    def _passive(self) -> None:
        with self._lock:
            if self._conn is None:
                # mode=rw: never create an empty database where the store's file was removed.
                self._conn = sqlite3.connect(f"file:{quote(self._path)}?mode=rw", uri=True, isolation_level=None,
                                             check_same_thread=False)
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval_s)
                return
            try:
                # Shielded: a cancelled await would leave the thread using the connection that stop() closes.
                await asyncio.shield(asyncio.to_thread(self._passive))
            except sqlite3.Error as exc:  # busy or locked: the next round tries again
                log.debug("WAL checkpoint of %s skipped: %s", self._path, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with self._lock:  # a checkpoint thread left running by a cancelled task finishes first
            if self._conn is not None:  # the last connection to close checkpoints what is left
                self._conn.close()
                self._conn = None


def _sqlite_engine(url: URL, *, busy_timeout_s: float, immediate: bool, pool_size: int, echo: bool) -> AsyncEngine:
    engine = create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=0, pool_timeout=max(busy_timeout_s, 30.0),
        json_serializer=_dumps, connect_args={"timeout": busy_timeout_s},
        # Every use of a connection ends its own transaction (the store only uses `begin()` blocks), so the pool's
        # extra ROLLBACK at check-in is a wasted round trip to aiosqlite's thread: about half of an empty
        # transaction's cost. https://docs.sqlalchemy.org/en/20/core/pooling.html#reset-on-return
        pool_reset_on_return=None,
    )
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module: it would BEGIN lazily (DEFERRED) before the first
        # write, which lets two writers both read, then deadlock on upgrade with SQLITE_BUSY that no timeout helps.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            # WAL itself is a property of the file, set once by `ensure_wal` when the store opens.
            # NORMAL in WAL mode: a commit survives a process crash; only an OS crash or power loss can lose the
            # last transactions, never corrupt the file. FULL would fsync every commit on the webhook hot path.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            if immediate:
                # Checkpoints mostly run beside the writer (`WalCheckpointer`), not inside a commit: a commit that
                # also copies megabytes of WAL into the database stalls every webhook waiting on that group commit.
                cursor.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}")
                cursor.execute(f"PRAGMA journal_size_limit = {64 << 20}")
            else:
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a write transaction never fails
        # half-way; readers use DEFERRED and see one WAL snapshot for the whole transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
