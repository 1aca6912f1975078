"""Schema migrations run from code: Alembic's `upgrade head` inside one locked transaction, refusing unknown schemas."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from .errors import SchemaError

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
# Our own version table name, so a database shared with another Alembic-managed app does not mix histories.
VERSION_TABLE = "tunebot_alembic_version"
# Any constant works: it names the PostgreSQL advisory lock that serialises concurrent `migrate()` calls.
PG_MIGRATION_LOCK = 0x7475_6E65_626F_74  # "tunebot"


def alembic_config() -> Config:
    """An Alembic config that needs no alembic.ini (the service migrates itself at start)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def current_revision(conn: Connection) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    heads = ctx.get_current_heads()
    return heads[0] if heads else None


def lock(conn: Connection) -> None:
    """Serialise migrations: two services starting at once on PostgreSQL; the second waits, then finds the schema
    at head. (On SQLite the write transaction's BEGIN IMMEDIATE already does this.)"""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})


def upgrade(conn: Connection) -> str:
    """Bring the schema on `conn` (in a transaction, after `lock`) to head; a no-op when it is there. Returns head.

    Refuses a database stamped with a revision this code does not know: it was migrated by a newer tunebot, and
    writing to it with the old code could corrupt it.
    """
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = head_revision()
    current = current_revision(conn)
    if current == head:
        return head
    if current is not None:
        try:
            script.get_revision(current)
        except Exception:
            raise SchemaError(
                f"the database is at schema revision {current!r}, which this tunebot does not know (its newest is "
                f"{head!r}); it was migrated by a newer tunebot: upgrade tunebot, or use another database"
            ) from None
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
    return head
