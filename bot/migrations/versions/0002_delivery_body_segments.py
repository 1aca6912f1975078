"""Delivery bodies may live in segment files beside a SQLite database: the row says where (bot.store.bodies).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: existing rows keep their body in the `body` column, and PostgreSQL never uses segments.
    op.add_column("deliveries", sa.Column("body_segment", sa.Integer(), nullable=True))
    op.add_column("deliveries", sa.Column("body_offset", sa.BigInteger(), nullable=True))
    op.add_column("deliveries", sa.Column("body_length", sa.Integer(), nullable=True))
    op.add_column("deliveries", sa.Column("body_crc32", sa.BigInteger(), nullable=True))
    op.create_index("ix_deliveries_body_segment", "deliveries", ["body_segment"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_body_segment", table_name="deliveries")
    for column in ("body_crc32", "body_length", "body_offset", "body_segment"):
        op.drop_column("deliveries", column)
