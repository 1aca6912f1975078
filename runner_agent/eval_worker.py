"""Runs EvalScope in its own process (`python -m runner_agent.eval_worker SPEC.json`), one task per group of
benchmarks that share a limit and a generation length, so the agent's parent never imports EvalScope or torch.

A spec with `eval_type: openai_api` evaluates models served by one `swift deploy` (runner_agent/served.py): one
run per served name, each asked with greedy decoding and `batch_size` concurrent requests.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def run_served(spec: dict[str, Any]) -> None:
    from evalscope import TaskConfig, run_task

    for served in spec["runs"]:
        for group in served["groups"]:
            cfg = TaskConfig(
                model=served["model"],
                model_id=served["model_id"],
                eval_type="openai_api",
                api_url=spec["api_url"],
                api_key=spec["api_key"],
                # Greedy, like the native path's do_sample=False; the seed for engines that sample anyway.
                generation_config={"max_tokens": group["max_tokens"], "temperature": 0.0, "seed": spec.get("seed", 42)},
                **_questions(spec, group),
            )
            run_task(task_cfg=cfg)
            print(json.dumps({"event": "group_done", "model": served["model"], "work_dir": group["work_dir"]}),
                  flush=True)


def _questions(spec: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
    """What both paths hand EvalScope alike (the same questions, prompts, batch and seed): only how the model is
    reached differs, so served and native scores are of the same evaluation."""
    return {"datasets": group["datasets"], "dataset_args": group["dataset_args"],
            "dataset_hub": spec.get("dataset_hub", "modelscope"), "limit": group["limit"],
            "eval_batch_size": spec.get("batch_size", 8), "work_dir": group["work_dir"], "no_timestamp": True,
            "seed": spec.get("seed", 42)}


def run(spec: dict[str, Any]) -> None:
    if spec.get("eval_type") == "openai_api":
        run_served(spec)
        return
    from evalscope import TaskConfig, run_task

    for group in spec["groups"]:
        cfg = TaskConfig(
            model=spec["model"],
            model_id=spec["model_id"],
            eval_type="llm_ckpt",
            model_args=spec["model_args"],
            generation_config={"max_tokens": group["max_tokens"], "do_sample": False},
            **_questions(spec, group),
        )
        run_task(task_cfg=cfg)
        print(json.dumps({"event": "group_done", "work_dir": group["work_dir"]}), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m runner_agent.eval_worker SPEC.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    run(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
