"""A run remembers how many seeds per side its comparison asked for (`/compare … seeds=N`), so a comparison made when
its evaluation, a head seed or a baseline lands judges the N seeds asked for, not whichever have landed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
Runs made by earlier versions have none (NULL): their comparisons judge the seeds that exist, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("compare_seeds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("compare_seeds")
