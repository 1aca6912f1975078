"""Index runs by the run whose baseline they are (`backfill_for`): the run page finds its baseline runs by query.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_backfill_for", "runs", ["backfill_for"])


def downgrade() -> None:
    op.drop_index("ix_runs_backfill_for", "runs")
