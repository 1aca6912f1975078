"""`tunebot serve` killed with SIGKILL in the middle of a burst of webhooks: every delivery it answered 202 is in the
store after the kill, and the next start processes each of them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import uuid
from pathlib import Path

import aiohttp

from tests.fakes.deliveries import delivery_headers, pr_comment_payload
from tests.fakes.github import FakeGitHub
from tests.paths import REPO

SECRET = "crash-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(db: Path, port: int, github: FakeGitHub, log: Path) -> asyncio.subprocess.Process:
    env = dict(os.environ, WEBHOOK_SECRET=SECRET, GITHUB_TOKEN=github.token, TUNEBOT_GITHUB_API_URL=github.url,
               TUNEBOT_DATABASE_URL=f"sqlite:///{db}", TUNEBOT_JOB_SIGNING_KEY="k", PORT=str(port), HOST="127.0.0.1",
               TUNEBOT_PUBLIC_URL=f"http://127.0.0.1:{port}", LOG_LEVEL="WARNING")
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tunebot", "serve", cwd=REPO, env=env,
                                                    stdout=out, stderr=out)
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError(f"tunebot serve did not start: {log.read_text()[-2000:]}")


def _states(db: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT delivery_id, state, attempts FROM deliveries")}
    finally:
        conn.close()


async def test_every_202_survives_kill_9_and_is_processed_after_restart(tmp_path: Path) -> None:
    db, log, port = tmp_path / "crash.db", tmp_path / "serve.log", _free_port()
    acked: list[str] = []
    async with FakeGitHub() as github:
        github.add_repo("Codertocat/Hello-World")
        proc = await _serve(db, port, github, log)
        url = f"http://127.0.0.1:{port}/webhook"
        killed = asyncio.Event()

        async def client(session: aiohttp.ClientSession, n: int) -> None:
            for i in range(n):
                body = pr_comment_payload(f"plain comment {i}", comment_id=10_000 + i)
                raw = json.dumps(body, separators=(",", ":")).encode()
                gid = str(uuid.uuid4())
                try:
                    async with session.post(url, data=raw, headers=delivery_headers("issue_comment", raw, SECRET, gid),
                                            timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        if resp.status == 202:
                            acked.append(gid)
                except (TimeoutError, aiohttp.ClientError):
                    return  # the server is gone: this answer never came, so GitHub would redeliver
                if len(acked) >= 150 and not killed.is_set():
                    killed.set()
                    proc.send_signal(signal.SIGKILL)  # mid-burst: other requests are in flight right now

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(client(session, 100) for _ in range(16)))
        await proc.wait()
        assert killed.is_set() and proc.returncode == -signal.SIGKILL
        stored = _states(db)
        missing = [g for g in acked if g not in stored]
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged deliveries were lost"

        proc = await _serve(db, port, github, log)  # the restart picks the backlog up
        try:
            for _ in range(300):
                states = _states(db)
                if all(s == "done" for s, _ in states.values()):
                    break
                await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()[-2000:]
        states = _states(db)
        assert [g for g in acked if states[g][0] != "done"] == []
        # Claimed-but-unmarked deliveries of the killed process are handed out once more; nothing more than that.
        assert max(a for _, a in states.values()) <= 2
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
