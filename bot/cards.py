"""Owns what a run looks like on GitHub: its sticky run card (edited in place, coalesced) and its check run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.coalesce import Coalescer
from bot.core import Core
from bot.store import Run
from commands.compare import Comparison, Conclusion
from commands.events import Event
from commands.policy import Policy
from commands.render import RunView, ScoreView, check_run_output, render_run_card, run_marker
from commands.run_view import build_run_view

CHECK_NAME = "tunebot"
_CHECK_CONCLUSION = {"succeeded": "success", "failed": "failure", "cancelled": "cancelled"}


class Cards:
    def __init__(self, core: Core) -> None:
        self.core = core
        # GitHub's secondary limits allow no edit per progress line: one card edit per interval per run.
        self._edits = Coalescer(core.config.card_edit_interval_s)

    async def settle(self) -> None:
        """Write the card edits still waiting for their interval (tests, shutdown)."""
        await self._edits.flush()

    async def view(self, run: Run, events: Sequence[Event] | None = None,
                   baseline: Mapping[str, ScoreView] | None = None, baseline_label: str = "") -> RunView:
        evs = list(events) if events is not None else await self.core.store.events_after(run.run_id, -1)
        return build_run_view(run, evs, baseline=baseline, baseline_label=baseline_label)

    async def render(self, run: Run, **kw: Any) -> str:
        return render_run_card(await self.view(run, **kw), await self.core.language_for(run.repo))

    async def create(self, run: Run) -> None:
        """Queue the card and the check run of a newly dispatched run (the dispatch flushes the outbox)."""
        now = self.core.now()
        store = self.core.store
        if run.number is not None:
            await store.enqueue(f"card:{run.run_id}:create", "comment_create",
                                {"repo": run.repo, "number": run.number, "marker": run_marker(run.run_id),
                                 "subject": run.run_id, "purpose": "card", "body": await self.render(run)},
                                now, run_id=run.run_id)
        if self.core.config.app_mode and run.head_sha:
            await store.enqueue(f"check:{run.run_id}:create", "check_create",
                                {"repo": run.repo, "name": f"{CHECK_NAME} ({run.kind})", "head_sha": run.head_sha,
                                 "status": "queued", "external_id": run.run_id, "run_id": run.run_id,
                                 "output": {"title": f"{run.kind} {run.model or ''} queued",
                                            "summary": f"`{run.command}` by @{run.actor}"}},
                                now, run_id=run.run_id)

    async def refresh(self, run_id: str, *, final: bool = False, **kw: Any) -> None:
        """Re-render the sticky card; edits are coalesced to one per interval, the final state always goes out."""

        async def write(_key: str) -> None:
            run = await self.core.store.get_run(run_id)  # rendered when written: a delayed edit shows the latest
            if run is None or run.number is None:
                return
            await self.core.write(f"card:{run_id}:edit", "comment_edit",
                                  {"repo": run.repo, "subject": run_id, "purpose": "card",
                                   "body": await self.render(run, **kw)}, run_id=run_id, replace=True)

        await self._edits.update(run_id, write, final=final)

    async def check_started(self, run: Run) -> None:
        if self.core.config.app_mode:
            await self.core.store.enqueue(f"check:{run.run_id}:start", "check_update",
                                          {"repo": run.repo, "run_id": run.run_id, "status": "in_progress",
                                           "details_url": run.workflow_url}, self.core.now(), run_id=run.run_id)

    async def complete_check(self, run: Run, *, comparison: Comparison | None = None,
                             conclusion: Conclusion | None = None) -> None:
        if not self.core.config.app_mode:
            return
        fresh = await self.core.store.get_run(run.run_id) or run
        if comparison is not None and conclusion is not None:
            policy = await self.core.policy_for(run.repo)
            out = check_run_output(comparison, conclusion, policy.language if isinstance(policy, Policy) else "en")
            output = {"title": out.title, "summary": out.summary, "text": out.text}
            concl = conclusion.conclusion if fresh.state == "succeeded" else "failure"
        else:
            concl = _CHECK_CONCLUSION.get(fresh.state, "neutral")
            output = {"title": f"{fresh.kind} {fresh.state}", "summary": fresh.reason or f"`{fresh.command}`"}
        await self.core.write(f"check:{run.run_id}:update", "check_update",
                              {"repo": run.repo, "run_id": run.run_id, "status": "completed", "conclusion": concl,
                               "output": output, "details_url": fresh.workflow_url,
                               "completed_at": self.core.now().isoformat()}, run_id=run.run_id, replace=True)

    async def finished(self, run: Run) -> None:
        """A run ended without a comparison to post: its check completes and its card shows the end state."""
        await self.complete_check(run)
        await self.refresh(run.run_id, final=True)
