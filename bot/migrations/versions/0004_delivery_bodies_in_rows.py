"""Delivery bodies live in the `body` column again: bodies that 0002's segment files beside a SQLite database hold are
copied into their rows, then the segment columns go.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-12

An unfinished delivery (pending or processing) whose body cannot be read back intact (segment file missing, short,
or CRC-32 mismatch) stops the migration with a message, and nothing changes: its body would otherwise be lost. A
finished delivery's body is only kept for inspection until retention prunes it: one that cannot be read stays empty.
The `<db>-bodies/` directory is left in place; it can be deleted once this migration has run.

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.store.errors import SchemaError

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

_SEGMENT_COLUMNS = ("body_segment", "body_offset", "body_length", "body_crc32")


def _read(directory: str, segment: int, offset: int, length: int, crc32: int) -> bytes | None:
    """A body as 0002 stored it (`NNNNNNNN.seg`, offset, length, CRC-32), or None when it is not there intact."""
    try:
        with open(os.path.join(directory, f"{segment:08d}.seg"), "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except OSError:
        return None
    return data if len(data) == length and zlib.crc32(data) == crc32 else None


def _bring_bodies_in(bind: sa.Connection) -> None:
    database = bind.engine.url.database or ""
    directory = os.path.expanduser(database) + "-bodies"
    rows = bind.execute(sa.text("SELECT id, delivery_id, state, body_segment, body_offset, body_length, body_crc32 "
                                "FROM deliveries WHERE body_segment IS NOT NULL ORDER BY id")).all()
    lost: list[str] = []
    emptied = 0
    for row in rows:
        body = _read(directory, row.body_segment, row.body_offset, row.body_length, row.body_crc32)
        if body is None:
            if row.state in ("pending", "processing"):
                lost.append(row.delivery_id)
            else:
                emptied += 1
            continue
        bind.execute(sa.text("UPDATE deliveries SET body = :body WHERE id = :id"), {"body": body, "id": row.id})
    if lost:
        shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
        raise SchemaError(
            f"cannot migrate {database}: the bodies of {len(lost)} unfinished webhook deliveries ({shown}) are not "
            f"intact in {directory}; restore that directory beside the database and start again (nothing was "
            "changed), or mark those deliveries failed and have GitHub redeliver them")
    if emptied:
        log.warning("%d finished deliveries' bodies were not readable from %s and stay empty", emptied, directory)
    if rows:
        log.warning("moved %d delivery bodies from %s into the database; the directory can be deleted",
                    len(rows) - emptied, directory)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":  # PostgreSQL always kept its bodies in the row
        _bring_bodies_in(bind)
    op.drop_index("ix_deliveries_body_segment", table_name="deliveries")
    for column in _SEGMENT_COLUMNS:  # SQLite 3.35+ drops a column in place, without copying the table
        op.drop_column("deliveries", column)


def downgrade() -> None:
    # The columns come back empty: every body stays in its row, which 0002's code reads as before.
    op.add_column("deliveries", sa.Column("body_segment", sa.Integer(), nullable=True))
    op.add_column("deliveries", sa.Column("body_offset", sa.BigInteger(), nullable=True))
    op.add_column("deliveries", sa.Column("body_length", sa.Integer(), nullable=True))
    op.add_column("deliveries", sa.Column("body_crc32", sa.BigInteger(), nullable=True))
    op.create_index("ix_deliveries_body_segment", "deliveries", ["body_segment"])
