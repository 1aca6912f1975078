"""Finding 7 (issue 11), the rest: a signed job is not valid forever, and an Actions "Re-run" of its workflow run
(which replays the same signed job and callback token) is refused, by the signature step and by the agent."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.bot.service.conftest import SIGNING_KEY, job_of


async def _verify(inputs: dict[str, str], job: Path, *extra: str) -> tuple[int, str]:
    """The workflow's "Verify the job signature" step, as a subprocess with the key in its environment."""
    job.write_bytes(inputs["job"].encode("utf-8"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-m", "runner_agent.verify_job", str(job), "--signature", inputs["job_sig"],
        "--run-id", inputs["run_id"], "--sha", inputs["sha"], "--callback-url", inputs["callback_url"], *extra,
        env={**os.environ, "TUNEBOT_JOB_SIGNING_KEY": SIGNING_KEY}, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    return int(proc.returncode or 0), err.decode()


async def _agent(job: Path, out: Path, *extra: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tunebot", "agent", "run", "--job", str(job), "--out", str(out), "--offline",
        "--quiet", "--cache", str(out.parent / "cache"), *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait()


def _finished(out: Path) -> dict[str, Any]:
    events = [json.loads(line) for line in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["type"] for e in events] == ["finished"], "the agent must stop before doing anything"
    return dict(events[0])


async def test_the_bot_signs_not_after_from_its_configured_ttl(memory_bot: Any) -> None:
    bot = await memory_bot(job_ttl_s=600)
    before = time.time()
    await bot.start_run()
    job = job_of(bot.dispatches()[-1])
    assert job.not_after is not None
    assert before + 600 - 1 <= job.not_after <= time.time() + 600 + 1


async def test_a_stale_signed_job_is_refused_by_the_signature_step_and_the_agent(make_bot: Any,
                                                                                 tmp_path: Path) -> None:
    bot = await make_bot(job_ttl_s=0.5)
    run = await bot.start_run()
    inputs = bot.dispatches()[-1]["inputs"]
    await asyncio.sleep(1.0)  # the attacker replays a job that leaked from an old run's inputs
    code, err = await _verify(inputs, tmp_path / "job.json", "--run-attempt", "1")
    assert code == 1 and "the signed job expired" in err, err
    code = await _agent(tmp_path / "job.json", tmp_path / "out")
    assert code == 1
    reason = _finished(tmp_path / "out")["reason"]
    assert "the signed job expired" in reason
    await bot.settle()
    # The expired job's failure reaches the bot through the run's own (still valid) callback, with the reason.
    stored = await bot.service.store.get_run(run.run_id)
    assert stored is not None and stored.state == "failed"


async def test_a_rerun_attempt_is_refused_and_reports_nothing_to_the_bot(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot()
    run = await bot.start_run()
    inputs = bot.dispatches()[-1]["inputs"]
    # The first attempt passes the signature step (the positive control)...
    assert (await _verify(inputs, tmp_path / "job.json", "--run-attempt", "1"))[0] == 0
    # ...and "Re-run all jobs" (attempt 2) replays the same inputs: refused before anything runs.
    code, err = await _verify(inputs, tmp_path / "job.json", "--run-attempt", "2")
    assert code == 1 and "attempt 2" in err, err
    # A workflow without that check still meets the agent's own refusal, which never uses the callback token.
    assert await _agent(tmp_path / "job.json", tmp_path / "out", "--run-attempt", "2") == 1
    assert "attempt 2" in _finished(tmp_path / "out")["reason"]
    await bot.settle()
    assert await bot.service.store.events_after(run.run_id, -1) == []
