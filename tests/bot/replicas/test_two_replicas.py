"""Two real replicas on one PostgreSQL database (issue 17, item 2): one is killed with SIGKILL in the middle of a
burst of commands; the other takes over the dead one's deliveries once their leases run out and finishes every
command, each dispatched exactly once. A replica's start-up takes back only its own leases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.store import Store
from tests.fakes.deliveries import deliver, pr_comment_payload
from tests.fakes.github import FakeGitHub
from tests.postgres import postgres_url

pytestmark = pytest.mark.postgres

REPLICA = Path(__file__).with_name("replica.py")
REPO = "Codertocat/Hello-World"
SECRET = "webhook-secret-for-tests"
LEASE_S = 3.0
COMMANDS = 40
LOGS = Path(os.environ.get("TMPDIR", "/tmp"))


class Replica:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.url = proc, f"http://127.0.0.1:{port}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, str]]:
    url = await postgres_url()  # no server: the test fails saying what to do (tests/postgres.py)
    schema = f"tb_replicas_{uuid.uuid4().hex[:10]}"
    store = await Store.open(url, schema=schema)  # migrated once, before the replicas start
    await store.close()
    yield url, schema
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def start_replica(name: str, gh: FakeGitHub, url: str, schema: str) -> Replica:
    settings: dict[str, Any] = {
        "database_url": url, "schema": schema, "github_api_url": gh.url, "github_token": gh.token,
        "webhook_secret": SECRET, "replica_id": name, "delivery_lease_s": LEASE_S, "bot_login": "tunebot[bot]",
        "github_writes_per_minute": 0, "github_writes_per_hour": 0, "card_edit_interval_s": 0.0,
        "public_url": "http://127.0.0.1:9"}
    log = open(LOGS / f"{name}.log", "wb")  # noqa: SIM115  # closed with the process
    proc = await asyncio.create_subprocess_exec(sys.executable, str(REPLICA), json.dumps(settings),
                                                stdout=asyncio.subprocess.PIPE, stderr=log, env={**os.environ})
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert line.startswith("READY "), f"replica {name} did not start: {line!r}"
    return Replica(proc, int(line.split()[1]))


async def test_a_killed_replicas_commands_are_finished_by_the_other_exactly_once(
        database: tuple[str, str]) -> None:
    url, schema = database
    async with FakeGitHub() as gh:
        repo = gh.add_bot_repo(REPO, workflow="tunebot-run.yml")
        repo.default_permission = ("write", "write")
        repo.add_file(".tunebot.yml", "quotas:\n  gpu_hours_per_day: 100000\n")  # queued runs count their max hours
        a = await start_replica("replica-a", gh, url, schema)
        b = await start_replica("replica-b", gh, url, schema)
        try:
            async with aiohttp.ClientSession() as session:
                sent = []
                for i in range(COMMANDS):
                    login = f"user{i:03}"
                    cid = gh.add_comment(REPO, 1, "/train tiny max_steps=20", login=login)
                    payload = pr_comment_payload("/train tiny max_steps=20", login=login, comment_id=cid,
                                                 association="MEMBER")
                    # Most of the burst goes to a, the one about to die.
                    target = b if i % 4 == 3 else a
                    result = await deliver(f"{target.url}/webhook", "issue_comment", payload, SECRET,
                                           session=session)
                    assert result.status == 202, result
                    sent.append(cid)
                    if i == COMMANDS // 2:
                        # Mid-burst, once a has started work: kill -9 (no drain, no marks, leases left behind).
                        while len(gh.requests_to("POST", "*/dispatches")) < 3:
                            await asyncio.sleep(0.01)
                        a.kill()
                        killed = time.monotonic()
                        a = b  # the rest of the burst goes to the survivor
            deadline = killed + LEASE_S + 60
            while len(gh.runs) < COMMANDS and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            took = time.monotonic() - killed
            await asyncio.sleep(LEASE_S + 1)  # a second dispatch of anything would show up by now
        finally:
            for r in (a, b):
                if r.proc.returncode is None:
                    r.kill()
                await r.proc.wait()

        dispatched = [json.loads(r.json["inputs"]["job"]) for r in gh.requests_to("POST", "*/dispatches")]
        run_ids = [run.inputs["run_id"] for run in gh.runs.values()]
        said = sorted({c.body[:150] for c in gh.comments.values() if c.login == "tunebot[bot]"})
        assert len(gh.runs) == COMMANDS, f"{len(gh.runs)} of {COMMANDS} dispatched {took:.1f} s after the kill; {said}"
        assert len(set(run_ids)) == COMMANDS and len(dispatched) == COMMANDS  # none twice
        store = await Store.open(url, schema=schema)
        try:
            runs = [await store.get_run(rid) for rid in run_ids]
            triggers = sorted(r.trigger_key.split(":")[0] for r in runs if r is not None)
            assert triggers == sorted(f"c{cid}" for cid in sent)  # one run per comment: every command, once
            unfinished = await store.unfinished_deliveries()
            assert unfinished == [], [(d.delivery_id, d.state, d.claimed_by) for d in unfinished]
        finally:
            await store.close()
        print(f"all {COMMANDS} commands dispatched {took:.1f} s after the kill (lease {LEASE_S} s)")
        assert took < LEASE_S + 30
