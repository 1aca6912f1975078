"""The delivery helpers sign like GitHub, and FakeGitHub emits workflow_run / workflow_job webhooks that parse."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.github.sansio import (
    WorkflowJobEvent,
    WorkflowRunEvent,
    parse_event,
    verify_signature,
)
from tests.fakes.deliveries import deliver, load_payload
from tests.fakes.github import FakeGitHub
from tests.fakes.loopback import LoopbackServer

SECRET = b"It's a Secret to Everybody"


class Receiver(LoopbackServer):
    """A minimal webhook endpoint that does what the service must: verify, then parse."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/webhook"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhook", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((dict(request.headers), body))
        if not verify_signature(SECRET, body, request.headers.get("X-Hub-Signature-256")):
            return web.Response(status=401, text="bad signature")
        parse_event(request.headers["X-GitHub-Event"], json.loads(body))
        return web.Response(status=202, text="accepted")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as rec:
        yield rec


def test_load_payload_overrides() -> None:
    p = load_payload("issue_comment.created", comment__body="/train tiny", action="edited")
    assert p["comment"]["body"] == "/train tiny" and p["action"] == "edited"
    assert p["comment"]["user"]["login"]  # the rest is untouched
    with pytest.raises(FileNotFoundError):
        load_payload("no_such.event")


async def test_deliver_sets_real_headers_and_signs(receiver: Receiver) -> None:
    result = await deliver(receiver.url, "ping", load_payload("ping.with-app_id"), SECRET, delivery_id="d-1")
    assert (result.status, result.delivery_id) == (202, "d-1")
    headers, body = receiver.got[0]
    assert headers["X-GitHub-Event"] == "ping" and headers["X-GitHub-Delivery"] == "d-1"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["X-GitHub-Hook-Installation-Target-Type"] == "integration"
    assert headers["X-Hub-Signature"].startswith("sha1=")
    assert verify_signature(SECRET, body, headers["X-Hub-Signature-256"])
    wrong = await deliver(receiver.url, "ping", load_payload("ping"), b"not the secret")
    assert wrong.status == 401


async def test_fake_github_emits_signed_run_and_job_webhooks(receiver: Receiver) -> None:
    async with FakeGitHub(webhook_url=receiver.url, webhook_secret=SECRET) as gh:
        repo = gh.add_repo("octo/demo", installation_id=9)
        repo.add_workflow("tunebot.yml", "tunebot")
        dispatched: list[Any] = []

        async def on_dispatch(run: Any, inputs: dict[str, Any]) -> None:
            dispatched.append(run)
            gh.set_run_status(run.id, "in_progress")
            await gh.emit_workflow_job(run.id, "in_progress")
            gh.set_run_status(run.id, "completed", "success")
            await gh.emit_workflow_run(run.id)

        gh.on_dispatch = on_dispatch
        async with aiohttp.ClientSession() as s, s.post(
                f"{gh.url}/repos/octo/demo/actions/workflows/tunebot.yml/dispatches",
                json={"ref": "main", "inputs": {"run_id": "tb-77"}, "return_run_details": True},
                headers={"Authorization": f"token {gh.token}"}) as r:
            assert r.status == 200
            run_id = (await r.json())["workflow_run_id"]
        await gh.drain()
        assert [d.status for d in gh.deliveries] == [202, 202]
        job, run = (parse_event(headers["X-GitHub-Event"], json.loads(body)) for headers, body in receiver.got[:2])
        assert isinstance(job, WorkflowJobEvent) and job.run_id == run_id and job.status == "in_progress"
        assert isinstance(run, WorkflowRunEvent)
        assert (run.id, run.display_title, run.status, run.conclusion, run.installation_id) == (
            run_id, "tunebot tb-77", "completed", "success", 9)
        # What the bot checks before it binds a workflow run to one of its runs (bot/lifecycle.py).
        assert (run.event, run.path, run.run_attempt) == ("workflow_dispatch", ".github/workflows/tunebot.yml", 1)


async def test_hook_errors_surface_in_drain() -> None:
    async with FakeGitHub() as gh:
        gh.add_repo("octo/demo").add_workflow("w.yml")

        async def boom(run: Any, inputs: dict[str, Any]) -> None:
            raise RuntimeError("agent failed")

        gh.on_dispatch = boom
        async with aiohttp.ClientSession() as s, s.post(
                f"{gh.url}/repos/octo/demo/actions/workflows/w.yml/dispatches", json={"ref": "main"},
                headers={"Authorization": f"token {gh.token}"}) as r:
            assert r.status == 204  # no return_run_details: the 2022-11-28 behaviour
        with pytest.raises(RuntimeError, match="agent failed"):
            await gh.drain()
