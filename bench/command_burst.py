"""A burst of `/train` commands from as many users through the real service, against the loopback fake GitHub
(issue 17, item 4): comment→dispatch latency, GitHub requests per command, and whether GitHub's secondary limit
on content-creating requests was ever hit (the fake answers 403 past it, as GitHub does).

The fake enforces the limit (80 content-creating requests a minute) and the bot paces its writes to it. `--scale`
runs the clock of both faster (scale 10: 800 a minute), so a 300-command burst takes minutes, not a quarter of an
hour; the pace per unit of time is the same. The single command is sent alone first, into an idle bot.

    .venv/bin/python bench/command_burst.py [--commands 300] [--scale 10]

Last line: `single_s=… p50_s=… p99_s=… requests_per_command=… writes_per_command=… secondary_403=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.app import build_app, open_service  # noqa: E402
from bot.config import Secret, load_config  # noqa: E402
from bot.front import start_site  # noqa: E402
from bot.github.port import RetryPolicy  # noqa: E402
from bot.github.pygithub_impl import PyGithubPort  # noqa: E402
from tests.fakes.deliveries import deliver, pr_comment_payload  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

REPO = "Codertocat/Hello-World"
SECRET = "bench-secret"
LIMIT_PER_MINUTE = 80  # GitHub's documented secondary limit on content-creating requests


async def main(commands: int, scale: float) -> None:
    per_minute = LIMIT_PER_MINUTE * scale
    async with FakeGitHub() as gh, aiohttp.ClientSession() as session:
        gh.secondary_limit = (int(per_minute), 60.0)
        repo = gh.add_bot_repo(REPO, workflow="tunebot-run.yml")
        repo.default_permission = ("write", "write")
        repo.add_file(".tunebot.yml", "quotas:\n  gpu_hours_per_day: 100000\n")
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(environ={}, webhook_secret=Secret(SECRET), github_api_url=gh.url,
                              github_token=Secret(gh.token), job_signing_key=Secret("k"),
                              database_url=f"sqlite:///{Path(tmp) / 'b.db'}", card_edit_interval_s=10.0,
                              github_writes_per_minute=per_minute, github_writes_per_hour=0)
            port = PyGithubPort.with_token(gh.url, gh.token, writes_per_minute=per_minute, writes_per_hour=0,
                                           retry=RetryPolicy(max_attempts=3))
            service = await open_service(cfg, github=port)
            runner = web.AppRunner(build_app(service), access_log=None)
            await runner.setup()
            site = await start_site(runner, cfg, service.metrics, host="127.0.0.1", port=0)
            url = f"http://127.0.0.1:{site.port}/webhook"
            sent: dict[str, float] = {}  # login -> when its comment's webhook was sent

            async def command(login: str) -> None:
                cid = gh.add_comment(REPO, 1, "/train tiny max_steps=20", login=login)
                payload = pr_comment_payload("/train tiny max_steps=20", login=login, comment_id=cid,
                                             association="MEMBER")
                sent[login] = time.time()
                result = await deliver(url, "issue_comment", payload, SECRET, session=session)
                assert result.status == 202, result

            async def dispatched(count: int, timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while len(gh.runs) < count and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)

            async def settled(count: int, timeout: float) -> None:
                """Every command's comment has its reaction and every run its card: all its writes are done."""
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    ours = [c for c in gh.comments.values() if c.login in sent]
                    cards = [c for c in gh.comments.values() if c.login not in sent]
                    if sum(1 for c in ours if c.reactions) >= count and len(cards) >= count:
                        return
                    await asyncio.sleep(0.05)

            async def latencies() -> dict[str, tuple[float, float]]:
                """Per actor: comment→decision (the run is stored) and comment→dispatch (GitHub created the run)."""
                by_actor = {}
                for run in list(gh.runs.values()):
                    stored = await service.store.get_run(run.inputs["run_id"])
                    assert stored is not None and stored.created_at is not None
                    by_actor[stored.actor] = (stored.created_at.timestamp() - sent[stored.actor],
                                              run.created_at.timestamp() - sent[stored.actor])
                return by_actor

            try:
                await command("solo")
                await dispatched(1, 30)
                single = (await latencies())["solo"][1]
                await settled(1, 30)
                requests_before = len(gh.requests)
                started = time.monotonic()
                users = [f"user{i:03}" for i in range(commands)]
                await asyncio.gather(*(command(u) for u in users))
                await dispatched(commands + 1, 3600)
                burst_s = time.monotonic() - started
                by_actor = {k: v for k, v in (await latencies()).items() if k != "solo"}
                lat = sorted(v[1] for v in by_actor.values())
                decided = sorted(v[0] for v in by_actor.values())
                await settled(commands + 1, 3600)  # requests per command count every write, not only dispatches
                settled_s = time.monotonic() - started
                requests = gh.requests[requests_before:]
                writes = [r for r in requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]
            finally:
                await runner.cleanup()
                await service.store.close()
                await port.close()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"{len(lat)} of {commands} commands dispatched in {burst_s:.1f} s at {per_minute:.0f} writes/min "
          f"(scale {scale:g}: {burst_s * scale / 60:.1f} min at GitHub's 80/min); all their writes done in "
          f"{settled_s:.1f} s ({settled_s * scale / 60:.1f} min); comment→decision p50 "
          f"{statistics.median(decided):.2f} s, p99 {decided[min(len(decided) - 1, int(len(decided) * 0.99))]:.2f} s")
    print(f"single_s={single:.2f} p50_s={statistics.median(lat):.2f} p99_s={p99:.2f} "
          f"requests_per_command={len(requests) / commands:.2f} writes_per_command={len(writes) / commands:.2f} "
          f"secondary_403={gh.secondary_403s}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--scale", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.commands, args.scale))
