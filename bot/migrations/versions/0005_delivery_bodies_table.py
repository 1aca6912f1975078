"""Delivery bodies move to their own table, `delivery_bodies`: a delivery row is updated on every state change and the
database rewrites the whole row each time, so a 15 KB body in it was written three times; now it is written once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Every body is copied, in the same transaction that drops the column, so nothing is lost if the migration stops.

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "delivery_bodies",
        sa.Column("delivery", _ID, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.execute("INSERT INTO delivery_bodies (delivery, body) SELECT id, body FROM deliveries")
    op.drop_column("deliveries", "body")  # SQLite 3.35+ drops a column in place


def downgrade() -> None:
    op.add_column("deliveries", sa.Column("body", sa.LargeBinary(), nullable=True))
    op.execute("UPDATE deliveries SET body = (SELECT body FROM delivery_bodies WHERE delivery = deliveries.id)")
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("body", nullable=False)
    op.drop_table("delivery_bodies")
