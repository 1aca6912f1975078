"""After a crash, finding the runs the dead process had dispatched costs a listing or two, not one per run
(issue 17, item 4: up to 709 extra GETs before): one listing of the workflow's recent dispatches answers every
lookup, and nothing is dispatched twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.github.port import RetryPolicy
from bot.github.pygithub_impl import PyGithubPort
from bot.metrics import Metrics
from bot.outbox import Outbox
from bot.store import Store
from tests.fakes.github import FakeGitHub

REPO = "Codertocat/Hello-World"
WORKFLOW = "tunebot-run.yml"
OTHERS = 250  # runs of the workflow in the lookup window that are not in question (earlier bursts)
UNBOUND = 40  # dispatched, then the process died before recording it
NEVER = 3  # claimed, then the process died before dispatching


async def test_a_restarted_bot_finds_its_unbound_runs_with_a_bounded_number_of_listings(tmp_path: Path) -> None:
    ago = [timedelta(minutes=4)]  # GitHub's clock: the runs of the dead process are minutes old at the restart
    async with FakeGitHub(clock=lambda: datetime.now(UTC) - ago[0]) as gh:
        gh.add_bot_repo(REPO, workflow=WORKFLOW)
        store = await Store.open(f"sqlite:///{tmp_path / 'bot.db'}")
        unpaced = {"writes_per_minute": 0, "writes_per_hour": 0, "retry": RetryPolicy(max_attempts=2)}
        before_crash = PyGithubPort.with_token(gh.url, gh.token, **unpaced)
        after_restart = PyGithubPort.with_token(gh.url, gh.token, **unpaced)
        try:
            decided = datetime.now(UTC) - timedelta(minutes=5)
            for i in range(OTHERS):
                await before_crash.dispatch_workflow(REPO, WORKFLOW, "main", {"run_id": f"tb-other{i}"})
            tokens = [f"tb-unbound{i}" for i in range(UNBOUND)] + [f"tb-never{i}" for i in range(NEVER)]
            for token in tokens:
                await store.enqueue(f"dispatch:{token}", "dispatch",
                                    {"repo": REPO, "workflow": WORKFLOW, "ref": "main", "inputs": {"run_id": token},
                                     "decided_at": decided.isoformat()}, decided)
            claimed = await store.due(datetime.now(UTC), 100)  # the process that then died
            assert len(claimed) == len(tokens)
            ago[0] = timedelta(minutes=2)
            for token in tokens[:UNBOUND]:  # it got this far: GitHub has the run, the outbox does not know
                await before_crash.dispatch_workflow(REPO, WORKFLOW, "main", {"run_id": token})
            ago[0] = timedelta(0)
            dispatched = len(gh.runs)

            # The restarted bot: a fresh port (nothing remembered), the leases ran out.
            outbox = Outbox(store=store, github=after_restart, bot_login="tunebot[bot]", metrics=Metrics(),
                            clock=lambda: time.time() + 120)
            listings_before = len(gh.requests_to("GET", f"/repos/*/actions/workflows/{WORKFLOW}/runs"))
            assert await outbox.pump(limit=100) == len(tokens)
            listings = gh.requests_to("GET", f"/repos/*/actions/workflows/{WORKFLOW}/runs")[listings_before:]

            by_token = {r.inputs["run_id"]: r for r in gh.runs.values()}
            assert len(gh.runs) == dispatched + NEVER  # the unbound runs were found, not dispatched again
            for token in tokens:
                item = await store.get_by_key(f"dispatch:{token}")
                assert item is not None and item.state == "done"
                assert item.result["workflow_run_id"] == by_token[token].id
            # One full listing of the window (OTHERS + UNBOUND runs: 3 pages of 100) answers all 40 unbound runs;
            # each never-dispatched one costs one short listing of what was created since. A listing per lookup,
            # as before, was 49 requests here (each unbound run on the first page, each missing one all 3 pages)
            # and grows with unbound runs × pages.
            assert len(listings) <= 3 + NEVER, [r.query for r in listings]
            assert all(r.query["event"] == "workflow_dispatch" and r.query["created"].startswith(">=")
                       for r in listings)
            print(f"recovery listings: {len(listings)} for {UNBOUND} unbound + {NEVER} undispatched runs "
                  f"among {dispatched} runs in the window")
        finally:
            await before_crash.close()
            await after_restart.close()
            await store.close()
