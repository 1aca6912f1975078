"""The store's tables as SQLAlchemy Core metadata; migrations must produce exactly this (a test compares them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from .models import DELIVERY_STATES, OUTBOX_STATES, RUN_STATES
from .models import TERMINAL_RUN_STATES as TERMINAL

# Explicit constraint names: Alembic needs them to alter constraints later (SQLite batch mode rebuilds tables).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend: `timestamptz` on PostgreSQL, sortable ISO text on SQLite.

    Naive datetimes are refused: a timestamp without a zone is a bug that silently shifts by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expected an aware datetime (UTC), got {value!r}")
        value = value.astimezone(UTC)
        # SQLite stores the text form; a fixed zone-less UTC layout keeps string comparison == time comparison.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> Any:
    # JSONB on PostgreSQL (indexable, compact); JSON text elsewhere. SQL NULL (not JSON null) for None.
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


# An auto-increment key: BIGINT on PostgreSQL, the rowid alias (INTEGER PRIMARY KEY) on SQLite.
_ID = BigInteger().with_variant(Integer(), "sqlite")


def _states(column: str, states: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(s) for s in states)})"


deliveries = Table(
    "deliveries",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),
    Column("delivery_id", String(100), nullable=False),
    Column("event", String(100), nullable=False),
    Column("action", String(100), nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("error", Text(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    # The lease of a `processing` delivery: which replica holds it until when (renewed while it works; an expired
    # lease is anybody's to take). A failed attempt waits in `pending` until `next_attempt_at` (NULL: at once).
    Column("claimed_by", String(100), nullable=True),
    Column("leased_until", UTCDateTime(), nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    UniqueConstraint("source", "delivery_id"),
    CheckConstraint(_states("state", DELIVERY_STATES), name="state"),
    CheckConstraint("attempts >= 0", name="attempts"),
    Index(None, "state", "id"),
    Index(None, "received_at"),
)

# The raw body (often 10-30 KB) in its own table: a delivery's row is updated several times (claimed, done), and a
# database rewrites the whole row on each update; the body is written once and read once.
delivery_bodies = Table(
    "delivery_bodies",
    metadata,
    Column("delivery", _ID, ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("body", LargeBinary(), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("repo", String(200), nullable=False),
    Column("number", Integer(), nullable=True),
    Column("head_sha", String(64), nullable=True),
    Column("actor", String(100), nullable=False),
    Column("command", Text(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("model", String(200), nullable=True),
    Column("job_spec", _json(), nullable=True),
    Column("result_key", String(128), nullable=True),
    Column("state", String(16), nullable=False),
    Column("phase", String(32), nullable=True),
    Column("reason", Text(), nullable=True),
    Column("run_token", String(200), nullable=False),
    Column("name_token", String(100), nullable=True),
    Column("trigger_key", String(300), nullable=True),
    Column("workflow_run_id", BigInteger(), nullable=True),
    Column("workflow_url", Text(), nullable=True),
    Column("check_run_id", BigInteger(), nullable=True),
    Column("comment_id", BigInteger(), nullable=True),
    Column("gpu_seconds", Double(), nullable=True),
    Column("last_seq", Integer(), nullable=False),
    Column("progress", _json(), nullable=True),
    Column("retry_of", String(64), ForeignKey("runs.run_id"), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("dispatched_at", UTCDateTime(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    # What the run is for, decided with it (migration 0003): see models.Run.
    Column("compare_ref", String(300), nullable=True),
    Column("benchmark_keys", _json(), nullable=True),
    Column("backfill_for", String(64), nullable=True),
    UniqueConstraint("name_token"),
    UniqueConstraint("trigger_key"),
    CheckConstraint(_states("state", RUN_STATES), name="state"),
    # A finished run, and only a finished run, has finished_at: the database itself refuses a half-finished row.
    CheckConstraint(f"({_states('state', TERMINAL)}) = (finished_at IS NOT NULL)", name="finished"),
    CheckConstraint("last_seq >= -1", name="last_seq"),
    Index(None, "repo", "number", "created_at"),
    Index(None, "repo", "actor", "created_at"),
    Index(None, "state", "updated_at"),
    Index(None, "workflow_run_id"),
    Index(None, "backfill_for"),  # migration 0008: a run's baseline runs, found by query (the web run page)
)

run_events = Table(
    "run_events",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("type", String(32), nullable=False),
    Column("ts", Double(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("payload", _json(), nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
    CheckConstraint("seq >= 0", name="seq"),
)

# One row per run that reported results: the run-level parts of commands.results.Results.
result_sets = Table(
    "result_sets",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("repo", String(200), nullable=False),
    Column("sha", String(64), nullable=False),
    Column("ref", String(255), nullable=True),
    Column("train", _json(), nullable=False),
    Column("manifest", _json(), nullable=False),
    Column("artifacts", _json(), nullable=False),
    Column("saved_at", UTCDateTime(), nullable=False),
)

# One row per (run, benchmark); repo/sha/ref are copied here so reuse and baseline look-ups need no join.
results = Table(
    "results",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("result_sets.run_id", ondelete="CASCADE"), nullable=False),
    Column("benchmark", String(100), nullable=False),
    Column("result_key", String(128), nullable=False),
    Column("config_hash", String(128), nullable=False),
    Column("repo", String(200), nullable=False),
    Column("sha", String(64), nullable=False),
    Column("ref", String(255), nullable=True),
    Column("score", Double(), nullable=False),
    Column("n", Integer(), nullable=False),
    Column("correct", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("run_id", "benchmark"),
    CheckConstraint("n >= 0 AND correct >= 0 AND correct <= n", name="counts"),
    Index(None, "repo", "result_key", "created_at"),
    Index(None, "repo", "config_hash", "sha"),
    Index(None, "repo", "config_hash", "ref", "created_at"),
    Index(None, "benchmark", "score"),
)

result_subsets = Table(
    "result_subsets",
    metadata,
    Column("result_id", _ID, ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
    Column("subset", String(200), nullable=False),
    Column("n", Integer(), nullable=False),
    Column("correct", Integer(), nullable=False),
    PrimaryKeyConstraint("result_id", "subset"),
    CheckConstraint("n >= 0 AND correct >= 0 AND correct <= n", name="counts"),
)

# Per-question outcomes: the paired data behind McNemar / bootstrap comparisons. The primary key (result_id, qid)
# clusters one benchmark's questions together, so loading them is one index range scan.
result_questions = Table(
    "result_questions",
    metadata,
    Column("result_id", _ID, ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
    Column("qid", String(300), nullable=False),
    Column("correct", Boolean(), nullable=False),
    PrimaryKeyConstraint("result_id", "qid"),
)

grants = Table(
    "grants",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("repo", String(200), nullable=False),
    Column("number", Integer(), nullable=False),
    Column("head_sha", String(64), nullable=False),
    Column("granted_by", String(100), nullable=False),
    Column("scope", _json(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Index(None, "repo", "number", "head_sha"),
)

plans = Table(
    "plans",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("repo", String(200), nullable=False),
    Column("number", Integer(), nullable=False),
    Column("head_sha", String(64), nullable=False),
    Column("plan_hash", String(64), nullable=False),
    Column("requester", String(100), nullable=False),
    Column("command", Text(), nullable=False),
    Column("jobs", _json(), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=True),
    Index(None, "repo", "number", "state"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("target", Text(), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("payload", _json(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("leased_until", UTCDateTime(), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("result", _json(), nullable=True),
    UniqueConstraint("key"),
    CheckConstraint(_states("state", OUTBOX_STATES), name="state"),
    Index(None, "state", "next_attempt_at"),
    Index(None, "run_id"),
)

bot_messages = Table(
    "bot_messages",
    metadata,
    Column("subject", String(300), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("extra", _json(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("subject", "purpose"),
)

ALL_TABLES = (deliveries, delivery_bodies, runs, run_events, result_sets, results, result_subsets, result_questions,
              grants, outbox, bot_messages)
