"""Initial schema: deliveries, runs, run events, results, grants, outbox and the bot's messages.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Frozen history: later changes go in new revisions, never here (a test checks migrations == bot/store/schema.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("delivery_id", sa.String(100), nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("source", "delivery_id", name="uq_deliveries_source_delivery_id"),
        sa.CheckConstraint("state IN ('pending', 'processing', 'done', 'failed')", name="ck_deliveries_state"),
        sa.CheckConstraint("attempts >= 0", name="ck_deliveries_attempts"),
    )
    op.create_index("ix_deliveries_state_id", "deliveries", ["state", "id"])
    op.create_index("ix_deliveries_received_at", "deliveries", ["received_at"])

    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("head_sha", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("job_spec", _json(), nullable=True),
        sa.Column("result_key", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_token", sa.String(200), nullable=False),
        sa.Column("name_token", sa.String(100), nullable=True),
        sa.Column("trigger_key", sa.String(300), nullable=True),
        sa.Column("workflow_run_id", sa.BigInteger(), nullable=True),
        sa.Column("workflow_url", sa.Text(), nullable=True),
        sa.Column("check_run_id", sa.BigInteger(), nullable=True),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("gpu_seconds", sa.Double(), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("progress", _json(), nullable=True),
        sa.Column("retry_of", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("dispatched_at", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
        sa.ForeignKeyConstraint(["retry_of"], ["runs.run_id"], name="fk_runs_retry_of_runs"),
        sa.UniqueConstraint("name_token", name="uq_runs_name_token"),
        sa.UniqueConstraint("trigger_key", name="uq_runs_trigger_key"),
        sa.CheckConstraint(
            "state IN ('queued', 'dispatched', 'running', 'succeeded', 'failed', 'cancelled')", name="ck_runs_state"),
        sa.CheckConstraint("(state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)",
                           name="ck_runs_finished"),
        sa.CheckConstraint("last_seq >= -1", name="ck_runs_last_seq"),
    )
    op.create_index("ix_runs_repo_number_created_at", "runs", ["repo", "number", "created_at"])
    op.create_index("ix_runs_repo_actor_created_at", "runs", ["repo", "actor", "created_at"])
    op.create_index("ix_runs_state_updated_at", "runs", ["state", "updated_at"])
    op.create_index("ix_runs_workflow_run_id", "runs", ["workflow_run_id"])

    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_run_events_run_id_runs", ondelete="CASCADE"),
        sa.CheckConstraint("seq >= 0", name="ck_run_events_seq"),
    )

    op.create_table(
        "result_sets",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(255), nullable=True),
        sa.Column("train", _json(), nullable=False),
        sa.Column("manifest", _json(), nullable=False),
        sa.Column("artifacts", _json(), nullable=False),
        sa.Column("saved_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_result_sets"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_result_sets_run_id_runs", ondelete="CASCADE"),
    )

    op.create_table(
        "results",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("benchmark", sa.String(100), nullable=False),
        sa.Column("result_key", sa.String(128), nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(255), nullable=True),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_results"),
        sa.ForeignKeyConstraint(["run_id"], ["result_sets.run_id"], name="fk_results_run_id_result_sets",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("run_id", "benchmark", name="uq_results_run_id_benchmark"),
        sa.CheckConstraint("n >= 0 AND correct >= 0 AND correct <= n", name="ck_results_counts"),
    )
    op.create_index("ix_results_repo_result_key_created_at", "results", ["repo", "result_key", "created_at"])
    op.create_index("ix_results_repo_config_hash_sha", "results", ["repo", "config_hash", "sha"])
    op.create_index("ix_results_repo_config_hash_ref_created_at", "results",
                    ["repo", "config_hash", "ref", "created_at"])
    op.create_index("ix_results_benchmark_score", "results", ["benchmark", "score"])

    op.create_table(
        "result_subsets",
        sa.Column("result_id", ID, nullable=False),
        sa.Column("subset", sa.String(200), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("result_id", "subset", name="pk_result_subsets"),
        sa.ForeignKeyConstraint(["result_id"], ["results.id"], name="fk_result_subsets_result_id_results",
                                ondelete="CASCADE"),
        sa.CheckConstraint("n >= 0 AND correct >= 0 AND correct <= n", name="ck_result_subsets_counts"),
    )

    op.create_table(
        "result_questions",
        sa.Column("result_id", ID, nullable=False),
        sa.Column("qid", sa.String(300), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("result_id", "qid", name="pk_result_questions"),
        sa.ForeignKeyConstraint(["result_id"], ["results.id"], name="fk_result_questions_result_id_results",
                                ondelete="CASCADE"),
    )

    op.create_table(
        "grants",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("granted_by", sa.String(100), nullable=False),
        sa.Column("scope", _json(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
    )
    op.create_index("ix_grants_repo_number_head_sha", "grants", ["repo", "number", "head_sha"])

    op.create_table(
        "outbox",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("leased_until", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
        sa.CheckConstraint("state IN ('pending', 'done', 'failed')", name="ck_outbox_state"),
    )
    op.create_index("ix_outbox_state_next_attempt_at", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_run_id", "outbox", ["run_id"])

    op.create_table(
        "bot_messages",
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("extra", _json(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("subject", "purpose", name="pk_bot_messages"),
    )


def downgrade() -> None:
    for table in ("bot_messages", "outbox", "grants", "result_questions", "result_subsets", "results",
                  "result_sets", "run_events", "runs", "deliveries"):
        op.drop_table(table)
