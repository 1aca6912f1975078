"""Runs: creation that survives a re-processed trigger, and state that only moves forward (a finished run stays so)."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import fields
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, case, func, or_, select, update

from commands.jobspec import JobSpec, to_dict

from .base import Access, non_empty, plain_json, utc
from .errors import DuplicateRun, StoreError, UnknownRun
from .models import (
    ACTIVE_RUN_STATES,
    RUN_STATE_RANK,
    RUN_STATES,
    TERMINAL_RUN_STATES,
    NewRun,
    Run,
    RunState,
    Usage,
    day_bounds,
)
from .schema import outbox
from .schema import runs as t

_RUN_FIELDS = tuple(f.name for f in fields(Run))


class _Unset(enum.Enum):
    UNSET = "UNSET"


UNSET = _Unset.UNSET
"""Marks an `update_run` argument as "leave unchanged" (None means "set to NULL")."""


def _run(row: Row[Any]) -> Run:
    m = row._mapping
    return Run(**{name: m[name] for name in _RUN_FIELDS})


def _valid_run_id(run_id: str) -> str:
    non_empty(run_id, "run_id", 64)
    if not all(c.isalnum() or c in "-_." for c in run_id):
        raise StoreError(f"run_id {run_id!r}: use only letters, digits, '-', '_' and '.'")
    return run_id


def predecessors(to: str) -> tuple[str, ...]:
    """The states from which a run may move to `to`: every state of a strictly lower rank."""
    if to not in RUN_STATES:
        raise StoreError(f"run state {to!r} is not one of {', '.join(RUN_STATES)}")
    return tuple(s for s in RUN_STATES if RUN_STATE_RANK[s] < RUN_STATE_RANK[to])


class RunStore(Access):
    async def create_run(self, new: NewRun, *, now: datetime) -> tuple[Run, bool]:
        """Insert a queued run; returns (run, True), or (the existing run, False) when `trigger_key` (or the same
        run id with the same trigger) was already recorded, so a trigger processed twice makes one run.

        Raises DuplicateRun when the run id is taken by a run with another trigger, UnknownRun for a bad retry_of.
        """
        now = utc(now)
        _valid_run_id(new.run_id)
        non_empty(new.repo, "repo", 200)
        non_empty(new.actor, "actor", 100)
        non_empty(new.kind, "kind", 32)
        non_empty(new.run_token, "run_token", 200)
        if not isinstance(new.command, str):
            raise StoreError("command: must be a string")
        spec: Any = new.job_spec
        if isinstance(spec, JobSpec):
            spec = to_dict(spec)
        row = {
            "run_id": new.run_id, "repo": new.repo, "number": new.number, "head_sha": new.head_sha,
            "actor": new.actor, "command": new.command, "kind": new.kind, "model": new.model,
            "job_spec": plain_json(spec, f"run {new.run_id}: job_spec"), "result_key": new.result_key,
            "state": "queued", "phase": None, "reason": None, "run_token": new.run_token,
            "name_token": new.name_token, "trigger_key": new.trigger_key, "last_seq": -1, "progress": None,
            "retry_of": new.retry_of, "created_at": now, "updated_at": now, "compare_ref": new.compare_ref,
            "benchmark_keys": plain_json(new.benchmark_keys, f"run {new.run_id}: benchmark_keys"),
            "backfill_for": new.backfill_for, "compare_seeds": new.compare_seeds,
        }
        stmt = self._insert(t).values(row).on_conflict_do_nothing().returning(t)
        async with self._write() as conn:
            if new.retry_of is not None and (await conn.execute(
                    select(t.c.run_id).where(t.c.run_id == new.retry_of))).first() is None:
                raise UnknownRun(new.retry_of)
            created = (await conn.execute(stmt)).first()
            if created is not None:
                return _run(created), True
            # Nothing inserted: find which unique key matched, and whether it is really the same run.
            conds = [t.c.run_id == new.run_id]
            if new.trigger_key is not None:
                conds.append(t.c.trigger_key == new.trigger_key)
            if new.name_token is not None:
                conds.append(t.c.name_token == new.name_token)
            existing = [_run(r) for r in (await conn.execute(select(t).where(or_(*conds)))).all()]
        for run in existing:
            if new.trigger_key is not None and run.trigger_key == new.trigger_key:
                return run, False
        taken = ", ".join(sorted({r.run_id for r in existing}))
        raise DuplicateRun(f"run {new.run_id}: run id or name token already used by run(s) {taken} "
                           "with a different trigger")

    async def get_run(self, run_id: str, *, for_update: bool = False) -> Run | None:
        """One run; `for_update=True` (inside `Store.transaction()`) locks it until the transaction ends, so two
        callbacks for one run apply their events one after the other."""
        stmt = select(t).where(t.c.run_id == run_id)
        if for_update:
            stmt = stmt.with_for_update()
        async with (self._write() if for_update else self._read()) as conn:
            row = (await conn.execute(stmt)).first()
        return _run(row) if row is not None else None

    async def advance_run(self, run_id: str, to: RunState, *, now: datetime, reason: str | None = None,
                          phase: str | _Unset | None = UNSET) -> tuple[Run, bool]:
        """Move a run forward to `to` (compare-and-set in one statement); returns (run, changed).

        Allowed only from a state of lower rank (queued < dispatched < running < succeeded|failed|cancelled), so a
        late "dispatched" never demotes a running run and nothing ever leaves a finished state: the first terminal
        state wins. `reason`/`phase` are written only when the state changes; timestamps are stamped on the way:
        dispatched_at, started_at, finished_at (kept if already set). A refused move returns (current, False).
        """
        now = utc(now)
        preds = predecessors(to)
        values: dict[str, Any] = {"state": to, "updated_at": now}
        if reason is not None:
            values["reason"] = reason
        if phase is not UNSET:
            values["phase"] = phase
        if to == "dispatched":
            values["dispatched_at"] = func.coalesce(t.c.dispatched_at, now)
        if to == "running":
            values["started_at"] = func.coalesce(t.c.started_at, now)
        if to in TERMINAL_RUN_STATES:
            values["finished_at"] = now
        stmt = update(t).where(t.c.run_id == run_id, t.c.state.in_(preds)).values(values).returning(t)
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
            if row is not None:
                if to in TERMINAL_RUN_STATES:
                    # A run that ended starts nothing more: its dispatch still waiting for a retry is called off
                    # in the same transaction, so a late retry can never start a GPU job for an ended run.
                    await conn.execute(update(outbox).where(outbox.c.run_id == run_id, outbox.c.kind == "dispatch",
                                                            outbox.c.state == "pending")
                                       .values(state="failed", leased_until=None, updated_at=now,
                                               last_error=f"called off: the run ended ({to})"))
                return _run(row), True
            current = (await conn.execute(select(t).where(t.c.run_id == run_id))).first()
        if current is None:
            raise UnknownRun(run_id)
        return _run(current), False

    async def update_run(
        self,
        run_id: str,
        *,
        now: datetime,
        expect_states: Collection[RunState] | None = None,
        phase: str | _Unset | None = UNSET,
        reason: str | _Unset | None = UNSET,
        job_spec: Mapping[str, Any] | JobSpec | _Unset | None = UNSET,
        result_key: str | _Unset | None = UNSET,
        model: str | _Unset | None = UNSET,
        head_sha: str | _Unset | None = UNSET,
        workflow_run_id: int | _Unset | None = UNSET,
        workflow_url: str | _Unset | None = UNSET,
        check_run_id: int | _Unset | None = UNSET,
        comment_id: int | _Unset | None = UNSET,
        gpu_seconds: float | _Unset | None = UNSET,
        progress: Mapping[str, Any] | _Unset | None = UNSET,
        name_token: str | _Unset | None = UNSET,
        compare_ref: str | _Unset | None = UNSET,
        compare_seeds: int | _Unset | None = UNSET,
    ) -> Run | None:
        """Set a run's facts (never its state: that is `advance_run`'s job). Returns the updated run, or None when
        `expect_states` is given and the run is in none of them (compare-and-set); raises UnknownRun.

        Facts learned late are still worth keeping on a finished run (the workflow run id lets a cancel reach
        GitHub; a comment id lets the final edit land), so only pass `expect_states` where the state matters,
        e.g. `phase`/`progress` with `expect_states=ACTIVE_RUN_STATES`.
        """
        now = utc(now)
        values: dict[str, Any] = {"updated_at": now}
        given = {"phase": phase, "reason": reason, "result_key": result_key, "model": model, "head_sha": head_sha,
                 "workflow_run_id": workflow_run_id, "workflow_url": workflow_url, "check_run_id": check_run_id,
                 "comment_id": comment_id, "gpu_seconds": gpu_seconds, "name_token": name_token,
                 "compare_ref": compare_ref, "compare_seeds": compare_seeds}
        values.update({k: v for k, v in given.items() if v is not UNSET})
        if job_spec is not UNSET:
            spec: Any = to_dict(job_spec) if isinstance(job_spec, JobSpec) else job_spec
            values["job_spec"] = plain_json(spec, f"run {run_id}: job_spec")
        if progress is not UNSET:
            values["progress"] = plain_json(progress, f"run {run_id}: progress")
        stmt = update(t).where(t.c.run_id == run_id)
        if expect_states is not None:
            bad = sorted(set(expect_states) - set(RUN_STATES))
            if bad:
                raise StoreError(f"expect_states: unknown state(s) {', '.join(bad)}")
            stmt = stmt.where(t.c.state.in_(tuple(expect_states)))
        async with self._write() as conn:
            row = (await conn.execute(stmt.values(values).returning(t))).first()
            if row is None and (await conn.execute(select(t.c.run_id).where(t.c.run_id == run_id))).first() is None:
                raise UnknownRun(run_id)
        return _run(row) if row is not None else None

    async def mark_events_applied(self, run_id: str, *, expected_last_seq: int, last_seq: int, now: datetime,
                                  progress: Mapping[str, Any] | _Unset | None = UNSET,
                                  phase: str | _Unset | None = UNSET) -> bool:
        """Record that events up to `last_seq` were applied, only if the run's last applied seq is still
        `expected_last_seq` (compare-and-set): of two callbacks racing to apply the same events, one wins."""
        if last_seq < expected_last_seq:
            raise StoreError(f"run {run_id}: last_seq {last_seq} is behind {expected_last_seq}")
        values: dict[str, Any] = {"last_seq": last_seq, "updated_at": utc(now)}
        if progress is not UNSET:
            values["progress"] = plain_json(progress, f"run {run_id}: progress")
        if phase is not UNSET:
            # A finished run keeps the phase it finished in.
            values["phase"] = case((t.c.state.in_(ACTIVE_RUN_STATES), phase), else_=t.c.phase)
        stmt = update(t).where(t.c.run_id == run_id, t.c.last_seq == expected_last_seq).values(values)
        async with self._write() as conn:
            result = await conn.execute(stmt)
            if result.rowcount == 0 and (await conn.execute(
                    select(t.c.run_id).where(t.c.run_id == run_id))).first() is None:
                raise UnknownRun(run_id)
        return bool(result.rowcount)

    async def runs_for_pr(self, repo: str, number: int, *, limit: int = 50) -> list[Run]:
        """A PR's (or issue's) runs, newest first."""
        stmt = (select(t).where(t.c.repo == repo, t.c.number == number)
                .order_by(t.c.created_at.desc(), t.c.run_id.desc()).limit(limit))
        async with self._read() as conn:
            return [_run(r) for r in (await conn.execute(stmt)).all()]

    async def runs_comparing_with(self, repo: str, sha: str, *, limit: int = 50) -> list[Run]:
        """Runs whose comparison is pinned to commit `sha` (`compare_ref` "<ref>@<sha>"), newest first: the PRs a
        baseline landing (or failing) there answers."""
        stmt = (select(t).where(t.c.repo == repo, t.c.compare_ref.like(f"%@{sha}"))
                .order_by(t.c.created_at.desc(), t.c.run_id.desc()).limit(limit))
        async with self._read() as conn:
            return [_run(r) for r in (await conn.execute(stmt)).all()]

    async def runs_for_repo(self, repo: str, *, limit: int = 100) -> list[Run]:
        """A repository's runs, newest first (the web view's runs list): one repository only, never another's."""
        stmt = (select(t).where(t.c.repo == repo)
                .order_by(t.c.created_at.desc(), t.c.run_id.desc()).limit(limit))
        async with self._read() as conn:
            return [_run(r) for r in (await conn.execute(stmt)).all()]

    async def backfills_for(self, repo: str, run_id: str, *, limit: int = 50) -> list[Run]:
        """The baseline runs started for `run_id` (`backfill_for`), newest first, in `repo` only (an index lookup,
        however many runs the repository has)."""
        stmt = (select(t).where(t.c.repo == repo, t.c.backfill_for == run_id)
                .order_by(t.c.created_at.desc(), t.c.run_id.desc()).limit(limit))
        async with self._read() as conn:
            return [_run(r) for r in (await conn.execute(stmt)).all()]

    async def active_runs(self, *, updated_before: datetime | None = None, limit: int | None = None) -> list[Run]:
        """Queued, dispatched and running runs, least recently updated first (the periodic sweep's work list);
        `updated_before` keeps only those silent since then (e.g. no heartbeat for 10 minutes)."""
        stmt = select(t).where(t.c.state.in_(ACTIVE_RUN_STATES)).order_by(t.c.updated_at, t.c.run_id)
        if updated_before is not None:
            stmt = stmt.where(t.c.updated_at < utc(updated_before, "updated_before"))
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            return [_run(r) for r in (await conn.execute(stmt)).all()]

    async def find_run_by_workflow_run(self, workflow_run_id: int) -> Run | None:
        stmt = (select(t).where(t.c.workflow_run_id == workflow_run_id)
                .order_by(t.c.created_at.desc()).limit(1))
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return _run(row) if row is not None else None

    async def bind_workflow_run(self, run_id: str, workflow_run_id: int, *, now: datetime) -> Run | None:
        """Record which workflow run executes an active run, once: None when the run already has one, has
        finished, or another run holds that workflow run (first binding wins; a later claim changes nothing)."""
        now = utc(now)
        taken = select(t.c.run_id).where(t.c.workflow_run_id == workflow_run_id).exists()
        stmt = (update(t).where(t.c.run_id == run_id, t.c.workflow_run_id.is_(None),
                                t.c.state.in_(ACTIVE_RUN_STATES), ~taken)
                .values(workflow_run_id=workflow_run_id, updated_at=now).returning(t))
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
        return _run(row) if row is not None else None

    async def find_run_by_name_token(self, name_token: str) -> Run | None:
        """The run whose unique token was put in the workflow's `run-name` (GHES: no run id on dispatch)."""
        async with self._read() as conn:
            row = (await conn.execute(select(t).where(t.c.name_token == name_token))).first()
        return _run(row) if row is not None else None

    async def find_run_by_trigger(self, trigger_key: str) -> Run | None:
        async with self._read() as conn:
            row = (await conn.execute(select(t).where(t.c.trigger_key == trigger_key))).first()
        return _run(row) if row is not None else None

    # --- quotas ------------------------------------------------------------------------------------------------------

    async def usage(self, repo: str, user: str, day: date) -> Usage:
        """Runs started and GPU-seconds spent by `user` in `repo` on a UTC day."""
        start, end = day_bounds(day)
        return await self.usage_between(repo, user, start, end)

    async def usage_between(self, repo: str, user: str, start: datetime, end: datetime) -> Usage:
        """Usage in [start, end), derived from the runs table: every run created counts (whatever its outcome),
        with the GPU-seconds recorded on it (`update_run(gpu_seconds=...)`, charged to the day the run was
        created). Deriving instead of counting means a retried write can never charge a user twice."""
        start, end = utc(start, "start"), utc(end, "end")
        stmt = (select(func.count(), func.coalesce(func.sum(t.c.gpu_seconds), 0.0))
                .where(t.c.repo == repo, t.c.actor == user, t.c.created_at >= start, t.c.created_at < end))
        async with self._read() as conn:
            count, seconds = (await conn.execute(stmt)).one()
        return Usage(repo=repo, user=user, start=start, end=end, runs=int(count), gpu_seconds=float(seconds))


    async def repo_gpu_seconds(self, repo: str, day: date) -> float:
        """GPU-seconds `repo` has spent or committed on a UTC day (runs created that day): finished runs count
        what they used, runs still in flight their planned limit (the most they can use), so a burst of runs
        cannot overshoot the daily quota while they are all still running."""
        start, end = day_bounds(day)
        stmt = select(t.c.state, t.c.gpu_seconds, t.c.job_spec).where(
            t.c.repo == repo, t.c.created_at >= start, t.c.created_at < end)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        total = 0.0
        for state, used, spec in rows:
            if state in TERMINAL_RUN_STATES:
                total += float(used or 0.0)
            else:
                total += planned_gpu_seconds(spec)
        return total


def planned_gpu_seconds(spec: Mapping[str, Any] | None) -> float:
    """The most GPU time a run may take: its wall-clock limit times the GPUs it holds (one unless it says)."""
    spec = spec or {}
    limits = spec.get("limits") or {}
    gpus = (spec.get("resources") or {}).get("gpus") or 1
    return float(limits.get("wall_clock_s") or 0) * float(gpus)
