"""Provenance end to end: the training run's signed artifact event gives the adapter's sha256, the eval job carries
it, the real agent (`tunebot agent run`, no model loaded: the refusal comes first) finds one byte changed in the
downloaded artifact and fails the run, and the bot's run card says why."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from runner_agent.report import tree_hash
from tests.bot.service.conftest import job_of


async def test_a_tampered_adapter_is_refused_by_the_real_agent_and_the_card_says_why(make_bot, tmp_path) -> None:
    artifact = tmp_path / "artifact" / "out"  # what the eval workflow downloads: the training run's output
    (artifact / "adapter").mkdir(parents=True)
    (artifact / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    weights = artifact / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    outputs: dict[str, str] = {}

    async def hook(fake_run: Any, inputs: dict[str, str]) -> None:
        if '"kind": "eval"' not in inputs["job"]:
            return  # the training run is played with events below
        work = tmp_path / "runner" / inputs["run_id"]
        work.mkdir(parents=True)
        (work / "job.json").write_bytes(inputs["job"].encode("utf-8"))
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tunebot", "agent", "run", "--job", str(work / "job.json"), "--out",
            str(work / "out"), "--repo-dir", str(work), "--adapter-dir", str(artifact.parent), "--offline", "--quiet",
            "--cache", str(tmp_path / "cache"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await agent.communicate()
        outputs[inputs["run_id"]] = out.decode(errors="replace")

    bot = await make_bot(app=True, on_dispatch=hook)
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    train = job_of(bot.dispatches()[0])
    run = await bot.service.store.get_run(train.run_id)
    (artifact / "results.json").write_text(f'{{"run_id": "{train.run_id}"}}', encoding="utf-8")
    digest, _ = tree_hash(artifact / "adapter")
    await bot.post_event(train.run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(train.run_id, run.run_token, 1, "artifact", name="adapter", path="adapter", sha256=digest,
                         bytes=64)
    await bot.post_event(train.run_id, run.run_token, 2, "finished", status="succeeded")
    await bot.settle()

    weights.write_bytes(b"\x00" * 63 + b"\x01")  # one byte changed after training
    await bot.comment("/eval cmmlu adapter=latest")
    for _ in range(600):
        await bot.settle()
        evals = [job_of(d) for d in bot.dispatches() if job_of(d).kind == "eval"]
        if evals and (r := await bot.service.store.get_run(evals[0].run_id)) is not None and r.finished:
            break
        await asyncio.sleep(0.2)
    [ev] = evals
    assert ev.adapter is not None and ev.adapter.sha256 == digest  # the signed job carried the reported hash
    failed = await bot.service.store.get_run(ev.run_id)
    assert failed.state == "failed", outputs.get(ev.run_id, "")[-2000:]
    assert f"adapter of run {train.run_id} refused" in (failed.reason or "")
    for _ in range(100):  # the card's final edit goes out through the outbox
        await bot.settle()
        [card] = [c for c in bot.bot_comments() if f"tunebot:run:{ev.run_id}" in c]
        if "running" not in card:
            break
        await asyncio.sleep(0.1)
    assert "failed" in card.lower() and f"adapter of run {train.run_id} refused" in card and digest[:16] in card
