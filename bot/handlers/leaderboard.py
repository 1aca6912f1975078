"""`/leaderboard`: the best stored scores per benchmark."""

from __future__ import annotations

from commands.render import LeaderboardEntry, render_leaderboard

from .base import Invocation, Parts, handles

ROWS = 20


@handles("leaderboard")
async def leaderboard(parts: Parts, inv: Invocation) -> None:
    bench = inv.cmd.get("benchmark")
    names = [bench] if isinstance(bench, str) else list(parts.core.catalog.benchmarks)
    entries: list[LeaderboardEntry] = []
    for name in names:
        for r in await parts.core.store.leaderboard(inv.conv.repo, name, ROWS):
            entries.append(LeaderboardEntry(benchmark=r.benchmark, model=r.model or "?", score=r.score, n=r.n,
                                            date=r.created_at.timestamp(), run_id=r.run_id))
    await inv.reply(parts, render_leaderboard(entries, inv.conv.language,
                                              benchmark=bench if isinstance(bench, str) else None))
