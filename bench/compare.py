"""How fast `/compare` answers when both sides are already stored, end to end through the real service.

A fake GitHub on 127.0.0.1 and `tunebot`'s service (SQLite store) are started in-process. A PR is trained and
evaluated (the agent's callbacks are replayed with synthetic per-question outcomes of full-size CMMLU and C-Eval),
the base-model baseline is backfilled the same way, and then `/compare main` is posted as a signed webhook. The
figure is the wall time from sending that webhook to the comparison report being written on the fake GitHub, and
the number of workflow dispatches it caused (it must be 0: everything is in the store).

    .venv/bin/python bench/compare.py [--repeat 5] [--cmmlu 11582] [--ceval 1346]

Last line: `compare_s=<median seconds> dispatches=<n>`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.app import build_app, open_service  # noqa: E402
from bot.config import Secret, load_config  # noqa: E402
from bot.front import start_site  # noqa: E402
from bot.github.port import RetryPolicy  # noqa: E402
from bot.github.pygithub_impl import PyGithubPort  # noqa: E402
from commands.events import make_event, sign_body  # noqa: E402
from commands.jobspec import job_from_json  # noqa: E402
from tests.fakes.deliveries import deliver, pr_comment_payload  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

SECRET = "bench-webhook-secret"
REPO = "Codertocat/Hello-World"
POLICY = "version: 1\nbenchmarks:\n  default: [ceval, cmmlu]\n"


def outcomes(benchmark: str, subsets: tuple[str, ...], n: int, p_right: float, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    per = max(1, n // len(subsets))
    questions = {f"{s}/{i}": rnd.random() < p_right for s in subsets for i in range(per)}
    subs = {s: {"n": per, "correct": sum(questions[f"{s}/{i}"] for i in range(per))} for s in subsets}
    correct = sum(questions.values())
    return {"benchmark": benchmark, "score": correct / len(questions), "n": len(questions), "correct": correct,
            "subsets": subs, "questions": questions}


async def main(repeat: int, sizes: dict[str, int]) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="tunebot-bench-compare-"))
    gh = FakeGitHub()
    await gh.start()
    repo = gh.add_bot_repo(REPO)
    repo.add_file(".tunebot.yml", POLICY)
    cfg = load_config(environ={}, webhook_secret=Secret(SECRET), github_token=Secret(gh.token),
                      github_api_url=gh.url, job_signing_key=Secret("k"), database_url=f"sqlite:///{tmp / 'b.db'}",
                      card_edit_interval_s=0.0)
    port = PyGithubPort.with_token(gh.url, gh.token, writes_per_minute=0, writes_per_hour=0,
                                   retry=RetryPolicy(max_attempts=2))
    service = await open_service(cfg, github=port)
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = await start_site(runner, cfg, service.metrics, host="127.0.0.1", port=0)
    url = f"http://127.0.0.1:{site.port}"
    from dataclasses import replace

    service.config = replace(service.config, public_url=url)
    session = aiohttp.ClientSession()

    def dispatches() -> list[Any]:
        return [job_from_json(r.json["inputs"]["job"]) for r in gh.requests_to("POST", "*/dispatches")]

    async def say(body: str) -> None:
        cid = gh.add_comment(REPO, 1, body)
        res = await deliver(f"{url}/webhook", "issue_comment", pr_comment_payload(body, comment_id=cid), SECRET,
                            session=session)
        assert res.status == 202, res

    async def until(cond: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError("the service did not get there in time")
            await asyncio.sleep(0.002)

    async def replay(job: Any, p_right: float, seed: int) -> None:
        run = await service.store.get_run(job.run_id)
        events = [("accepted", {"kind": job.kind, "model": job.model.name})]
        for b in job.benchmarks:
            events.append(("eval_result", outcomes(b.name, b.subsets, sizes[b.name], p_right, seed)))
        events.append(("finished", {"status": "succeeded"}))
        for seq, (etype, data) in enumerate(events):
            body = make_event(job.run_id, seq, time.time(), etype, **data).to_json().encode()
            async with session.post(f"{url}/api/runs/{job.run_id}/events", data=body,
                                    headers={"X-Tunebot-Signature-256": sign_body(run.run_token, body)}) as r:
                assert r.status in (200, 202), await r.text()

    def reports() -> list[Any]:
        return [c for c in gh.comments_on(REPO, 1) if "tunebot:compare:" in c.body]

    try:
        await say("/train tiny max_steps=20")
        await until(lambda: len(dispatches()) == 1)
        await replay(dispatches()[0], 0.55, 1)
        await until(lambda: len(dispatches()) == 2)  # the baseline is backfilled
        await replay(dispatches()[1], 0.50, 2)
        await until(lambda: bool(reports()))
        n = sum(sizes.values())
        print(f"stored: PR adapter eval and base-model baseline, {n} questions each side "
              f"(cmmlu {sizes['cmmlu']}, ceval {sizes['ceval']})")
        times: list[float] = []
        for i in range(repeat):
            before_dispatches = len(dispatches())
            before_edits = sum(c.edits for c in reports())
            started = time.perf_counter()
            await say("/compare main")
            await until(lambda before=before_edits: sum(c.edits for c in reports()) > before)  # type: ignore[misc]
            elapsed = time.perf_counter() - started
            times.append(elapsed)
            new = len(dispatches()) - before_dispatches
            print(f"run {i + 1}: compare_s={elapsed:.3f} dispatches={new}")
            await asyncio.sleep(0.2)
        total_new = len(dispatches()) - 2
        print(f"median over {repeat}: {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})")
        print(f"compare_s={statistics.median(times):.3f} dispatches={total_new}")
        return 0
    finally:
        await session.close()
        await runner.cleanup()
        await service.store.close()
        await port.close()
        await gh.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cmmlu", type=int, default=11582, help="questions on the CMMLU side (full test split: 11,582)")
    ap.add_argument("--ceval", type=int, default=1346, help="questions on the C-Eval side (full val split: 1,346)")
    a = ap.parse_args()
    raise SystemExit(asyncio.run(main(a.repeat, {"cmmlu": a.cmmlu, "ceval": a.ceval})))
