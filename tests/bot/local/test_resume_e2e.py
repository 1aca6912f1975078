"""Checkpoint-aware cancel and resume, end to end with the real agent and real ms-swift on CPU (local mode): the
agent uploads each checkpoint as ms-swift writes it; `/cancel` keeps the last one; `/resume` continues from it with
the step count going on (not from zero); a runner killed mid-training is resumed once, automatically."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path

import pytest

from bot.local import LocalSession, Terminal
from bot.store import Run

STEPS = 300
TRAIN = f"/train tiny max_steps={STEPS} save_steps=20 logging_steps=10 batch_size=1 max_length=128 eval=none"


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc): ms-swift runs in its own process group under the agent."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


async def _start(session: LocalSession, text: str) -> Run:
    await session.service.handle_text(session.github.repo, 1, session.user, text, trigger=f"local:{text}")
    [run] = [r for r in await session.service.store.runs_for_pr(session.github.repo, 1) if r.command == text]
    return run


async def _wait_for_checkpoint(session: LocalSession, run: Run, timeout: float = 240.0) -> int:
    """Poll until the bot holds a checkpoint of `run` (uploaded and reported), while training goes on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        fresh = await session.service.store.get_run(run.run_id)
        assert fresh is not None and not fresh.finished, f"run ended before a checkpoint: {fresh}"
        found = await session.service.jobs.checkpoints.latest(fresh)
        if found is not None and found.run_id == run.run_id:
            return found.step
        await asyncio.sleep(0.1)
    raise AssertionError("no checkpoint was uploaded")


async def _progress_steps(session: LocalSession, run_id: str) -> list[int]:
    return [int(e.data["step"]) for e in await session.service.store.events_after(run_id, -1)
            if e.type == "progress" and "step" in e.data]


@pytest.mark.slow
async def test_cancel_keeps_the_checkpoint_and_resume_continues_the_step_count(tmp_path: Path) -> None:
    out = io.StringIO()
    async with LocalSession(tmp_path, tmp_path / "runs", terminal=Terminal(out),
                            agent_args=["--quiet", "--cache", str(tmp_path / "c")]) as session:
        store = session.service.store
        run = await _start(session, TRAIN)
        step = await _wait_for_checkpoint(session, run)
        await session.say(f"/cancel {run.run_id}")
        cancelled = await store.get_run(run.run_id)
        assert cancelled is not None and cancelled.state == "cancelled"
        kept = await session.service.jobs.checkpoints.latest(cancelled)
        assert kept is not None and kept.step >= step and kept.step < STEPS
        assert f"last checkpoint (step {kept.step}) is kept" in out.getvalue()
        assert (tmp_path / "runs" / "checkpoints" / run.run_id / f"checkpoint-{kept.step}.tar.gz").is_file()

        await session.say(f"/resume {run.run_id}")
        [resumed] = [r for r in await store.runs_for_pr(session.github.repo, 1) if r.retry_of == run.run_id]
        assert resumed.state == "succeeded", out.getvalue()[-3000:]
        steps = await _progress_steps(session, resumed.run_id)
        # ms-swift restored the trainer state: the resumed run logs from past the checkpoint up to the end.
        assert steps and min(steps) > kept.step and max(steps) == STEPS, steps
        assert f"Resuming `{run.run_id}` from checkpoint-{kept.step}" in out.getvalue()


@pytest.mark.slow
async def test_a_killed_runner_resumes_once_by_itself(tmp_path: Path) -> None:
    out = io.StringIO()
    async with LocalSession(tmp_path, tmp_path / "runs", terminal=Terminal(out),
                            agent_args=["--quiet", "--cache", str(tmp_path / "c")]) as session:
        store = session.service.store
        run = await _start(session, TRAIN)
        step = await _wait_for_checkpoint(session, run)
        [local] = [r for r in session.github.runs.values() if r.inputs["run_id"] == run.run_id]
        assert local.process is not None
        # The machine goes away: the agent and everything under it die at once (kill -9), no event is sent.
        pids = [local.process.pid, *_descendants(local.process.pid)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        await session.settle()
        dead = await store.get_run(run.run_id)
        assert dead is not None and dead.state == "failed"
        runs = await store.runs_for_pr(session.github.repo, 1)
        [resumed] = [r for r in runs if r.retry_of == run.run_id]
        assert len(runs) == 2  # once: nothing else was started
        assert resumed.state == "succeeded", out.getvalue()[-3000:]
        assert resumed.command == f"(automatic) /resume {run.run_id}"
        steps = await _progress_steps(session, resumed.run_id)
        assert steps and min(steps) > step and max(steps) == STEPS, steps
        assert "Resuming it once, automatically" in out.getvalue()
