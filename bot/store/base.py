"""What every part of the store shares: how it gets a connection, builds upserts, and checks caller input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import StoreError, StoreUnavailable

MAX_ERROR_CHARS = 4000

Insert = sqlite.Insert | postgresql.Insert


class Access:
    """Base of the store's parts. `_write()` yields a connection inside a write transaction, `_read()` one that
    sees a consistent snapshot; inside `Store.transaction()` both yield the one transaction's connection."""

    _dialect: str

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _insert(self, table: Table) -> Insert:
        """An INSERT that supports `ON CONFLICT` on both backends (the same SQL shape on SQLite 3.35+ and PG)."""
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)


@asynccontextmanager
async def translate_errors(what: str, *, os_errors: bool = True) -> AsyncIterator[None]:
    """Turn driver errors into store errors with a message that says which operation failed.

    `os_errors=False` where caller code runs inside (a transaction block): its own OSErrors are not ours to rename.
    """
    try:
        yield
    except IntegrityError as exc:
        raise StoreError(f"{what}: refused by a database constraint ({_first_line(exc.orig)})") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated or "locked" in str(exc.orig) or "connect" in str(exc.orig).lower():
            raise StoreUnavailable(f"{what}: database unavailable ({_first_line(exc.orig)})") from exc
        raise StoreError(f"{what}: database error ({_first_line(exc.orig)})") from exc
    except OSError as exc:
        if not os_errors:
            raise
        raise StoreUnavailable(f"{what}: cannot reach the database ({exc})") from exc


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else "unknown error"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def utc(value: datetime, name: str = "now") -> datetime:
    """The caller's timestamp, checked: the store never reads a clock, so every time is passed in, aware."""
    if not isinstance(value, datetime):
        raise StoreError(f"{name}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{name}: naive datetime {value.isoformat()}; pass an aware one, e.g. datetime.now(UTC)")
    return value.astimezone(UTC)


def checked_json(value: Any, what: str) -> Any:
    """JSON-ready data or a clear error, before anything reaches the database."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what}: not JSON-serializable ({exc})") from None
    return value


def plain_json(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise StoreError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return dict(checked_json(dict(value), what))


def non_empty(value: str, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StoreError(f"{what}: must be a non-empty string")
    if len(value) > max_len:
        raise StoreError(f"{what}: longer than {max_len} characters")
    return value


def clip_error(error: str | None) -> str | None:
    """Error texts are for people; a traceback of megabytes helps no one and bloats the row."""
    if error is None:
        return None
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 15] + " …[truncated]"
