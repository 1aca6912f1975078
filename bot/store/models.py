"""The store's value types: what callers pass in and get back, independent of SQLAlchemy rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

import orjson

from commands.jobspec import JobSpec

DeliveryState = Literal["pending", "processing", "done", "failed"]
RunState = Literal["queued", "dispatched", "running", "succeeded", "failed", "cancelled"]
OutboxState = Literal["pending", "done", "failed"]
AppendResult = Literal["new", "duplicate"]

DELIVERY_STATES: tuple[str, ...] = get_args(DeliveryState)
RUN_STATES: tuple[str, ...] = get_args(RunState)
OUTBOX_STATES: tuple[str, ...] = get_args(OutboxState)
TERMINAL_RUN_STATES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
ACTIVE_RUN_STATES: tuple[str, ...] = ("queued", "dispatched", "running")

# A run only ever moves forward through these ranks; every terminal state shares the last rank, so the first
# terminal state reached wins and a finished run can never be moved again.
RUN_STATE_RANK: dict[str, int] = {"queued": 0, "dispatched": 1, "running": 2, "succeeded": 3, "failed": 3,
                                  "cancelled": 3}


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A webhook delivery as received: `source` tells apart two Apps (or installations) that see one GUID."""

    source: str
    delivery_id: str
    event: str
    body: bytes
    received_at: datetime
    action: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    source: str
    delivery_id: str
    event: str
    action: str | None
    body: bytes
    received_at: datetime
    state: DeliveryState
    attempts: int
    error: str | None
    updated_at: datetime
    claimed_by: str | None = None  # the replica whose lease it is (or was, once finished)
    leased_until: datetime | None = None  # while `processing`: after this, any replica may take it over
    next_attempt_at: datetime | None = None  # while `pending` after a failed attempt: not before this

    def payload(self) -> Any:
        """The body parsed as JSON (the raw bytes stay the source of truth; signatures were checked over them).

        orjson: webhook bodies are 10-30 KB and parsing them was the largest single cost of a delivery; its errors
        are `json.JSONDecodeError`s (so `ValueError`s) like the standard library's."""
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run as decided by the brain, before anything was dispatched.

    `trigger_key` makes creation idempotent: the same comment (or delivery) processed twice after a crash finds the
    run it created the first time instead of creating a second one. `name_token` is the unique id put in the
    workflow's `run-name`, for servers that do not return the workflow run id on dispatch.
    """

    run_id: str
    repo: str
    actor: str
    command: str
    kind: str
    run_token: str
    number: int | None = None
    head_sha: str | None = None
    model: str | None = None
    job_spec: Mapping[str, Any] | JobSpec | None = None
    result_key: str | None = None
    name_token: str | None = None
    trigger_key: str | None = None
    retry_of: str | None = None
    compare_ref: str | None = None
    benchmark_keys: Mapping[str, str] | None = None
    backfill_for: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    repo: str
    number: int | None
    head_sha: str | None
    actor: str
    command: str
    kind: str
    model: str | None
    job_spec: Mapping[str, Any] | None
    result_key: str | None
    state: RunState
    phase: str | None
    reason: str | None
    run_token: str = field(repr=False)
    name_token: str | None = None
    trigger_key: str | None = None
    workflow_run_id: int | None = None
    workflow_url: str | None = None
    check_run_id: int | None = None
    comment_id: int | None = None
    gpu_seconds: float | None = None
    last_seq: int = -1
    progress: Mapping[str, Any] | None = None
    retry_of: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The run's intent, decided when it was created: `compare_ref` — compare its results with this ref or run when
    # they land (`/compare`); `benchmark_keys` — the result key each benchmark's results are stored under;
    # `backfill_for` — this run is the baseline another run is waiting for.
    compare_ref: str | None = None
    benchmark_keys: Mapping[str, str] | None = None
    backfill_for: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_RUN_STATES

    @property
    def next_seq(self) -> int:
        """The event seq the bot must apply next (events are applied strictly in seq order)."""
        return self.last_seq + 1


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One benchmark result of one run, without its per-question rows (for listings and leaderboards)."""

    run_id: str
    benchmark: str
    result_key: str
    config_hash: str
    repo: str
    sha: str
    ref: str | None
    score: float
    n: int
    correct: int
    created_at: datetime
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    id: int
    repo: str
    number: int
    head_sha: str
    granted_by: str
    scope: Mapping[str, Any]
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PendingPlan:
    """A /train kept for `/approve` (bot/store/plans.py); `jobs` are planned jobs as plain data."""

    id: int
    repo: str
    number: int
    head_sha: str
    plan_hash: str
    requester: str
    command: str
    jobs: tuple[Mapping[str, Any], ...]
    reason: str
    state: str  # waiting | approved | superseded
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """What one user spent in one repository in a time window (derived from the runs table)."""

    repo: str
    user: str
    start: datetime
    end: datetime
    runs: int
    gpu_seconds: float


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A write to GitHub/Slack/DingTalk that was decided but maybe not yet performed.

    `version` grows each time a replaceable item (an edit-in-place) gets a newer payload; `complete` only marks the
    item done when the version it performed is still the latest.
    """

    id: int
    key: str
    kind: str
    target: str | None
    run_id: str | None
    payload: Mapping[str, Any]
    state: OutboxState
    attempts: int
    version: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime
    leased_until: datetime | None
    last_error: str | None
    result: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class BotMessage:
    """A message the bot posted and edits in place, remembered per (subject, purpose)."""

    subject: str
    purpose: str
    channel: str
    message_id: str
    extra: Mapping[str, Any] | None
    created_at: datetime
    updated_at: datetime


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A UTC calendar day as a half-open [start, end) window."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)
