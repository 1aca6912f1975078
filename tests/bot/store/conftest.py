"""Fixtures for the store tests: every test runs against a fresh SQLite file AND the real PostgreSQL server.

PostgreSQL tests use one freshly created schema per test session (dropped at the end) and empty tables per test,
so parallel sessions never collide. An unreachable server FAILS the PostgreSQL tests with a clear message; set
TUNEBOT_SKIP_POSTGRES=1 to skip them on purpose. TUNEBOT_TEST_POSTGRES_URL overrides the server URL (tests/postgres.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from bot.store import Store
from bot.store.schema import ALL_TABLES
from tests.postgres import postgres_url


@pytest.fixture(scope="session")
def pg_url() -> str:
    return asyncio.run(postgres_url())  # fails when no server answers, skips only on TUNEBOT_SKIP_POSTGRES=1


@pytest.fixture(scope="session")
def pg_schema(pg_url: str) -> object:
    name = f"tb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(pg_url, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@dataclass(frozen=True)
class Backend:
    """Where a test's database lives; `open()` gives another Store on the same database (another "process")."""

    name: str
    url: str
    schema: str | None

    async def open(self, **kwargs: object) -> Store:
        return await Store.open(self.url, schema=self.schema, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; each test gets a copy (a fresh migration per test costs ~0.1 s)."""
    path = tmp_path_factory.mktemp("template") / "tunebot.db"

    async def make() -> None:
        store = await Store.open(str(path))
        await store.close()  # the last close checkpoints the WAL into the file, so the file alone is complete

    asyncio.run(make())
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "tunebot.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return Backend("sqlite", str(path), None)
    return Backend("postgres", request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = await backend.open()
    if backend.name == "postgres":
        # Empty the session's tables (DELETE of a few rows is far cheaper than TRUNCATE's new files).
        async with s._engines.writer.begin() as conn:
            for table in reversed(ALL_TABLES):
                await conn.execute(table.delete())
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def another(backend: Backend) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Opens more Stores on the test's database (separate engines and connections, like other processes)."""
    opened: list[Store] = []

    async def open_one() -> Store:
        s = await backend.open()
        opened.append(s)
        return s

    try:
        yield open_one
    finally:
        for s in opened:
            await s.close()
