"""What the runner agent costs on top of ms-swift, and how fast its progress reaches the bot.

Runs the same tiny training job bare (`swift sft` with the agent's exact arguments and environment) and through
`tunebot agent run` (with a loopback callback receiving its signed events), alternating, N of each; prints the
median wall times and the delay from a line appearing in ms-swift's logging.jsonl to the callback receiving the
matching progress event. The last line is `overhead_ratio=<agent/bare>` (target <= 1.03).

    .venv/bin/python bench/agent_overhead.py [--repeats 5] [--steps 20] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from commands.jobspec import job_from_dict  # noqa: E402
from configs import BENCH_DATA_DIR as BENCH_DATA  # noqa: E402
from runner_agent import tiny_model  # noqa: E402
from runner_agent.context import AgentConfig, RunContext  # noqa: E402
from runner_agent.datasets import build_tiny_mcq  # noqa: E402
from runner_agent.models import ResolvedModel  # noqa: E402
from runner_agent.training import sft_argv  # noqa: E402
from tests.runner_agent.helpers import CallbackServer  # noqa: E402

TOKEN = "bench-token"


def job_dict(run_id: str, steps: int, callback: str | None) -> dict[str, Any]:
    job = json.loads((REPO / "configs" / "examples" / "tiny-train-eval.json").read_text(encoding="utf-8"))
    job.update(run_id=run_id, kind="train", benchmarks=[])
    job["hyper"].update(max_steps=steps, logging_steps=1, save_steps=steps, max_length=512)
    job["callback"] = {"url": callback, "token": TOKEN} if callback else None
    return job


class LogWatcher(threading.Thread):
    """Notes when each line of a run's logging.jsonl first appears.

    Cheap on purpose (it runs beside the measured process): it looks for the file every 50 ms, then only stats it
    every 5 ms and reads when it grew. It watches the bare runs too, so both sides carry the same instrument.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.seen: dict[int, float] = {}  # step -> monotonic time first seen
        self.stop = threading.Event()

    def run(self) -> None:
        path = None
        while path is None and not self.stop.is_set():
            path = next(iter(self.root.glob("*/tool/swift-out/logging.jsonl")), None) or next(
                iter(self.root.glob("swift-out/logging.jsonl")), None)
            if path is None:
                time.sleep(0.05)
        pos = 0
        while path is not None and not self.stop.is_set():
            try:
                size = path.stat().st_size
            except OSError:
                size = pos
            if size > pos:
                now = time.monotonic()
                with path.open("rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
                complete = data[: data.rfind(b"\n") + 1]
                pos += len(complete)
                for line in complete.splitlines():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    steps = rec.get("global_step/max_steps")
                    if isinstance(steps, str) and "loss" in rec:
                        self.seen.setdefault(int(steps.split("/")[0]), now)
            time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cache", type=Path, help="agent cache to use (default: a fresh temporary one)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tunebot-bench-"))
    cache = (args.cache or work / "cache").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEBOT_", "HF_", "GITHUB_"))}
    agent_cmd = [sys.executable, "-m", "tunebot", "agent", "run", "--cache", str(cache), "--bench-data",
                 str(BENCH_DATA), "--offline", "--quiet"]
    try:
        # Warm-up through the agent: builds the tiny model and tiny-mcq into the cache (not timed).
        warm = work / "warm"
        warm.mkdir()
        (warm / "job.json").write_text(json.dumps(job_dict("bench-warm", 2, None)), encoding="utf-8")
        subprocess.run([*agent_cmd, "--job", str(warm / "job.json"), "--out", str(warm / "out")], cwd=REPO, env=env,
                       check=True, capture_output=True)

        # The bare command: the agent's own argument list and tool environment.
        model_dir = cache / "models" / "builtin" / f"tiny-r{tiny_model.RECIPE_VERSION}-s{tiny_model.DEFAULT_SEED}"
        model = ResolvedModel("tiny", "builtin", "tiny", "bench", model_dir)
        data = build_tiny_mcq(BENCH_DATA, cache / "datasets")
        job = job_from_dict(job_dict("bench-bare", args.steps, None))
        cfg = AgentConfig(out=work / "unused", cache=cache, base_env=env, offline=True)
        bare_scratch = work / "bare-scratch"
        ctx = RunContext(cfg, None, None, bare_scratch, work)  # type: ignore[arg-type]
        ctx.cpu_threads = 1  # what the agent sets for the tiny model on CPU
        bare_env = ctx.tool_env(offline=True)

        bare_times: list[float] = []
        agent_times: list[float] = []
        own_times: list[float] = []  # agent wall minus the ms-swift process it ran: the agent's own cost
        delays: list[float] = []
        for i in range(args.repeats):
            shutil.rmtree(bare_scratch, ignore_errors=True)
            (bare_scratch / "tmp").mkdir(parents=True)
            argv = [cfg.swift_exe, *sft_argv(job, model, [data], bare_scratch / "swift-out", gpu=False)]
            watcher = LogWatcher(bare_scratch)
            watcher.start()
            t0 = time.monotonic()
            subprocess.run(argv, cwd=REPO, env=bare_env, check=True, capture_output=True)
            bare_times.append(time.monotonic() - t0)
            watcher.stop.set()
            watcher.join()

            arrivals: dict[int, float] = {}

            def on_event(event: dict[str, Any], arrivals: dict[int, float] = arrivals) -> None:
                if event["type"] == "progress":
                    arrivals.setdefault(int(event["step"]), time.monotonic())

            run_dir = work / f"agent-{i}"
            run_dir.mkdir()
            with CallbackServer(TOKEN, on_event=on_event) as server:
                (run_dir / "job.json").write_text(json.dumps(job_dict(f"bench-{i}", args.steps, server.url)),
                                                  encoding="utf-8")
                watcher = LogWatcher(cache / "scratch")
                watcher.start()
                t0 = time.monotonic()
                subprocess.run([*agent_cmd, "--job", str(run_dir / "job.json"), "--out", str(run_dir / "out")],
                               cwd=REPO, env=env, check=True, capture_output=True)
                agent_times.append(time.monotonic() - t0)
                results = json.loads((run_dir / "out" / "results.json").read_text(encoding="utf-8"))
                own_times.append(agent_times[-1] - float(results["train"]["wall_s"]))
                watcher.stop.set()
                watcher.join()
            delays += [arrivals[s] - watcher.seen[s] for s in watcher.seen if s in arrivals]
            print(f"round {i + 1}: bare {bare_times[-1]:.2f}s  agent {agent_times[-1]:.2f}s "
                  f"(of which outside ms-swift {own_times[-1]:.2f}s)", flush=True)

        bare = statistics.median(bare_times)
        agent = statistics.median(agent_times)
        print(f"bare swift sft   median {bare:.2f}s  ({', '.join(f'{t:.2f}' for t in bare_times)})")
        print(f"tunebot agent    median {agent:.2f}s  ({', '.join(f'{t:.2f}' for t in agent_times)})")
        print(f"agent fixed cost {agent - bare:+.2f}s (difference of medians; ms-swift's own start-up varies by "
              f"seconds on a shared machine)")
        own = statistics.median(own_times)
        print(f"agent's own time (its wall minus the ms-swift process inside it): median {own:.2f}s "
              f"({', '.join(f'{t:.2f}' for t in own_times)}) -> {(bare + own) / bare:.3f} of bare")
        if delays:
            delays.sort()
            p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
            print(f"log line -> callback delay: median {statistics.median(delays) * 1000:.0f} ms, "
                  f"p95 {p95 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms over {len(delays)} lines (target <= 1 s)")
        print(f"overhead_ratio={agent / bare:.3f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
