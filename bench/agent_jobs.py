"""Shared by the issue-14 benches: run the real agent (`tunebot agent run`) on a tiny-model job and read its outputs.

Every bench goes through the agent itself, so the figures include what a runner really does (server start, EvalScope
start-up, checks), not a hand-made shortcut.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "configs" / "examples" / "tiny-train-eval.json"
BENCH_DATA = REPO / "configs" / "benchmarks" / "data"
CEVAL = ["computer_network", "logic"]
CMMLU = ["agronomy", "anatomy"]


def job(run_id: str, **changes: Any) -> dict[str, Any]:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["run_id"] = run_id
    hyper = changes.pop("hyper", {})
    data["hyper"].update(hyper)
    data.update(changes)
    return data


def benchmarks(limit: int, max_tokens: int = 8) -> list[dict[str, Any]]:
    return [{"name": "ceval", "subsets": CEVAL, "limit": limit, "few_shot": 0, "max_tokens": max_tokens},
            {"name": "cmmlu", "subsets": CMMLU, "limit": limit, "few_shot": 0, "max_tokens": max_tokens}]


@dataclass
class Run:
    out: Path
    code: int
    wall_s: float
    stderr: str

    @property
    def results(self) -> dict[str, Any]:
        return json.loads((self.out / "results.json").read_text(encoding="utf-8"))

    def predictions(self, folder: str = "eval") -> dict[str, str | None]:
        """`<file>#<index>` -> the model's extracted answer, from EvalScope's reviews kept in the output."""
        out: dict[str, str | None] = {}
        for path in sorted((self.out / folder / "reviews").glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    score = rec["sample_score"]["score"]
                    out[f"{path.stem}#{rec['index']}"] = score.get("prediction")
        return out


def run(work: Path, cache: Path, spec: dict[str, Any], *extra: str) -> Run:
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{spec['run_id']}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    out = work / f"out-{spec['run_id']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEBOT_", "HF_", "GITHUB_"))}
    argv = [sys.executable, "-m", "tunebot", "agent", "run", "--job", str(path), "--out", str(out), "--cache",
            str(cache), "--bench-data", str(BENCH_DATA), "--offline", "--quiet", *extra]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    res = Run(out, proc.returncode, time.monotonic() - t0, proc.stderr)
    if res.code != 0:
        raise SystemExit(f"agent run {spec['run_id']} failed ({res.code}):\n{res.stderr[-3000:]}")
    return res


def train_adapter(work: Path, cache: Path, steps: int = 80) -> Run:
    """A LoRA adapter that has learnt the `答案：X` format (so base and adapter answer differently); reused when an
    earlier bench in the same --work directory trained it."""
    out = work / "out-bench-adapter"
    if (out / "results.json").is_file() and (out / "adapter" / "adapter_config.json").is_file():
        return Run(out, 0, 0.0, "")
    return run(work, cache, job("bench-adapter", kind="train", benchmarks=[],
                                hyper={"max_steps": steps, "save_steps": steps, "learning_rate": 0.002}))


def setup(doc: str, prefix: str) -> tuple[argparse.Namespace, Path, Path, Run]:
    """The flags every eval bench takes (--limit, --work), its scratch and cache directories, and the trained
    adapter they evaluate."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--limit", type=int, default=10, help="questions per subject (4 subjects)")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix=prefix))
    cache = work / "cache"
    return args, work, cache, train_adapter(work, cache)


def eval_job(run_id: str, adapter: Run | None, limit: int, **changes: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"kind": "eval", "tuner": None, "datasets": [], "benchmarks": benchmarks(limit)}
    if adapter is not None:
        extra["adapter"] = {"run_id": "bench-adapter", "path": str(adapter.out)}
    return job(run_id, **extra, **changes)


def machine_note() -> str:
    load = os.getloadavg()
    return (f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
            f"(shared with other work: figures are indicative)")
