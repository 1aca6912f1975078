"""The service under test with GitHub in memory: no HTTP server, no PyGithub, no thread pool; deliveries and agent
callbacks go straight to the service's entry points, and every GitHub request is recorded as `(method, url, body)`.

Webhook intake (signatures, 202/200, the HTTP door) and the PyGithub transport are tested on the loopback fakes
(tests/bot/service/test_intake_*.py, tests/bot/github, tests/e2e); everything behind `process_delivery` is tested here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_service
from bot.config import Config, Secret, load_config
from bot.service import Service
from bot.store import NewDelivery, Run, Store
from commands.events import make_event, sign_body
from commands.jobspec import job_from_json
from tests.fakes.deliveries import APP_TARGET_ID, load_payload, pr_comment_payload, pull_request_payload
from tests.fakes.github import FakeRepo
from tests.fakes.github_port import InMemoryGitHub

SECRET = "webhook-secret-for-tests"
SIGNING_KEY = "job-signing-key-for-tests"
REPO = "Codertocat/Hello-World"  # the repository of octokit's issue_comment examples
WORKFLOW = "tunebot-run.yml"
PUBLIC_URL = "https://tunebot.example.test"  # only ever a string in jobs: nothing listens there
INSTALLATION = {"id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}


@dataclass(frozen=True)
class Delivered:
    """What the intake would have answered (202 new, 200 duplicate), the delivery's id and the comment's."""

    status: int
    delivery_id: str
    comment_id: int | None = None


@dataclass
class MemoryBot:
    """The service plus the in-memory GitHub around it; the same helpers as tests/bot/service/conftest.py's `Bot`."""

    github: InMemoryGitHub
    repo: FakeRepo
    service: Service

    @property
    def config(self) -> Config:
        return self.service.config

    @property
    def url(self) -> str:
        return self.config.public_url

    # ---------------------------------------------------------------- what GitHub sends
    async def deliver(self, event: str, payload: dict[str, Any], delivery_id: str | None = None) -> Delivered:
        """One delivery, as the intake records it and a worker processes it (at once, in this task). An exception
        from the service marks the delivery failed, as the worker does, and fails the test."""
        store = self.service.store
        delivery_id = delivery_id or str(uuid.uuid4())
        body = _compact(payload)
        [new] = await store.record_deliveries([NewDelivery(source=APP_TARGET_ID, delivery_id=delivery_id, event=event,
                                                           body=body, received_at=self.service.now())])
        if not new:
            return Delivered(200, delivery_id)
        for delivery in await store.claim_pending(16, now=self.service.now()):
            try:
                await self.service.process_delivery(delivery)
            except Exception as exc:
                await store.mark_delivery(delivery.id, "failed", f"{type(exc).__name__}: {exc}",
                                          now=self.service.now())
                raise
            await store.mark_deliveries([delivery.id], "done", now=self.service.now())
        return Delivered(202, delivery_id)

    async def comment(self, body: str, *, number: int = 1, login: str = "Codertocat", association: str = "OWNER",
                      delivery_id: str | None = None, action: str = "created", user_type: str = "User") -> Delivered:
        """Somebody comments on PR `number`: the comment exists on GitHub, then its `issue_comment` arrives."""
        comment_id = self.github.add_comment(REPO, number, body, login=login, user_type=user_type)
        payload = pr_comment_payload(body, number=number, login=login, association=association,
                                     comment_id=comment_id, action=action, user_type=user_type)
        delivered = await self.deliver("issue_comment", payload, delivery_id)
        return replace(delivered, comment_id=comment_id)

    async def pull_request(self, action: str, number: int, head_sha: str, *, login: str = "Codertocat",
                           delivery_id: str | None = None) -> Delivered:
        payload = pull_request_payload(action, repo=REPO, number=number, head_sha=head_sha, login=login)
        return await self.deliver("pull_request", payload, delivery_id)

    async def workflow_run(self, run_id: int, action: str | None = None) -> Delivered:
        """The `workflow_run` webhook GitHub sends for the run's current state (as FakeGitHub.emit_workflow_run)."""
        run = self.github.runs[run_id]
        action = action or {"queued": "requested", "in_progress": "in_progress"}.get(run.status, "completed")
        payload = load_payload("workflow_run.completed", action=action, installation=INSTALLATION)
        payload["repository"]["full_name"] = run.repo
        payload["workflow_run"].update({
            "id": run.id, "name": run.name, "display_title": run.display_title, "head_branch": run.head_branch,
            "head_sha": run.head_sha, "event": run.event, "path": f".github/workflows/{run.workflow_file}",
            "status": run.status, "conclusion": run.conclusion, "run_number": run.run_number,
            "run_attempt": run.run_attempt, "html_url": f"https://github.com/{run.repo}/actions/runs/{run.id}"})
        return await self.deliver("workflow_run", payload)

    async def workflow_job(self, run_id: int, action: str, *, job_id: int | None = None,
                           job_name: str = "train") -> Delivered:
        """A `workflow_job` webhook for one job of the run (as FakeGitHub.emit_workflow_job)."""
        run = self.github.runs[run_id]
        job_id = job_id or run.id * 10 + 1
        payload = load_payload("workflow_job.completed.success.with-organization", action=action,
                               installation=INSTALLATION)
        payload["repository"]["full_name"] = run.repo
        payload["workflow_job"].update({
            "id": job_id, "run_id": run.id, "name": job_name, "head_sha": run.head_sha, "run_attempt": run.run_attempt,
            "workflow_name": run.name, "head_branch": run.head_branch, "status": action,
            "conclusion": run.conclusion if action == "completed" else None,
            "html_url": f"https://github.com/{run.repo}/actions/runs/{run.id}/job/{job_id}"})
        return await self.deliver("workflow_job", payload)

    # ---------------------------------------------------------------- what the agent sends
    async def post_event(self, run_id: str, token: str, seq: int, type_: str, **data: Any) -> tuple[int, str]:
        """A signed agent callback, answered by the service as `POST /api/runs/{run}/events` answers it."""
        body = make_event(run_id, seq, 1_800_000_000.0 + seq, type_, **data).to_json().encode()
        return await self.service.accept_callback(run_id, body, sign_body(token, body))

    # ---------------------------------------------------------------- waiting and looking
    async def settle(self, rounds: int = 50) -> None:
        """Write what the cards hold back and perform every outbox item that is due, until nothing is left."""
        for _ in range(rounds):
            await self.service.settle()
            await self.github.drain()
            due = await self.service.store.due(self.service.now(), 50)
            for item in due:
                await self.service.outbox.perform(item)
            if not due:
                return
        raise AssertionError(f"the outbox did not settle in {rounds} rounds")

    async def start_run(self, text: str = "/train tiny max_steps=20", **kw: Any) -> Run:
        await self.comment(text, **kw)
        await self.settle()
        run = await self.service.store.get_run(job_of(self.dispatches()[-1]).run_id)
        assert run is not None
        return run

    def dispatches(self) -> list[dict[str, Any]]:
        return [c.body for c in self.github.calls_to("POST", "*/dispatches")]

    def bot_comments(self, number: int = 1) -> list[str]:
        return [c.body for c in self.github.comments_on(REPO, number) if c.login == self.config.bot_login]


def _compact(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def job_of(dispatch: dict[str, Any]) -> Any:
    return job_from_json(dispatch["inputs"]["job"])


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store file migrated once per session; each bot starts from a copy (migrating costs ~0.2 s a store)."""
    path = tmp_path_factory.mktemp("memory-store") / "template.db"

    async def make() -> None:
        store = await Store.open(f"sqlite:///{path}")
        await store.close()

    asyncio.run(make())
    return path


@pytest.fixture
async def memory_bot(tmp_path: Path, migrated_db: Path) -> AsyncIterator[Callable[..., Awaitable[MemoryBot]]]:
    """`await memory_bot(policy=..., app=..., **config)`: the service built by `open_service`, as `serve` builds
    it, on a temporary SQLite store and an `InMemoryGitHub`; nothing listens and no loop runs in the background."""
    made: list[MemoryBot] = []

    async def make(*, policy: str | None = None, app: bool = False, github: InMemoryGitHub | None = None,
                   db: Path | None = None, on_dispatch: Any = None, **config: Any) -> MemoryBot:
        if github is None:
            # Not "tunebot" on purpose: the bot must learn who it is (an App's slug, a token's user).
            github = InMemoryGitHub(login="acme-tunebot[bot]" if app else "acme-ci-bot", app=app,
                                    on_dispatch=on_dispatch)
            repo = github.add_bot_repo(REPO, workflow=WORKFLOW)
            if policy is not None:
                repo.add_file(".tunebot.yml", policy)
        else:
            repo = github.repos[REPO.lower()]
        if db is None:
            db = tmp_path / f"bot{len(made)}.db"
            db.write_bytes(migrated_db.read_bytes())
        creds: dict[str, Any] = (dict(app_id="29310", private_key=Secret("in-memory: never used to sign")) if app
                                 else dict(github_token=Secret("ghs_in_memory")))
        cfg = load_config(environ={}, webhook_secret=Secret(SECRET), job_signing_key=Secret(SIGNING_KEY),
                          database_url=f"sqlite:///{db}", **creds,
                          **{"card_edit_interval_s": 0.0, "public_url": PUBLIC_URL, **config})
        service = await open_service(cfg, github=github)
        bot = MemoryBot(github, repo, service)
        made.append(bot)
        return bot

    yield make
    for bot in made:
        await bot.service.settle()
        await bot.service.store.close()
        await bot.github.close()
