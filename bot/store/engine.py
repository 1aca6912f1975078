"""Database URLs and engines: which URL forms tunebot accepts and how SQLite and PostgreSQL connections are tuned."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from .bodies import BodyLog
from .errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

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
    WAL lets run beside the writer. On PostgreSQL both are the same pooled engine. `fast` (SQLite only) is the inline
    connection of the webhook hot path (see `SQLiteFastPath`)."""

    dialect: str
    writer: AsyncEngine
    reader: AsyncEngine
    fast: SQLiteFastPath | None = None

    async def dispose(self) -> None:
        if self.fast is not None:
            await asyncio.to_thread(self.fast.close)
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
        fast = SQLiteFastPath(str(Path(url.database).expanduser()), busy_timeout_s=busy_timeout_s)
        return Engines("sqlite", writer, reader, fast)
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


def _sqlite_engine(url: URL, *, busy_timeout_s: float, immediate: bool, pool_size: int, echo: bool) -> AsyncEngine:
    engine = create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=0, pool_timeout=max(busy_timeout_s, 30.0),
        json_serializer=_dumps, connect_args={"timeout": busy_timeout_s},
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
            if not immediate:
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a write transaction never fails
        # half-way; readers use DEFERRED and see one WAL snapshot for the whole transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# --- the SQLite hot path --------------------------------------------------------------------------------------------

CHECKPOINT_NICENESS = 10  # the checkpointer thread's nice value (Linux: per thread)
RESTART_WAIT_S = 0.1  # the longest a WAL RESTART may hold writers off waiting for readers; it retries next round

# SQLAlchemy's SQLite DATETIME text layout (UTC, zone-less, always with microseconds): rows written by the fast path
# must read back through SQLAlchemy exactly as its own (tests/store compares both ways).
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def sqlite_time(value: datetime) -> str:
    """An aware datetime as the store keeps it in SQLite (SQLITE_TIME_FORMAT, via the faster isoformat)."""
    if value.tzinfo is UTC:  # the hot path's case: drop the "+00:00" instead of building a naive copy
        return value.isoformat(" ", "microseconds")[:26]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def parse_sqlite_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_unavailable(exc: sqlite3.Error) -> bool:
    """The database cannot be used right now (as opposed to a statement the database refuses)."""
    text = str(exc).lower()
    return _is_busy(exc) or any(w in text for w in ("disk", "unable to open", "readonly", "full", "not a database"))


class SQLiteFastPath:
    """A dedicated SQLite connection for the few hot, short write transactions (recording webhook deliveries,
    claiming and marking them), run INLINE on the event loop.

    Why inline: a transaction through aiosqlite costs several thread hand-offs, and on a busy core a thread that
    waits for the GIL waits out the switch interval (5 ms) after every `sqlite3_step`; measured on one core, webhooks
    through the SQLAlchemy/aiosqlite writer topped out near 2,000/s with a 30 ms median. Inline, a transaction costs
    only the SQLite work itself, and it never sleeps: the connection has `busy_timeout = 0`, so when another
    connection (the SQLAlchemy writer, another process) holds the write lock, `write` yields to the loop and retries,
    up to the store's busy timeout. Commits do not fsync (WAL + synchronous=NORMAL: durable against a process crash,
    see `_sqlite_engine`); checkpoints, which do, run in a background thread instead of at commit (`_checkpoints`).
    A `work` callable must therefore be short and bounded (callers cap their batch sizes).
    """

    def __init__(self, path: str, *, busy_timeout_s: float, checkpoint_interval_s: float = 0.02,
                 idle_checkpoint_interval_s: float = 1.0, restart_frames: int = 8000) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        # Under load a round every 20 ms: each fsync then has little to write back, and the kernel work it does on
        # this core comes in short slices (bench/webhook_load.sh at ~13k webhooks/s: p99 7.9-9.5 ms over eight runs;
        # 10.9-11.3 ms with 200 ms rounds).
        self.checkpoint_interval_s = checkpoint_interval_s
        self.idle_checkpoint_interval_s = idle_checkpoint_interval_s  # nothing written here: no need to wake often
        self.restart_frames = restart_frames
        self._conn: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._written = threading.Event()  # set by `write`: the checkpointer has work
        self._restart_wanted = threading.Event()  # the checkpointer waits for the write lock: let it have it
        self._checkpointer: threading.Thread | None = None
        # Webhook bodies live in segment files beside the database, not in it (see bot.store.bodies).
        self.bodies = BodyLog(Path(path + "-bodies"))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Used only from the event loop's thread; `close` runs in a worker thread once nothing else can use it.
            conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=64, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 0")  # never sleep inside the event loop; `write` retries instead
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                # A checkpoint at commit would copy megabytes (and fsync) on the loop: the thread below does it.
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                # 16 MiB instead of SQLite's 2 MiB: claims and marks revisit rows and index pages written a little
                # earlier, which otherwise come back through a pread each (bench/webhook_load.sh, 30 s runs:
                # 9.6k-12.1k webhooks/s without, 12.7k-13.1k with).
                conn.execute("PRAGMA cache_size = -16384")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._stop.clear()
            self._checkpointer = threading.Thread(target=self._checkpoints, name="tunebot-sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()
        return self._conn

    def _checkpoints(self) -> None:
        """Copy the WAL back into the database now and then, so that it stays small and is reused from its start.

        A round runs after this connection commits (at most one per `checkpoint_interval_s`), and at least every
        `idle_checkpoint_interval_s`. It first fsyncs the delivery bodies written since the last round, then a
        PASSIVE checkpoint copies what is there without blocking anyone. Once the WAL holds
        `restart_frames` frames, a second PASSIVE pass and an fsync of the database copy and flush what arrived
        meanwhile, still without blocking anyone, and then a RESTART copies the small remainder and makes the next
        writer start the WAL from its beginning again. The RESTART holds off writers while it runs (the fast path steps
        aside, see `write`), so it gives up after `RESTART_WAIT_S` (a reader still on the WAL) and is tried again next
        round. Without it a writer under steady load never finds the WAL fully copied, the WAL grows without end, and
        every write extends a file, which costs several times more than overwriting one.
        """
        # The fsyncs below make the kernel write back the bodies and the WAL in this thread: on a busy core that work
        # must yield to the event loop, which has webhooks waiting for their answers.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECKPOINT_NICENESS)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error:
            log.exception("SQLite checkpointer: cannot open %s", self.path)
            return
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(RESTART_WAIT_S * 1000)}")
            while not self._stop.is_set():
                # Woken by this connection's commits; others (the SQLAlchemy writer) get a round every idle interval.
                self._written.wait(self.idle_checkpoint_interval_s)
                self._written.clear()
                if self._stop.is_set():
                    break
                try:
                    self.bodies.sync()  # bodies reach the disk before the rows that point at them
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames >= self.restart_frames:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        _fsync(self.path)
                        self._restart_wanted.set()
                        try:
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                        finally:
                            self._restart_wanted.clear()
                except (sqlite3.Error, OSError) as exc:  # tried again next round; a broken file shows on writes
                    log.warning("SQLite checkpoint of %s failed: %s", self.path, exc)
                self._stop.wait(self.checkpoint_interval_s)  # at most one round per interval
        finally:
            conn.close()

    async def write(self, work: Callable[[sqlite3.Connection], T], what: str) -> T:
        """Run `work(conn)` in one IMMEDIATE transaction on the loop thread; commit, or roll back and raise."""
        deadline: float | None = None
        delay = 0.0005
        while True:
            conn = self._connection()
            # Back-to-back transactions on the loop would leave the checkpointer's RESTART no gap to take the lock in.
            if self._restart_wanted.is_set():
                until = time.monotonic() + 2 * RESTART_WAIT_S
                while self._restart_wanted.is_set() and time.monotonic() < until:
                    await asyncio.sleep(0.001)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise StoreUnavailable(f"{what}: database unavailable ({exc})") from exc
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.busy_timeout_s
                if now >= deadline:
                    raise StoreUnavailable(f"{what}: database is locked (waited {self.busy_timeout_s:g} s)") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)
                continue
            try:
                result = work(conn)
                conn.execute("COMMIT")
                self._written.set()
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.exception("%s: rollback failed", what)
                if isinstance(exc, sqlite3.IntegrityError):
                    raise StoreError(f"{what}: refused by a database constraint ({exc})") from exc
                if isinstance(exc, sqlite3.Error):
                    kind = StoreUnavailable if _is_unavailable(exc) else StoreError
                    raise kind(f"{what}: database error ({exc})") from exc
                raise
            return result

    def close(self) -> None:
        """Stop the checkpointer and close the connection (blocking: call it from a thread)."""
        self._stop.set()
        self._written.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.bodies.close()
