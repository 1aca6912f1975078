"""Under a burst of commands, GitHub's write pace goes to the dispatches first (issue 17, item 4): the reactions
and run cards decided alongside them wait, and no delivery worker waits on the pace."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.app import build_app, open_service
from bot.config import Secret, load_config
from bot.front import start_site
from bot.github.port import RetryPolicy
from bot.github.pygithub_impl import PyGithubPort
from tests.bot.service.conftest import REPO, SECRET, SIGNING_KEY, WORKFLOW
from tests.fakes.deliveries import deliver, pr_comment_payload
from tests.fakes.github import FakeGitHub

COMMANDS = 8
PER_MINUTE = 60  # a burst of 8 writes at once, then one every ~1.2 s


async def test_a_burst_dispatches_every_command_before_the_other_writes(tmp_path: Path) -> None:
    async with FakeGitHub() as gh, aiohttp.ClientSession() as session:
        repo = gh.add_bot_repo(REPO, workflow=WORKFLOW)
        repo.default_permission = ("write", "write")
        repo.add_file(".tunebot.yml", "quotas:\n  gpu_hours_per_day: 100000\n")
        cfg = load_config(environ={}, webhook_secret=Secret(SECRET), github_api_url=gh.url,
                          github_token=Secret(gh.token), job_signing_key=Secret(SIGNING_KEY),
                          database_url=f"sqlite:///{tmp_path / 'bot.db'}", card_edit_interval_s=0.0)
        port = PyGithubPort.with_token(gh.url, gh.token, writes_per_minute=PER_MINUTE, writes_per_hour=0,
                                       retry=RetryPolicy(max_attempts=3, base_delay=0.01))
        service = await open_service(cfg, github=port)
        runner = web.AppRunner(build_app(service), access_log=None)
        await runner.setup()
        try:
            site = await start_site(runner, cfg, service.metrics, host="127.0.0.1", port=0)

            async def command(login: str) -> None:
                cid = gh.add_comment(REPO, 1, "/train tiny max_steps=20", login=login)
                payload = pr_comment_payload("/train tiny max_steps=20", login=login, comment_id=cid,
                                             association="MEMBER")
                result = await deliver(f"http://127.0.0.1:{site.port}/webhook", "issue_comment", payload, SECRET,
                                       session=session)
                assert result.status == 202

            sent = time.monotonic()
            await asyncio.gather(*(command(f"user{i}") for i in range(COMMANDS)))
            deadline = time.monotonic() + 60
            while len(gh.runs) < COMMANDS and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            took = time.monotonic() - sent
            writes = [r.path.rsplit("/", 1)[-1] for r in gh.requests if r.method in ("POST", "PATCH")]
            # Every command was decided at once: the workers did not wait for the pace of the writes.
            assert len(await service.store.runs_for_pr(REPO, 1)) == COMMANDS
            assert len(gh.runs) == COMMANDS, writes
            # The dispatches overtook the reactions and cards: the last one went out among the first writes
            # (FIFO, as before, it was write 3 of each command: about the 23rd of 24, ~15 s behind the first). A
            # claim of 4 holds only what was decided by then: a reaction is decided before its command's dispatch
            # (which waits for GitHub's answers), so each of the first two claims may carry reactions ahead of
            # dispatches decided a moment later.
            last_dispatch = max(i for i, w in enumerate(writes) if w == "dispatches")
            assert last_dispatch < COMMANDS + 8, writes
            assert writes.count("comments") < COMMANDS, writes  # the run cards are still waiting their turn
            assert took < 10, took
        finally:
            await runner.cleanup()
            await service.store.close()
            await port.close()
