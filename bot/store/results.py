"""Evaluation results: saved per run, benchmark, subject and question; found again by content key or baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from commands.results import BenchmarkResult, Results, SubsetScore

from .base import Access, checked_json, non_empty, utc
from .errors import StoreError, UnknownRun
from .models import StoredResult
from .schema import result_questions as tq
from .schema import result_sets as ts
from .schema import result_subsets as tsub
from .schema import results as tr
from .schema import runs

# Rows per executemany chunk: big enough to amortise round trips, small enough to bound one statement's memory.
_CHUNK = 5000


def _stored(row: Row[Any]) -> StoredResult:
    m = row._mapping
    return StoredResult(run_id=m["run_id"], benchmark=m["benchmark"], result_key=m["result_key"],
                        config_hash=m["config_hash"], repo=m["repo"], sha=m["sha"], ref=m["ref"],
                        score=float(m["score"]), n=m["n"], correct=m["correct"], created_at=m["created_at"],
                        model=m.get("model"))


def _validate(run_id: str, results: Results, result_keys: Mapping[str, str]) -> None:
    if not isinstance(results, Results):
        raise StoreError(f"save_results: expected commands.results.Results, got {type(results).__name__}")
    if results.run_id not in ("", run_id):
        raise StoreError(f"save_results: results are for run {results.run_id!r}, not {run_id!r}")
    names = set(results.benchmarks)
    missing, extra = sorted(names - set(result_keys)), sorted(set(result_keys) - names)
    if missing:
        raise StoreError(f"save_results: no result key for benchmark(s) {', '.join(missing)}")
    if extra:
        raise StoreError(f"save_results: result keys given for benchmark(s) not in the results: {', '.join(extra)}")
    for name, bench in results.benchmarks.items():
        if bench.benchmark != name:
            raise StoreError(f"save_results: entry {name!r} holds benchmark {bench.benchmark!r}")
        non_empty(result_keys[name], f"result key of {name}", 128)
        for subset, s in bench.subsets.items():
            if not 0 <= s.correct <= s.n:
                raise StoreError(f"save_results: {name}/{subset}: correct={s.correct} must be within 0..n={s.n}")
        for qid in bench.questions:
            if not qid or len(qid) > 300:
                raise StoreError(f"save_results: {name}: question id {qid[:40]!r} must be 1..300 characters")


async def _executemany(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    for i in range(0, len(rows), _CHUNK):
        await conn.execute(insert(table), rows[i:i + _CHUNK])


class ResultStore(Access):
    async def save_results(self, run_id: str, results: Results, result_keys: Mapping[str, str], repo: str, sha: str,
                           ref: str | None, *, now: datetime) -> None:
        """Save a run's results (all benchmarks, subjects, questions) atomically; saving again replaces them.

        `result_keys` maps each benchmark to its content key (what `find_result` reuses by); `config_hash` comes
        from each BenchmarkResult (what `leaderboard` ranks comparable results by). The run must exist.
        """
        now = utc(now)
        _validate(run_id, results, result_keys)
        non_empty(repo, "repo", 200)
        non_empty(sha, "sha", 64)
        train = checked_json(dict(results.train), f"run {run_id}: train")
        manifest = checked_json(dict(results.manifest), f"run {run_id}: manifest")
        artifacts = checked_json([dict(a) for a in results.artifacts], f"run {run_id}: artifacts")
        async with self._write() as conn:
            if (await conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id))).first() is None:
                raise UnknownRun(run_id)
            # Children go with their parents (ON DELETE CASCADE), so a re-save never leaves stale questions behind.
            await conn.execute(delete(ts).where(ts.c.run_id == run_id))
            await conn.execute(insert(ts).values(
                run_id=run_id, status=results.status, repo=repo, sha=sha, ref=ref, train=train, manifest=manifest,
                artifacts=artifacts, saved_at=now))
            for name, bench in sorted(results.benchmarks.items()):
                result_id = (await conn.execute(insert(tr).values(
                    run_id=run_id, benchmark=name, result_key=result_keys[name], config_hash=bench.config_hash,
                    repo=repo, sha=sha, ref=ref, score=bench.score, n=bench.n, correct=bench.correct,
                    created_at=now).returning(tr.c.id))).scalar_one()
                subsets = [{"result_id": result_id, "subset": k, "n": v.n, "correct": v.correct}
                           for k, v in bench.subsets.items()]
                questions = [{"result_id": result_id, "qid": q, "correct": bool(ok)}
                             for q, ok in bench.questions.items()]
                await _executemany(conn, tsub, subsets)
                await _executemany(conn, tq, questions)

    async def load_results(self, run_id: str) -> Results | None:
        """A run's saved results, exactly as saved (None if it saved none)."""
        async with self._read() as conn:
            head = (await conn.execute(select(ts).where(ts.c.run_id == run_id))).first()
            if head is None:
                return None
            rows = (await conn.execute(select(tr).where(tr.c.run_id == run_id))).all()
            benches = await self._benchmarks(conn, rows)
        m = head._mapping
        return Results(run_id=run_id, status=m["status"], benchmarks={b.benchmark: b for b in benches},
                       train=dict(m["train"]), manifest=dict(m["manifest"]),
                       artifacts=tuple(dict(a) for a in m["artifacts"]))

    async def result_keys(self, run_id: str) -> dict[str, str]:
        async with self._read() as conn:
            rows = (await conn.execute(select(tr.c.benchmark, tr.c.result_key).where(tr.c.run_id == run_id))).all()
        return {r[0]: r[1] for r in rows}

    async def find_result(self, repo: str, result_key: str) -> tuple[str, BenchmarkResult] | None:
        """The newest result in `repo` with this content key: identical work that need not run again."""
        stmt = (select(tr).where(tr.c.repo == repo, tr.c.result_key == result_key)
                .order_by(tr.c.created_at.desc(), tr.c.id.desc()).limit(1))
        return await self._one(stmt)

    async def leaderboard(self, repo: str, benchmark: str, limit: int = 10, *,
                          config_hash: str | None = None) -> list[StoredResult]:
        """Best scores of one repository on a benchmark, one entry per content key (its newest run), highest
        first. Always one repository: a private repository's scores must never show on another's board.

        Pass `config_hash` to rank only comparable results (same subjects, limit and shots).
        """
        inner = select(tr, runs.c.model, func.row_number().over(
            partition_by=tr.c.result_key, order_by=(tr.c.created_at.desc(), tr.c.id.desc())).label("rn"),
        ).join(runs, runs.c.run_id == tr.c.run_id).where(tr.c.benchmark == benchmark, tr.c.repo == repo)
        if config_hash is not None:
            inner = inner.where(tr.c.config_hash == config_hash)
        sub = inner.subquery()
        stmt = (select(sub).where(sub.c.rn == literal(1))
                .order_by(sub.c.score.desc(), sub.c.n.desc(), sub.c.created_at, sub.c.run_id).limit(limit))
        async with self._read() as conn:
            return [_stored(r) for r in (await conn.execute(stmt)).all()]

    async def results_for_repo(self, repo: str, *, run_ids: Sequence[str] | None = None,
                               shas: Sequence[str] | None = None, limit: int = 5000) -> list[StoredResult]:
        """A repository's stored results (without per-question rows), oldest first, optionally only those of some
        runs or commits: what the web view's runs list and score history show. Always one repository."""
        stmt = (select(tr, runs.c.model).join(runs, runs.c.run_id == tr.c.run_id).where(tr.c.repo == repo)
                .order_by(tr.c.created_at, tr.c.id).limit(limit))
        if run_ids is not None:
            stmt = stmt.where(tr.c.run_id.in_(list(run_ids)))
        if shas is not None:
            stmt = stmt.where(tr.c.sha.in_(list(shas)))
        async with self._read() as conn:
            return [_stored(r) for r in (await conn.execute(stmt)).all()]

    async def _one(self, stmt: Any) -> tuple[str, BenchmarkResult] | None:
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            (bench,) = await self._benchmarks(conn, [row])
        return row._mapping["run_id"], bench

    @staticmethod
    async def _benchmarks(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[BenchmarkResult]:
        ids = [r._mapping["id"] for r in rows]
        subsets: dict[int, dict[str, SubsetScore]] = {i: {} for i in ids}
        questions: dict[int, dict[str, bool]] = {i: {} for i in ids}
        if ids:
            for rid, subset, n, correct in (await conn.execute(
                    select(tsub.c.result_id, tsub.c.subset, tsub.c.n, tsub.c.correct)
                    .where(tsub.c.result_id.in_(ids)))).all():
                subsets[rid][subset] = SubsetScore(n=n, correct=correct)
            for rid, qid, ok in (await conn.execute(
                    select(tq.c.result_id, tq.c.qid, tq.c.correct).where(tq.c.result_id.in_(ids)))).all():
                questions[rid][qid] = bool(ok)
        out = []
        for r in rows:
            m = r._mapping
            out.append(BenchmarkResult(benchmark=m["benchmark"], subsets=dict(sorted(subsets[m["id"]].items())),
                                       questions=dict(sorted(questions[m["id"]].items())),
                                       config_hash=m["config_hash"]))
        return out
