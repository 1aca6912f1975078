"""Plans waiting for `/approve`: a costly /train's exact jobs, bound to the head commit and their content hash."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update

from .base import Access, checked_json, non_empty, utc
from .models import PendingPlan
from .schema import plans as t


def _plan(row: Row[Any]) -> PendingPlan:
    m = row._mapping
    return PendingPlan(id=m["id"], repo=m["repo"], number=m["number"], head_sha=m["head_sha"],
                       plan_hash=m["plan_hash"], requester=m["requester"], command=m["command"],
                       jobs=tuple(m["jobs"]), reason=m["reason"], state=m["state"], created_at=m["created_at"],
                       decided_by=m["decided_by"], decided_at=m["decided_at"])


class PlanStore(Access):
    async def add_plan(self, repo: str, number: int, head_sha: str, plan_hash: str, requester: str, command: str,
                       jobs: Sequence[Mapping[str, Any]], reason: str, *, now: datetime) -> PendingPlan:
        """Keep a plan waiting for approval; an identical plan already waiting is returned instead of a copy."""
        non_empty(repo, "repo", 200)
        non_empty(head_sha, "head_sha", 64)
        non_empty(plan_hash, "plan_hash", 64)
        non_empty(requester, "requester", 100)
        async with self._write() as conn:
            same = (await conn.execute(select(t).where(t.c.repo == repo, t.c.number == number,
                                                       t.c.plan_hash == plan_hash, t.c.state == "waiting"))).first()
            if same is not None:
                return _plan(same)
            stmt = insert(t).values(repo=repo, number=number, head_sha=head_sha, plan_hash=plan_hash,
                                    requester=requester, command=command[:4000],
                                    jobs=checked_json([dict(j) for j in jobs], "plan jobs"),
                                    reason=reason[:2000], state="waiting", created_at=utc(now)).returning(t)
            return _plan((await conn.execute(stmt)).one())

    async def waiting_plans(self, repo: str, number: int) -> list[PendingPlan]:
        """This PR's plans still waiting for approval, newest first."""
        stmt = (select(t).where(t.c.repo == repo, t.c.number == number, t.c.state == "waiting")
                .order_by(t.c.created_at.desc(), t.c.id.desc()))
        async with self._read() as conn:
            return [_plan(r) for r in (await conn.execute(stmt)).all()]

    async def decide_plan(self, plan_id: int, state: str, decided_by: str, *, now: datetime) -> bool:
        """Move a waiting plan to `approved` (or `superseded`); False if it was no longer waiting (approved twice:
        only the first approval starts it)."""
        stmt = (update(t).where(t.c.id == plan_id, t.c.state == "waiting")
                .values(state=state, decided_by=decided_by, decided_at=utc(now)))
        async with self._write() as conn:
            return int((await conn.execute(stmt)).rowcount) == 1
