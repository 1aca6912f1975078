"""Training throughput with 1 and 2 processes (issue 14): the tiny model through the agent with `resources.gpus`
1 and 2 (on CPU: two gloo processes, as CI tests it), samples/s from ms-swift's own train_runtime, and the scaling
efficiency (samples/s at 2 / (2 x samples/s at 1)). On a 2-core machine shared with other work, 2 processes
compete for the same cores: the figure shows the path works, not what GPUs would gain (bench/device_check.sh).

    .venv/bin/python bench/ddp_scaling.py [--steps 30] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_jobs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4, help="per-process batch size")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ddp-"))
    cache = work / "cache"
    rates = {}
    for procs in (1, 2):
        spec = agent_jobs.job(f"ddp-{procs}", kind="train", benchmarks=[], resources={"gpus": procs, "nodes": 1},
                              hyper={"max_steps": args.steps, "save_steps": args.steps, "logging_steps": 5,
                                     "per_device_train_batch_size": args.batch, "max_length": 256})
        run = agent_jobs.run(work, cache, spec)
        train = run.results["train"]
        samples = args.steps * args.batch * procs
        rates[procs] = samples / float(train["train_runtime_s"])
        print(f"{procs} process(es): {samples} samples in {train['train_runtime_s']:.2f} s train_runtime "
              f"-> {rates[procs]:.1f} samples/s; whole agent run {run.wall_s:.1f} s")
    print(agent_jobs.machine_note())
    print(f"scaling efficiency 2 vs 1: {rates[2] / (2 * rates[1]) * 100:.0f} % (speed-up {rates[2] / rates[1]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
