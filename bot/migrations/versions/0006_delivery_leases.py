"""Delivery claims become leases (claimed_by, leased_until) and failed attempts wait for their retry (next_attempt_at).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
A delivery left `processing` by an earlier version has no lease: it counts as expired, so any replica takes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(100), nullable=True))
        batch.add_column(sa.Column("leased_until", TS, nullable=True))
        batch.add_column(sa.Column("next_attempt_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        for column in ("next_attempt_at", "leased_until", "claimed_by"):
            batch.drop_column(column)
