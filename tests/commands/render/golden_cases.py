"""The messages the golden files hold: each case renders one message in one language from fixed inputs.

Shared by the golden test (which compares) and `tests/commands/render/update_golden.py` (which rewrites the files).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from commands.render import (
    DingTalkAt,
    LeaderboardEntry,
    ScoreView,
    check_run_output,
    dingtalk_comparison_action_card,
    dingtalk_comparison_markdown,
    dingtalk_milestone,
    dingtalk_run_action_card,
    dingtalk_run_markdown,
    render_cached_reply,
    render_comparison,
    render_leaderboard,
    render_run_card,
    render_status_list,
    slack_comparison_message,
    slack_milestone_text,
    slack_run_message,
)
from commands.render.slack import MILESTONES

from .fixtures import LINKS, NOW, comparison, conclusion, loss_curve, run_view

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
PART_BREAK = "\n\n<!-- ✂ next comment ✂ -->\n\n"
LANGS = ("en", "zh")


def _parts(parts: list[str]) -> str:
    return PART_BREAK.join(parts)


def _leaderboard_entries() -> list[LeaderboardEntry]:
    return [
        LeaderboardEntry("cmmlu", "qwen-7b", 0.5427, 480, NOW, run_id="tb-20250115-0042", adapter="tb-20250115-0042",
                         url="https://github.com/acme/llm/actions/runs/123456789"),
        LeaderboardEntry("cmmlu", "qwen-7b", 0.5104, 480, NOW - 86400 * 3),
        LeaderboardEntry("cmmlu", "yi-6b", 0.5521, 480, NOW - 86400 * 10, run_id="tb-20250105-0007",
                         adapter="tb-20250105-0007"),
        LeaderboardEntry("ceval", "qwen-7b", 0.4417, 120, NOW, run_id="tb-20250115-0042", adapter="tb-20250115-0042"),
    ]


def _recipe_comparison() -> Any:
    """A `/compare main` report: the same recipe at main's commit, the PR's data file and learning rate changed."""
    return replace(comparison(), base_label="main@9c0ffee", base_sha="9c0ffee1" + "0" * 32,
                   new_sha="4f2a9c1e0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3",
                   changes=("learning_rate: 0.0001 → 0.0002", "data/train.jsonl: blob 1a2b3c4 → blob 9f8e7d6"))


def _seeded_comparison() -> Any:
    """The `/compare main seeds=2` report: the recipe comparison judged across two seeds per side (per-seed scores
    of each benchmark; Δ, p and the interval from Welch's t-test on them)."""
    from commands.compare import with_seeds
    from commands.results import BenchmarkResult, Results, SubsetScore

    def side(run: str, scores: dict[str, int]) -> Results:
        return Results(run, "succeeded", {b: BenchmarkResult(b, {"all": SubsetScore(200, c)}, {})
                                          for b, c in scores.items()})

    base = [side("tb-base-42", {"cmmlu": 100, "ceval": 90}), side("tb-base-43", {"cmmlu": 104, "ceval": 97})]
    new = [side("tb-new-42", {"cmmlu": 110, "ceval": 92}), side("tb-new-43", {"cmmlu": 113, "ceval": 90})]
    return with_seeds(_recipe_comparison(), (42, 43), base, new)


def seeded_conclusion() -> Any:
    from commands.compare import decide

    from .fixtures import RULES

    return decide(_seeded_comparison(), RULES)


def _views() -> list[Any]:
    return [run_view("running"), run_view("succeeded", run_id="tb-20250114-0031", started_at=NOW - 90000,
                                          finished_at=NOW - 88000), run_view("queued", run_id="tb-20250115-0050"),
            run_view("failed", run_id="tb-20250113-0002", started_at=NOW - 200000, finished_at=NOW - 199000)]


# name -> (suffix, producer(lang)) ; md producers return text, json producers return JSON-able data
CASES: dict[str, tuple[str, Callable[[str], Any]]] = {
    **{f"run_card_{state}": ("md", lambda lang, s=state: render_run_card(run_view(s), lang))
       for state in ("queued", "dispatched", "running", "succeeded", "failed", "cancelled")},
    # Where the curves are: the tracker's page when it printed one, TensorBoard's files in the artifact by default,
    # and a configured tracker that printed no page.
    "run_card_tracker_link": ("md", lambda lang: render_run_card(run_view(
        "succeeded", tracker="wandb", tracker_url="https://wandb.ai/acme/llm-sft/runs/3kq9x2ab"), lang)),
    "run_card_tensorboard": ("md", lambda lang: render_run_card(run_view("succeeded", tracker="tensorboard"), lang)),
    "run_card_tracker_missing": ("md", lambda lang: render_run_card(run_view("succeeded", tracker="swanlab"), lang)),
    "comparison": ("md", lambda lang: _parts(render_comparison(comparison(), conclusion(), lang, LINKS, key="pr-42",
                                                               loss=loss_curve()))),
    "comparison_split": ("md", lambda lang: _parts(render_comparison(comparison(), conclusion(), lang, LINKS,
                                                                     key="pr-42", limit=2500))),
    "comparison_split_tight": ("md", lambda lang: _parts(render_comparison(comparison(), conclusion(), lang, LINKS,
                                                                           key="pr-42", limit=1600))),
    "comparison_recipe": ("md", lambda lang: _parts(render_comparison(_recipe_comparison(), conclusion(), lang,
                                                                      LINKS, key="pr-42-vs-main"))),
    "check_run_recipe": ("json", lambda lang: (lambda o: {"conclusion": o.conclusion, "output": o.output()})(
        check_run_output(_recipe_comparison(), conclusion(), lang, LINKS))),
    "slack_comparison_recipe": ("json", lambda lang: slack_comparison_message(_recipe_comparison(), conclusion(),
                                                                              lang, LINKS)),
    "dingtalk_comparison_recipe": ("json", lambda lang: dingtalk_comparison_markdown(_recipe_comparison(),
                                                                                     conclusion(), lang, LINKS)),
    "comparison_seeds": ("md", lambda lang: _parts(render_comparison(_seeded_comparison(), seeded_conclusion(), lang,
                                                                     LINKS, key="pr-42-vs-main"))),
    "slack_comparison_seeds": ("json", lambda lang: slack_comparison_message(_seeded_comparison(),
                                                                             seeded_conclusion(), lang, LINKS)),
    "dingtalk_comparison_seeds": ("json", lambda lang: dingtalk_comparison_markdown(_seeded_comparison(),
                                                                                    seeded_conclusion(), lang, LINKS)),
    "status": ("md", lambda lang: render_status_list(_views(), lang)),
    "status_empty": ("md", lambda lang: render_status_list([], lang)),
    "cached_reply": ("md", lambda lang: render_cached_reply(
        "tb-20250114-0031", "4f2a9c1e0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3", lang,
        run_url="https://github.com/acme/llm/actions/runs/123450000",
        scores={"cmmlu": ScoreView(0.5104, 480), "ceval": ScoreView(0.45, 120)})),
    "leaderboard": ("md", lambda lang: render_leaderboard(_leaderboard_entries(), lang)),
    "leaderboard_cmmlu": ("md", lambda lang: render_leaderboard(_leaderboard_entries(), lang, benchmark="cmmlu")),
    "check_run": ("json", lambda lang: (lambda o: {"conclusion": o.conclusion, "output": o.output()})(
        check_run_output(comparison(), conclusion(), lang, LINKS))),
    **{f"slack_run_{state}": ("json", lambda lang, s=state: slack_run_message(run_view(s), lang))
       for state in ("queued", "running", "succeeded", "failed", "cancelled")},
    "slack_comparison": ("json", lambda lang: slack_comparison_message(comparison(), conclusion(), lang, LINKS)),
    "slack_milestones": ("json", lambda lang: {
        m: slack_milestone_text(run_view("failed" if m == "failed" else "cancelled" if m == "cancelled"
                                         else "succeeded"), m, lang) for m in MILESTONES}),
    "dingtalk_run_markdown": ("json", lambda lang: dingtalk_run_markdown(
        run_view("succeeded"), lang, at=DingTalkAt(mobiles=("13800000000",)))),
    "dingtalk_run_running": ("json", lambda lang: dingtalk_run_markdown(run_view("running"), lang)),
    "dingtalk_run_action_card": ("json", lambda lang: dingtalk_run_action_card(run_view("failed"), lang)),
    "dingtalk_comparison": ("json", lambda lang: dingtalk_comparison_markdown(comparison(), conclusion(), lang, LINKS)),
    "dingtalk_comparison_action_card": ("json", lambda lang: dingtalk_comparison_action_card(
        comparison(), conclusion(), "https://github.com/acme/llm/pull/42#issuecomment-1", lang)),
    "dingtalk_milestones": ("json", lambda lang: {
        m: dingtalk_milestone(run_view("failed" if m == "failed" else "succeeded"), m, lang) for m in MILESTONES}),
}


def serialise(suffix: str, value: Any) -> str:
    if suffix == "json":
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if not isinstance(value, str):
        raise TypeError(f"a .{suffix} case must render text, got {type(value).__name__}")
    return value


def golden_path(name: str, lang: str) -> Path:
    suffix, _ = CASES[name]
    return GOLDEN / f"{name}.{lang}.{suffix}"


def render_case(name: str, lang: str) -> str:
    """The exact text the golden file of this case must hold."""
    suffix, produce = CASES[name]
    return serialise(suffix, produce(lang))
