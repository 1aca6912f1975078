"""Checkpoint uploads, `/cancel` keeping them, `/resume`, and the one automatic resume of a run whose runner died,
through the real service (the agent's side is played here with real signed requests)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile

from commands.events import sign_body
from commands.jobspec import job_from_dict
from tests.bot.service.conftest import job_of


def _archive(step: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        body = json.dumps({"global_step": step}).encode()
        info = tarfile.TarInfo(f"checkpoint-{step}/trainer_state.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


async def _upload(bot, run, step: int, seq: int) -> bytes:  # type: ignore[no-untyped-def]
    data = _archive(step)
    async with bot.session.put(f"{bot.url}/api/runs/{run.run_id}/checkpoints/{step}", data=data,
                               headers={"X-Tunebot-Signature-256": sign_body(run.run_token, data)}) as resp:
        assert resp.status == 201, await resp.text()
    status, _ = await bot.post_event(run.run_id, run.run_token, seq, "artifact", name="checkpoint",
                                     path=f"checkpoint-{step}", sha256=hashlib.sha256(data).hexdigest(),
                                     bytes=len(data))
    assert status == 202
    return data


async def test_forged_upload_is_refused_and_stores_nothing(make_bot, tmp_path) -> None:
    bot = await make_bot()
    run = await bot.start_run()
    data = _archive(10)
    async with bot.session.put(f"{bot.url}/api/runs/{run.run_id}/checkpoints/10", data=data,
                               headers={"X-Tunebot-Signature-256": sign_body("wrong", data)}) as resp:
        assert resp.status == 401
    assert not list((tmp_path / "checkpoints").rglob("*.tar.gz"))


async def test_cancel_keeps_the_checkpoint_and_resume_starts_from_it(make_bot) -> None:
    bot = await make_bot()
    run = await bot.start_run()
    await bot.comment(f"/resume {run.run_id}")
    await bot.settle()
    assert "only a cancelled or failed run" in bot.bot_comments()[-1]
    await _upload(bot, run, 10, 0)
    data = await _upload(bot, run, 20, 1)
    await bot.comment("/cancel")
    await bot.settle()
    assert "last checkpoint (step 20) is kept" in bot.bot_comments()[-1]
    await bot.comment("/resume")
    await bot.settle()
    job = job_of(bot.dispatches()[-1])
    assert job.resume is not None and (job.resume.run_id, job.resume.step) == (run.run_id, 20)
    assert job.resume.sha256 == hashlib.sha256(data).hexdigest() and not job.resume.auto
    assert job.hyper == job_from_dict((await bot.service.store.get_run(run.run_id)).job_spec).hyper
    assert f"from checkpoint-20 as `{job.run_id}`" in bot.bot_comments()[-1]
    # The new run, and only it, gets the archive back (signed with its own token).
    resumed = await bot.service.store.get_run(job.run_id)
    sig = sign_body(resumed.run_token, f"resume:{job.run_id}".encode())
    async with bot.session.get(f"{bot.url}/api/runs/{job.run_id}/resume-checkpoint",
                               headers={"X-Tunebot-Signature-256": sig}) as resp:
        assert resp.status == 200 and await resp.read() == data
    async with bot.session.get(f"{bot.url}/api/runs/{run.run_id}/resume-checkpoint",
                               headers={"X-Tunebot-Signature-256": sig}) as resp:
        assert resp.status == 401


async def test_a_lost_runner_is_resumed_once_automatically(make_bot) -> None:
    bot = await make_bot()
    bot.send_workflow_webhooks()
    run = await bot.start_run()
    await _upload(bot, run, 10, 0)
    bot.github.set_run_status(run.workflow_run_id, "completed", "failure")
    await bot.github.emit_workflow_run(run.workflow_run_id, "completed")
    await asyncio.sleep(0.05)
    await bot.settle()
    dead = await bot.service.store.get_run(run.run_id)
    assert dead.state == "failed"
    assert len(bot.dispatches()) == 2
    job = job_of(bot.dispatches()[-1])
    assert job.resume is not None and job.resume.auto and job.resume.step == 10
    assert any("Resuming it once, automatically" in c for c in bot.bot_comments())
    # The automatic resume dies too: it is not resumed again.
    second = await bot.service.store.get_run(job.run_id)
    for _ in range(50):
        second = await bot.service.store.get_run(job.run_id)
        if second.workflow_run_id is not None:
            break
        await asyncio.sleep(0.05)
    bot.github.set_run_status(second.workflow_run_id, "completed", "failure")
    await bot.github.emit_workflow_run(second.workflow_run_id, "completed")
    await asyncio.sleep(0.05)
    await bot.settle()
    assert (await bot.service.store.get_run(job.run_id)).state == "failed"
    assert len(bot.dispatches()) == 2
