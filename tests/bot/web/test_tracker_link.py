"""The tracker's run page, end to end through the service: `.tracking:` in the repository's policy reaches the signed
job, the agent's own watch finds the page in a tracker line of the training output and its HTTP sink delivers the
signed `tracker` event, and the run card and the web run page link to it. The training output is one line written
here: no ms-swift run and no wandb account (the real-agent TensorBoard run is tests/runner_agent/test_agent_e2e.py)."""

from __future__ import annotations

import asyncio

import aiohttp

from runner_agent.sinks import EventBus, HttpSink
from runner_agent.tracking import TrackerWatch
from runner_agent.training import tracker, tracker_env
from tests.bot.service.conftest import REPO, job_of

POLICY = "version: 1\ntracking:\n  tool: wandb\n  project: tiny-sft\n"
URL = "https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"
LOG = [
    "[INFO:swift] Start time of running main: 2026-12-02 05:30:00",
    "wandb: Tracking run with wandb version 0.31.0",
    "wandb: 🚀 View run at https://wandb.ai/mallory/elsewhere/runs/zz",  # a training sample's text: not the job's
    f"wandb: 🚀 View run at \x1b[34m\x1b[4m{URL}\x1b[0m",
]


async def test_a_tracker_line_in_the_training_log_becomes_the_cards_and_the_pages_link(make_bot) -> None:
    bot = await make_bot(policy=POLICY)
    await bot.start_run("/train tiny max_steps=20")
    job = job_of(bot.dispatches()[-1])
    assert job.tracking is not None and tracker(job) == "wandb"  # the policy's choice travels in the signed job
    run = await bot.service.store.get_run(job.run_id)
    assert run is not None

    def agent() -> None:
        """The agent's side, as runner_agent/training.py wires it: the watch on the process's lines, the bus."""
        sink = HttpSink(f"{bot.url}/api/runs/{job.run_id}/events", run.run_token, final_deadline_s=20.0)
        bus = EventBus(job.run_id, [sink], heartbeat_s=0)
        bus.start()
        bus.emit("accepted", kind=job.kind, model="tiny")
        bus.emit("phase", phase="train")
        watch = TrackerWatch(tracker(job), tracker_env(job))  # the env a runner without WANDB_BASE_URL gives it
        for line in LOG:
            watch.feed(line)
        assert watch.url == URL
        bus.emit("tracker", tool=watch.tool, url=watch.url)
        bus.emit("progress", phase="train", step=20, total=20, loss=1.5)
        bus.close()
        assert sink.delivered == 4 and sink.rejected == 0

    await asyncio.to_thread(agent)
    await bot.settle()
    card = bot.bot_comments()[-1]
    assert f"[Weights & Biases run page]({URL})" in card
    assert "mallory" not in card

    async with aiohttp.ClientSession() as http, http.get(f"{bot.url}/ui/{REPO}/runs/{job.run_id}") as resp:
        assert resp.status == 200
        page = await resp.text()
    assert f'id="tracker" href="{URL}"' in page and "Weights &amp; Biases run page" in page
