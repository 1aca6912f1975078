"""Grants: a maintainer's approval to run a PR's code, bound to the exact head sha so a new push voids it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update

from .base import Access, non_empty, plain_json, utc
from .models import Grant
from .schema import grants as t


def _grant(row: Row[Any]) -> Grant:
    m = row._mapping
    return Grant(id=m["id"], repo=m["repo"], number=m["number"], head_sha=m["head_sha"], granted_by=m["granted_by"],
                 scope=m["scope"], created_at=m["created_at"], revoked_at=m["revoked_at"])


class GrantStore(Access):
    async def grant(self, repo: str, number: int, head_sha: str, granted_by: str,
                    scope: Mapping[str, Any] | None = None, *, now: datetime) -> Grant:
        """Record an approval for exactly this head sha; `scope` says what it covers (e.g. commands, arguments)."""
        non_empty(repo, "repo", 200)
        non_empty(head_sha, "head_sha", 64)
        non_empty(granted_by, "granted_by", 100)
        stmt = insert(t).values(repo=repo, number=number, head_sha=head_sha, granted_by=granted_by,
                                scope=plain_json(scope or {}, "grant scope"), created_at=utc(now)).returning(t)
        async with self._write() as conn:
            return _grant((await conn.execute(stmt)).one())

    async def grant_for(self, repo: str, number: int, head_sha: str) -> Grant | None:
        """The newest unrevoked grant for this PR at this exact sha; a push (another sha) finds none."""
        stmt = (select(t).where(t.c.repo == repo, t.c.number == number, t.c.head_sha == head_sha,
                                t.c.revoked_at.is_(None))
                .order_by(t.c.created_at.desc(), t.c.id.desc()).limit(1))
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return _grant(row) if row is not None else None

    async def revoke_grants(self, repo: str, number: int, *, now: datetime) -> int:
        """Revoke every live grant of a PR (e.g. `/revoke`, or the PR was closed); returns how many."""
        stmt = (update(t).where(t.c.repo == repo, t.c.number == number, t.c.revoked_at.is_(None))
                .values(revoked_at=utc(now)))
        async with self._write() as conn:
            return int((await conn.execute(stmt)).rowcount)
