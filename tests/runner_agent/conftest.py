"""Shared fixtures for the agent's end-to-end tests: one cache (the tiny model is built once per session) and one
real LoRA train+eval run that several tests inspect, so ms-swift and EvalScope run as few times as possible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner_agent.sinks import read_events
from tests.paths import BENCHMARKS, REPO
from tests.runner_agent.helpers import CallbackServer

EXAMPLE = REPO / "configs" / "examples" / "tiny-train-eval.json"
# Subjects whose files are in the shared sample packs (the example job also names two that are kept aside).
CEVAL = ["computer_network", "logic"]
CMMLU = ["agronomy", "anatomy"]
TOKEN = "e2e-run-token"
# Steps for the tiny model to learn the `答案：X` answer format from tiny-mcq (measured: ~50-100 at lr 2e-3).
LORA_STEPS = 80


def tiny_job(run_id: str, **changes: Any) -> dict[str, Any]:
    job = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    job["run_id"] = run_id
    job["benchmarks"] = [
        {"name": "ceval", "subsets": CEVAL, "limit": 5, "few_shot": 0, "max_tokens": 8},
        {"name": "cmmlu", "subsets": CMMLU, "limit": 5, "few_shot": 0, "max_tokens": 8},
    ]
    hyper = changes.pop("hyper", {})
    job["hyper"].update(hyper)
    job.update(changes)
    return job


def agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TUNEBOT_", "HF_", "GITHUB_"))}


def agent_argv(job_path: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tunebot", "agent", "run", "--job", str(job_path), "--out", str(out),
            "--cache", str(cache), "--bench-data", str(BENCHMARKS), "--offline", *extra]


@dataclass
class AgentRun:
    job: dict[str, Any]
    out: Path
    code: int
    stderr: str
    wall_s: float
    events: list[dict[str, Any]] = field(default_factory=list)
    http: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def results(self) -> dict[str, Any]:
        return json.loads((self.out / "results.json").read_text(encoding="utf-8"))


def run_agent(tmp: Path, cache: Path, job: dict[str, Any], *extra: str, server: CallbackServer | None = None,
              timeout: float = 600, env: dict[str, str] | None = None) -> AgentRun:
    tmp.mkdir(parents=True, exist_ok=True)
    job_path = tmp / "job.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    out = tmp / "out"
    t0 = time.monotonic()
    proc = subprocess.run(agent_argv(job_path, out, cache, *extra), cwd=REPO, env={**agent_env(), **(env or {})},
                          capture_output=True,
                          text=True, timeout=timeout, check=False)
    run = AgentRun(job, out, proc.returncode, proc.stderr, time.monotonic() - t0)
    if (out / "events.jsonl").exists():
        run.events = read_events(out / "events.jsonl")
    if server is not None:
        run.http = server.delivered()
    return run


@pytest.fixture(scope="session")
def agent_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agent-cache")


@pytest.fixture(scope="session")
def lora_run(agent_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    """A real train+eval run of the tiny model (LoRA), reporting to a loopback callback that checks signatures.

    For every progress event the callback records whether ms-swift's log already held its end-of-training
    summary at that moment: progress must arrive while the model is still training.
    """
    tmp = tmp_path_factory.mktemp("lora-run")
    arrivals: list[dict[str, Any]] = []
    swift_log = tmp / "out" / "logs" / "swift-sft.log"

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "progress" and event.get("phase") == "train":
            text = swift_log.read_text(encoding="utf-8", errors="replace") if swift_log.exists() else ""
            arrivals.append({"step": event["step"], "total": event["total"], "training_over": "train_runtime" in text})

    with CallbackServer(TOKEN, on_event=on_event) as server:
        job = tiny_job("e2e-lora", callback={"url": server.url, "token": TOKEN},
                       hyper={"max_steps": LORA_STEPS, "learning_rate": 0.002, "logging_steps": 5,
                              "save_steps": LORA_STEPS, "max_length": 1024})
        run = run_agent(tmp, agent_cache, job, server=server,
                        env={"GITHUB_STEP_SUMMARY": str(tmp / "github-step-summary.md")})
    run.arrivals = arrivals
    yield run
