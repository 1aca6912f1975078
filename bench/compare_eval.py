"""Base + adapter for a /compare (issue 14): one served job scoring both vs two native runs.

Prints the wall time of one agent run with `eval_backend=served, eval_base=true` (one `swift deploy`, base model and
adapter) against the sum of two native agent runs (adapter, then base model), their ratio, and whether the two paths
gave the same per-question outcomes.

    .venv/bin/python bench/compare_eval.py [--limit 10] [--work DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_jobs


def main() -> int:
    args, work, cache, adapter = agent_jobs.setup(__doc__, "bench-compare-eval-")
    served = agent_jobs.run(work, cache, agent_jobs.eval_job("both-served", adapter, args.limit,
                                                             eval_backend="served", eval_base=True))
    native_adapter = agent_jobs.run(work, cache, agent_jobs.eval_job("adapter-native", adapter, args.limit))
    native_base = agent_jobs.run(work, cache, agent_jobs.eval_job("base-native", None, args.limit))
    two = native_adapter.wall_s + native_base.wall_s
    res = served.results

    def outcomes(scores: dict[str, dict[str, object]]) -> dict[str, object]:
        return {f"{b}:{q}": v for b, s in scores.items() for q, v in dict(s["questions"]).items()}  # type: ignore[call-overload]

    same_adapter = outcomes(res["scores"]) == outcomes(native_adapter.results["scores"])
    same_base = outcomes(res["base_scores"]) == outcomes(native_base.results["scores"])
    n = sum(int(s["n"]) for s in res["scores"].values())
    print(agent_jobs.machine_note())
    print(f"questions per model: {n} (C-Eval + CMMLU, 4 subjects, tiny Qwen2, CPU)")
    print(f"one served job (base + adapter, one server start {res['manifest']['eval_server_start_s']:.1f} s): "
          f"{served.wall_s:.1f} s")
    print(f"two native jobs: adapter {native_adapter.wall_s:.1f} s + base {native_base.wall_s:.1f} s = {two:.1f} s")
    print(f"wall ratio two-native / one-served: {two / served.wall_s:.2f}")
    print(f"same per-question outcomes as native: adapter {same_adapter}, base {same_base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
