"""Opening the store: URL forms, SQLite tuning, migrations (idempotent, complete, guarded) and clear failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

from bot.store import SchemaError, Store, StoreError, StoreUnavailable, normalize_url
from bot.store.migrate import VERSION_TABLE, alembic_config, head_revision
from bot.store.schema import ALL_TABLES, metadata

from .conftest import Backend
from .helpers import at, delivery, new_run


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("tunebot.db", "sqlite+aiosqlite:///tunebot.db"),
        ("/var/lib/tunebot/db.sqlite", "sqlite+aiosqlite:////var/lib/tunebot/db.sqlite"),
        ("sqlite:///rel/path.db", "sqlite+aiosqlite:///rel/path.db"),
        ("sqlite+aiosqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("postgresql://u:secret@db:5432/tb", "postgresql+asyncpg://u:secret@db:5432/tb"),
        ("postgres://u@db/tb", "postgresql+asyncpg://u@db/tb"),
        ("postgresql+asyncpg://u@db/tb", "postgresql+asyncpg://u@db/tb"),
        ("postgresql+psycopg2://u@db/tb?sslmode=require", "postgresql+asyncpg://u@db/tb?ssl=require"),
    ],
)
def test_url_forms_are_normalized(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "empty"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("mysql://u@db/tb", "unsupported database URL scheme 'mysql'"),
        ("sqlite+pysqlcipher:///x.db", "SQLite driver 'pysqlcipher' is not supported"),
        ("postgresql+pg8000://u@db/tb", "PostgreSQL driver 'pg8000' is not supported"),
    ],
)
def test_bad_urls_get_clear_errors(given: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        normalize_url(given)


async def test_sqlite_file_is_created_in_wal_mode_with_tuned_connections(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "tunebot.db"
    store = await Store.open(f"sqlite:///{path}", busy_timeout_s=7)
    try:
        assert path.exists() and store.dialect == "sqlite"
        for engine in (store._engines.writer, store._engines.reader):
            async with engine.connect() as conn:
                assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
                assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
                assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 7000
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        # Readers are read-only: a write slipped onto a read connection fails loudly instead of racing the writer.
        async with store._engines.reader.connect() as conn:
            with pytest.raises(Exception, match=r"readonly|read-only|attempt to write"):
                await conn.exec_driver_sql("DELETE FROM runs")
    finally:
        await store.close()


async def test_schema_after_migration_matches_the_models(store: Store) -> None:
    def diff(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        return list(compare_metadata(ctx, metadata))

    async with store._engines.writer.connect() as conn:
        assert await conn.run_sync(diff) == []
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert {t.name for t in ALL_TABLES} | {VERSION_TABLE} <= names


async def test_migrating_twice_is_a_noop_and_keeps_data(backend: Backend, store: Store) -> None:
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    head = head_revision()
    assert await store.schema_revision() == head
    assert await store.migrate() == head
    second = await backend.open()  # a restart: open() migrates again
    try:
        assert await second.schema_revision() == head
        assert (await second.get_run("tb-000000000001")) is not None
        async with second._engines.writer.connect() as conn:
            rows = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).all()
        assert [r[0] for r in rows] == [head]
    finally:
        await second.close()


async def test_concurrent_first_start_migrates_once(backend: Backend, tmp_path: Path) -> None:
    # A database of its own (a new file, a new schema), so this test really starts from nothing.
    if backend.name == "postgres":
        backend = Backend(backend.name, backend.url, f"{backend.schema}_fresh")
    else:
        backend = Backend(backend.name, str(tmp_path / "fresh.db"), None)
    opened = await asyncio.gather(*(backend.open() for _ in range(3)), return_exceptions=True)
    stores = [s for s in opened if isinstance(s, Store)]
    try:
        assert len(stores) == 3, [e for e in opened if not isinstance(e, Store)]
        assert {await s.schema_revision() for s in stores} == {head_revision()}
        await stores[0].create_run(new_run("tb-000000000002"), now=at(0))
        assert (await stores[2].get_run("tb-000000000002")) is not None
    finally:
        for s in stores:
            await s.close()
        if backend.name == "postgres":
            conn = await asyncpg.connect(backend.url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{backend.schema}" CASCADE')
            finally:
                await conn.close()


async def test_downgrade_then_upgrade_round_trips(store: Store) -> None:
    def down(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")

    async with store._engines.writer.begin() as conn:
        await conn.run_sync(down)
    assert await store.schema_revision() is None
    await store.migrate()
    assert await store.schema_revision() == head_revision()
    assert (await store.create_run(new_run("tb-000000000003"), now=at(0)))[1]


async def test_database_from_a_newer_tunebot_is_refused(backend: Backend, store: Store) -> None:
    async with store._engines.writer.begin() as conn:
        await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff_future'"))
    try:
        with pytest.raises(SchemaError, match=r"'ffff_future'.*newer tunebot"):
            await backend.open()
        # Nothing was touched: the stamp is still the future one.
        assert await store.schema_revision() == "ffff_future"
    finally:
        # The PostgreSQL schema is shared by the session's tests: put the real stamp back.
        async with store._engines.writer.begin() as conn:
            await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": head_revision()})


async def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, it is a grocery list\n" * 100)
    with pytest.raises(StoreUnavailable, match=r"notes\.txt.*not a database"):
        await Store.open(path)  # a Path works as well as a URL
    assert path.read_bytes().startswith(b"this is not a database")


async def test_unreachable_postgres_is_refused_clearly() -> None:
    with pytest.raises(StoreUnavailable, match=r"cannot connect to the database at postgresql\+asyncpg://u:\*\*\*@"):
        await Store.open("postgresql://u:hunter2@127.0.0.1:1/none", connect_timeout_s=3)


async def test_schema_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="only applies to PostgreSQL"):
        await Store.open(str(tmp_path / "x.db"), schema="tb")
    with pytest.raises(StoreError, match="plain identifier"):
        await Store.open("postgresql://postgres@127.0.0.1/test", schema='x"; DROP TABLE runs; --')


async def test_naive_timestamps_are_refused(store: Store) -> None:
    from datetime import datetime

    with pytest.raises(StoreError, match="naive datetime"):
        await store.create_run(new_run("tb-000000000004"), now=datetime(2026, 3, 1, 12))


async def test_using_the_store_inside_its_own_transaction_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="call it on the transaction object"):
        async with store.transaction():
            await store.get_run("tb-x")
    with pytest.raises(StoreError, match="already open"):
        async with store.transaction(), store.transaction():
            pass
    await store.ping()  # the refused calls left nothing locked


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("UPDATE deliveries SET state = 'lost'", "ck_deliveries_state"),
        ("UPDATE deliveries SET attempts = -1", "ck_deliveries_attempts"),
        ("UPDATE runs SET state = 'paused'", "ck_runs_state"),
        ("UPDATE runs SET finished_at = created_at", "ck_runs_finished"),
        ("UPDATE outbox SET state = 'sent'", "ck_outbox_state"),
    ],
)
async def test_the_migrated_database_enforces_the_state_rules(store: Store, statement: str, constraint: str) -> None:
    """Alembic's comparison does not look at CHECK constraints: prove the migrated ones bite, row by row."""
    await store.record_deliveries([delivery("g1")])
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    await store.enqueue("k", "slack", {}, at(0))
    with pytest.raises(IntegrityError, match=constraint):
        async with store._engines.writer.begin() as conn:
            await conn.execute(text(statement))
