"""A running tunebot service against a fake GitHub on 127.0.0.1, with a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import RUNTIME_KEY, build_app, open_service
from bot.config import Config, Secret, load_config
from bot.front import start_site
from bot.github.port import RetryPolicy
from bot.github.pygithub_impl import PyGithubPort
from bot.service import Service
from bot.store import Run
from commands.events import make_event, sign_body
from commands.jobspec import job_from_json
from tests.bot.service.memory import memory_bot, migrated_db  # noqa: F401  (the in-memory service, for pytest)
from tests.fakes.deliveries import DeliveryResult, deliver, pr_comment_payload, pull_request_payload
from tests.fakes.github import FakeGitHub, FakeRepo, generate_app_key, public_key_of

SECRET = "webhook-secret-for-tests"
SIGNING_KEY = "job-signing-key-for-tests"
REPO = "Codertocat/Hello-World"  # the repository of octokit's issue_comment examples
WORKFLOW = "tunebot-run.yml"


@dataclass
class Bot:
    """The service under test plus the fakes around it."""

    github: FakeGitHub
    repo: FakeRepo
    config: Config
    service: Service
    url: str
    runner: web.AppRunner
    session: aiohttp.ClientSession

    async def comment(self, body: str, *, number: int = 1, login: str = "Codertocat", association: str = "OWNER",
                      delivery_id: str | None = None, action: str = "created", secret: str = SECRET,
                      user_type: str = "User") -> DeliveryResult:
        comment_id = self.github.add_comment(REPO, number, body, login=login, user_type=user_type)
        payload = pr_comment_payload(body, number=number, login=login, association=association,
                                     comment_id=comment_id, action=action, user_type=user_type)
        return await deliver(f"{self.url}/webhook", "issue_comment", payload, secret, delivery_id,
                             session=self.session)

    async def pull_request(self, action: str, number: int, head_sha: str, *, login: str = "Codertocat",
                           delivery_id: str | None = None) -> DeliveryResult:
        """A signed `pull_request` webhook about PR `number` of the bot's repository at `head_sha`."""
        payload = pull_request_payload(action, repo=REPO, number=number, head_sha=head_sha, login=login)
        return await deliver(f"{self.url}/webhook", "pull_request", payload, SECRET, delivery_id,
                             session=self.session)

    def send_workflow_webhooks(self) -> None:
        """Let the fake GitHub deliver workflow_run / workflow_job webhooks to this service."""
        self.github.webhook_url = f"{self.url}/webhook"
        self.github.webhook_secret = SECRET

    async def start_run(self, text: str = "/train tiny max_steps=20", **kw: Any) -> Run:
        """Comment a command that dispatches a run and wait for it; the run as stored."""
        await self.comment(text, **kw)
        await self.settle()
        run = await self.service.store.get_run(job_of(self.dispatches()[-1]).run_id)
        assert run is not None
        return run

    async def settle(self, timeout: float = 20.0) -> None:
        """Wait until every accepted delivery is processed and the outbox is empty."""
        store = self.service.store
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await self.service.settle()
            busy = self.runner.app[RUNTIME_KEY].in_flight if self.runner.app else 0
            pending = await store.unfinished_deliveries(limit=1)
            due = await store.due(self.service.now(), 1)
            for item in due:  # perform what is due now rather than waiting for the loop
                await self.service.outbox.perform(item)
            if not pending and not busy and not due and not self.service.outbox.busy:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("service did not settle")

    def dispatches(self) -> list[dict[str, Any]]:
        return [r.json for r in self.github.requests_to("POST", "*/dispatches")]

    def bot_comments(self, number: int = 1) -> list[str]:
        return [c.body for c in self.github.comments_on(REPO, number) if c.login == self.config.bot_login]

    async def post_event(self, run_id: str, token: str, seq: int, type_: str, **data: Any) -> tuple[int, str]:
        body = make_event(run_id, seq, 1_800_000_000.0 + seq, type_, **data).to_json().encode()
        async with self.session.post(f"{self.url}/api/runs/{run_id}/events", data=body,
                                     headers={"X-Tunebot-Signature-256": sign_body(token, body)}) as resp:
            return resp.status, await resp.text()


def job_of(dispatch: dict[str, Any]) -> Any:
    return job_from_json(dispatch["inputs"]["job"])


@pytest.fixture
async def make_bot(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Bot]]]:
    made: list[Bot] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(*, db: Path | None = None, on_dispatch: Any = None, policy: str | None = None,
                   github: FakeGitHub | None = None, app: bool = False, **config: Any) -> Bot:
        gh = github
        key = generate_app_key() if app else None
        if gh is None:
            # The App's slug and the token's user are not "tunebot" on purpose: the bot must learn who it is.
            gh = FakeGitHub(on_dispatch=on_dispatch, app_public_key=public_key_of(key) if key else None,
                            app_slug="acme-tunebot", token_login="acme-ci-bot")
            await gh.start()
            repo = gh.add_bot_repo(REPO, workflow=WORKFLOW)
            if policy is not None:
                repo.add_file(".tunebot.yml", policy)
        else:
            repo = gh.repos[REPO.lower()]
        if key is not None:
            config.update(app_id=str(gh.app_id), private_key=Secret(key))
        else:
            config.update(github_token=Secret(gh.token))
        cfg = load_config(environ={}, webhook_secret=Secret(SECRET),
                          github_api_url=gh.url, job_signing_key=Secret(SIGNING_KEY),
                          database_url=f"sqlite:///{db or tmp_path / 'bot.db'}",
                          **{"card_edit_interval_s": 0.0, "checkpoint_dir": str(tmp_path / "checkpoints"), **config})
        retry = RetryPolicy(max_attempts=3, base_delay=0.01)
        unpaced: dict[str, Any] = {"writes_per_minute": 0, "writes_per_hour": 0, "retry": retry}
        port = PyGithubPort.with_app(gh.url, gh.app_id, key, **unpaced) if key else \
            PyGithubPort.with_token(gh.url, gh.token, **unpaced)
        chat_session = aiohttp.ClientSession() if (cfg.slack_token or cfg.dingtalk_robots) else None
        if chat_session is not None:
            sessions.append(chat_session)
        service = await open_service(cfg, github=port, session=chat_session)
        app = build_app(service)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = await start_site(runner, cfg, service.metrics, host="127.0.0.1", port=0)  # the door `serve` uses
        url = f"http://127.0.0.1:{site.port}"
        service.config = replace(service.config, public_url=url)
        bot = Bot(gh, repo, service.config, service, url, runner, aiohttp.ClientSession())
        made.append(bot)
        return bot

    yield make
    for bot in made:
        await bot.session.close()
        await bot.runner.cleanup()
        await bot.service.store.close()
        await bot.service.github.close()  # type: ignore[attr-defined]
        await bot.github.close()
    for session in sessions:
        await session.close()


def event_json(run_id: str, seq: int, type_: str, **data: Any) -> str:
    return json.dumps(make_event(run_id, seq, 0.0, type_, **data).to_dict())
