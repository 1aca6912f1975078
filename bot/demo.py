"""The guided demo behind `make demo`: /train on the built-in tiny model, /eval of the base model and /compare, all
real (ms-swift, EvalScope, the service and its store) on this machine, leaving a report under runs/."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

from bot.local import LocalSession, Terminal, local_parser


def _banner(term: Terminal, text: str) -> None:
    line = "─" * 78
    print(f"\n{line}\n{text}\n{line}", file=term.stream)
    term.stream.flush()


async def run_demo(workdir: Path, runs_dir: Path, *, steps: int | None = None,
                   agent_args: list[str] | None = None, wait_for_enter: bool = True) -> int:
    term = Terminal()
    started = time.monotonic()
    train = "/train tiny preset=tiny-demo" + (f" max_steps={steps}" if steps else "")
    async with LocalSession(workdir, runs_dir, agent_args=agent_args, terminal=term) as session:
        store = session.service.store
        _banner(term, "1/3  Fine-tune the built-in tiny Qwen2 with LoRA (ms-swift), then evaluate it (EvalScope) on\n"
                      "     real C-Eval and CMMLU questions — what a PR comment does on a GPU runner. No baseline is\n"
                      "     stored yet, so tunebot also evaluates the base model and posts the comparison.")
        await session.say(train)
        runs = await store.runs_for_pr(session.github.repo, 1)
        trained = next((r for r in runs if r.kind in ("train", "train+eval")), None)
        if trained is None or trained.state != "succeeded":
            reason = trained.reason if trained is not None else "no run was started"
            print(f"\ntunebot demo: training did not succeed: {reason}", file=term.stream)
            return 1

        _banner(term, "2/3  /eval of the base model: results are content-addressed, so the identical eval that just\n"
                      "     ran as the baseline is answered from the store instead of being paid for twice.")
        await session.say("/eval ceval cmmlu model=tiny")

        _banner(term, "3/3  /compare base-model: the tuned adapter against the untuned model, paired\n"
                      "     per-question outcomes, McNemar's exact test, a bootstrap interval. Both sides are\n"
                      "     stored, so it answers at once and dispatches nothing. (`/compare main` compares with\n"
                      "     what main's own recipe trains: on this branch that is the same recipe.)")
        before = len(session.github.runs)
        await session.say("/compare base-model")
        dispatched = len(session.github.runs) - before

        reports = [c.body for c in session.github.comments.values() if "tunebot:compare:" in c.body]
        for body in reports:  # refreshed in place on the PR; show it again here, where the question was asked
            term.bot(body, edited=True)
        card = next((c.body for c in session.github.comments.values() if f"tunebot:run:{trained.run_id}" in c.body),
                    "")
        out = runs_dir / trained.run_id / "out"
        report = _report(trained.run_id, card, reports, out, dispatched)
        path = runs_dir / "demo-report.md"
        path.write_text(report, encoding="utf-8")
        elapsed = time.monotonic() - started
        page = session.run_page(trained.run_id)
        _banner(term, f"Done in {elapsed:.0f} s. Report: {path}\n"
                      f"Training outputs (adapter, results.json, loss curve, summary): {out}\n"
                      f"Run page (recipe, loss curve, scores, comparison; History and Leaderboard beside it):\n"
                      f"  {page}")
        if not reports:
            print("tunebot demo: no comparison was posted", file=term.stream)
            return 1
        if wait_for_enter and sys.stdin.isatty():
            # The pages are served by this session: keep it up until the person has looked.
            print("Serving the pages above; press Enter to stop.", file=term.stream, flush=True)
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                await asyncio.to_thread(sys.stdin.readline)
        return 0


def _report(run_id: str, card: str, reports: list[str], out: Path, dispatched: Any) -> str:
    pngs = sorted(out.glob("*.png")) if out.is_dir() else []
    lines = ["# tunebot demo report", "", f"Training run `{run_id}`; outputs in `{out}`.", ""]
    lines += [f"![loss curve]({p})" for p in pngs]
    lines += ["", "## Run card", "", card, "", "## Comparison (tiny + LoRA adapter vs. the base model)", ""]
    lines += reports or ["(no comparison was posted)"]
    lines += ["", f"The comparison dispatched {dispatched} new job(s): both sides came from the store.", ""]
    return "\n".join(lines)


def demo_main(argv: list[str]) -> int:
    p = local_parser("tunebot demo")
    p.add_argument("--steps", type=int, default=None, help="training steps for the tiny model")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(run_demo(args.workdir, args.runs_dir or args.workdir / "runs", steps=args.steps,
                                agent_args=args.agent_arg))
