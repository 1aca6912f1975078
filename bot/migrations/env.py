"""Alembic environment for tunebot's store: migrates the connection the service hands over, or a URL from the CLI."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from bot.store.engine import create_engines, normalize_url
from bot.store.migrate import VERSION_TABLE
from bot.store.schema import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table (needs named constraints).
        render_as_batch=True,
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _cli_url() -> str:
    # `alembic -c bot/migrations/alembic.ini -x url=... upgrade head`, else TUNEBOT_DATABASE_URL, else the ini.
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("TUNEBOT_DATABASE_URL")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=..., or set TUNEBOT_DATABASE_URL")
    return url


async def _run_cli() -> None:
    engines = create_engines(normalize_url(_cli_url()))
    try:
        async with engines.writer.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engines.dispose()


if context.is_offline_mode():
    context.configure(url=normalize_url(_cli_url()), target_metadata=metadata, version_table=VERSION_TABLE,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    # The normal path: Store.migrate() passes a connection already inside its (locked) transaction, so the whole
    # upgrade commits or rolls back as one.
    _run(config.attributes["connection"])
else:
    asyncio.run(_run_cli())
