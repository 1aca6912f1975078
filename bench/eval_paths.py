"""Native vs served evaluation of the same questions, side by side in one run (issue 14).

Evaluates the tiny model's LoRA adapter on the same C-Eval/CMMLU questions through the agent's native path
(EvalScope loads the model) and its served path (one `swift deploy`, EvalScope over the OpenAI API), and prints
questions/s for each (EvalScope's own wall time, and the whole agent run including model load / server start), their
ratio, and the per-question agreement of the extracted answers (target >= 99 %), listing every disagreement.

    .venv/bin/python bench/eval_paths.py [--limit 10] [--work DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_jobs


def main() -> int:
    args, work, cache, adapter = agent_jobs.setup(__doc__, "bench-eval-paths-")
    native = agent_jobs.run(work, cache, agent_jobs.eval_job("native", adapter, args.limit))
    served = agent_jobs.run(work, cache, agent_jobs.eval_job("served", adapter, args.limit, eval_backend="served"))
    if served.results["manifest"].get("eval_backend") != "served-transformers":
        raise SystemExit(f"the served run did not serve: {served.results['manifest']}")
    a, b = native.predictions(), served.predictions()
    if a.keys() != b.keys():
        raise SystemExit(f"different questions: {sorted(a.keys() ^ b.keys())}")
    n = len(a)
    agree = sum(a[k] == b[k] for k in a)
    native_eval = float(native.results["manifest"]["eval_wall_s"])
    served_eval = float(served.results["manifest"]["eval_wall_s"])
    start = float(served.results["manifest"].get("eval_server_start_s", 0.0))
    print(agent_jobs.machine_note())
    print(f"questions: {n} (C-Eval + CMMLU, 4 subjects, tiny Qwen2 + LoRA, max_tokens 8, CPU)")
    print(f"native: EvalScope {native_eval:.1f} s -> {n / native_eval:.2f} q/s; whole agent run {native.wall_s:.1f} s")
    print(f"served: EvalScope {served_eval:.1f} s -> {n / served_eval:.2f} q/s; server start {start:.1f} s; "
          f"whole agent run {served.wall_s:.1f} s")
    print(f"served/native questions/s ratio: {native_eval / served_eval:.2f} (EvalScope time), "
          f"{native.wall_s / served.wall_s:.2f} (whole run)")
    print(f"per-question agreement: {agree}/{n} = {100 * agree / n:.1f} % (target >= 99 %)")
    for k in sorted(a):
        if a[k] != b[k]:
            print(f"  disagreement {k}: native {a[k]!r} served {b[k]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
