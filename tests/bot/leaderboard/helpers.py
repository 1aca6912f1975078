"""Run outputs as the agent leaves them (`results.json` via commands.results, `events.jsonl` via commands.events), and
the `tunebot` command run as a subprocess, for the leaderboard tests."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commands.events import make_event
from commands.results import BenchmarkResult, Results, SubsetScore
from tests.paths import REPO

# 2025-03-01 02:17 UTC and a day later: when the nightly runs finished.
DAY1 = 1740795420.0
DAY2 = DAY1 + 86400


def _subsets(bench: str, correct: int, n: int) -> tuple[dict[str, SubsetScore], dict[str, bool]]:
    """Split `correct` of `n` over two subjects, with per-question outcomes (`<subset>/<row id>`) that add up."""
    names = {"cmmlu": ("agronomy", "anatomy"), "ceval": ("computer_network", "logic")}.get(bench, ("default", "extra"))
    first_n = n // 2
    first_c = min(correct, first_n)
    parts = [(names[0], first_n, first_c), (names[1], n - first_n, correct - first_c)]
    subsets = {name: SubsetScore(n=k, correct=c) for name, k, c in parts if k}
    questions = {f"{name}/{i}": i < c for name, k, c in parts for i in range(k)}
    return subsets, questions


def manifest(run_id: str, model: str, *, finished_at: float, adapter: Mapping[str, Any] | None = None,
             kind: str = "eval") -> dict[str, Any]:
    """The keys runner_agent/runner.py writes into a results manifest (values shaped like a real run's)."""
    m: dict[str, Any] = {
        "run_id": run_id, "repo": "octo/lb", "sha": "a" * 40, "kind": kind, "job_sha256": "0" * 64, "seed": 42,
        "tuner": None, "hyper": {"seed": 42, "torch_dtype": "bfloat16"},
        "versions": {"python": "3.12.3", "ms-swift": "4.6.0", "evalscope": "1.14.1", "torch": "2.13.0"},
        "hardware": {"host": "gpu-runner-1", "accelerator": "cuda", "gpus": ["NVIDIA H100 80GB HBM3, 81559 MiB"]},
        "offline": False, "hub": "modelscope", "endpoint": None, "started_at": finished_at - 3600,
        "benchmarks": {}, "model": {"name": model, "source": "modelscope", "id": f"org/{model}",
                                    "revision": "master", "path": f"/cache/models/{model}",
                                    "model_type": model.split("-")[0], "template": model.split("-")[0]},
        "eval_wall_s": 3500.0, "finished_at": finished_at, "wall_s": 3600.0,
    }
    if adapter is not None:
        m["adapter"] = dict(adapter)
    return m


@dataclass(frozen=True)
class WrittenRun:
    out: Path
    run_id: str
    model: str


def write_run(root: Path, artifact: str, model: str, scores: Mapping[str, tuple[int, int]], *,
              status: str = "succeeded", finished_at: float = DAY1, run_id: str | None = None,
              adapter: Mapping[str, Any] | None = None, reason: str | None = None) -> WrittenRun:
    """One run's output directory: results.json (benchmark -> (correct, n)) and its events.jsonl."""
    out = root / artifact
    out.mkdir(parents=True, exist_ok=True)
    rid = run_id or f"leaderboard-9001-1-{model}"
    benches = {}
    for bench, (correct, n) in scores.items():
        subsets, questions = _subsets(bench, correct, n)
        benches[bench] = BenchmarkResult(benchmark=bench, subsets=subsets, questions=questions, config_hash="c" * 64)
    results = Results(run_id=rid, status=status, benchmarks=benches, manifest=manifest(rid, model,
                      finished_at=finished_at, adapter=adapter))
    (out / "results.json").write_text(results.to_json() + "\n", encoding="utf-8")
    final = "succeeded" if status == "succeeded" else "failed"
    write_events(out, rid, model, final, reason, ts=finished_at)
    return WrittenRun(out, rid, model)


def write_events(out: Path, run_id: str, model: str, status: str | None, reason: str | None, *,
                 ts: float = DAY1) -> None:
    """events.jsonl as the agent's JsonlSink writes it; `status=None` leaves the run unfinished (killed)."""
    out.mkdir(parents=True, exist_ok=True)
    events = [make_event(run_id, 0, ts - 3600, "accepted", kind="eval", model=model, host="gpu-runner-1"),
              make_event(run_id, 1, ts - 3590, "phase", phase="download", detail=f"model {model}")]
    if status is not None:
        events.append(make_event(run_id, 2, ts, "finished", status=status, reason=reason))
    (out / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events), encoding="utf-8")


@dataclass(frozen=True)
class Proc:
    code: int
    stdout: str
    stderr: str


def base_env() -> dict[str, str]:
    """The test process's environment without anything that would point the CLI at real services."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "TUNEBOT_", "SLACK_"))}


async def tunebot(*argv: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Proc:
    """`tunebot <argv>` in a subprocess (the fake servers keep answering in this event loop meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tunebot", *argv, cwd=REPO, env={**base_env(), **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Proc(proc.returncode, out.decode(), err.decode())
