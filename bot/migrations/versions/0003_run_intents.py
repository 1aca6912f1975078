"""Run intents are columns of the run (compare_ref, benchmark_keys, backfill_for), not rows of bot_messages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("compare_ref", sa.String(300), nullable=True))
        batch.add_column(sa.Column("benchmark_keys", _json(), nullable=True))
        batch.add_column(sa.Column("backfill_for", sa.String(64), nullable=True))
    # Carry over the intents earlier versions kept as bot_messages rows (channel "intent"), then drop those rows.
    runs = sa.table("runs", sa.column("run_id", sa.String), sa.column("compare_ref", sa.String),
                    sa.column("benchmark_keys", _json()), sa.column("backfill_for", sa.String))
    messages = sa.table("bot_messages", sa.column("subject", sa.String), sa.column("purpose", sa.String),
                        sa.column("channel", sa.String), sa.column("message_id", sa.String),
                        sa.column("extra", _json()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(messages.c.subject, messages.c.purpose, messages.c.message_id, messages.c.extra)
                        .where(messages.c.channel == "intent")).all()
    for subject, purpose, message_id, extra in rows:
        values: dict[str, object] = {}
        if purpose in ("compare_ref", "eval_keys"):
            values["benchmark_keys"] = dict((extra or {}).get("keys") or {})
            if purpose == "compare_ref":
                values["compare_ref"] = message_id
        elif purpose == "backfill_for":
            values["backfill_for"] = message_id
        if values:
            conn.execute(sa.update(runs).where(runs.c.run_id == subject).values(**values))
    conn.execute(sa.delete(messages).where(messages.c.channel == "intent"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in ("backfill_for", "benchmark_keys", "compare_ref"):
            batch.drop_column(column)
