"""`tunebot runs leaderboard` without posting: which runs count, the ranking order, and what is left out and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bot.leaderboard import add_arguments, collect, find_run_dirs, leaderboard_main, settings_from_env
from commands.leaderboard import leaderboard_markdown, slack_message
from commands.render.slack import validate_message
from tests.bot.leaderboard.helpers import DAY1, DAY2, write_events, write_run

NOW = DAY1 + 7200


@pytest.fixture
def nightly(tmp_path: Path) -> Path:
    """One night of the workflow: three models ranked, one partial, one failed, one killed before finishing."""
    root = tmp_path / "results"
    write_run(root, "leaderboard-qwen3-8b", "qwen3-8b", {"cmmlu": (700, 1000), "ceval": (300, 500)})
    write_run(root, "leaderboard-llama3-8b-instruct", "llama3-8b-instruct", {"cmmlu": (812, 1000), "ceval": (200, 500)})
    write_run(root, "leaderboard-glm4-9b-chat", "glm4-9b-chat", {"cmmlu": (750, 1000), "ceval": (390, 500)})
    write_run(root, "leaderboard-yi-1.5-6b-chat", "yi-1.5-6b-chat", {"cmmlu": (990, 1000)}, status="partial",
              reason="ceval: EvalScope exited with code 1: KeyError 'logic' (results.json is partial)")
    write_events(root / "leaderboard-internlm2.5-7b-chat", "leaderboard-9001-1-internlm2.5-7b-chat",
                 "internlm2.5-7b-chat", "failed", "not enough disk space: /cache has 3.1 GiB free\nsecond line")
    write_events(root / "leaderboard-qwen2.5-7b-instruct", "leaderboard-9001-1-qwen2.5-7b-instruct",
                 "qwen2.5-7b-instruct", None, None)
    return root


def _args(results: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--results", str(results), *extra])


def _table_models(markdown: str, title: str) -> list[str]:
    """The Model column of one benchmark's table, top to bottom."""
    section = markdown.split(f"### {title}\n", 1)[1].lstrip("\n").split("\n\n", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| #")]
    return [ln.split(" | ")[1] for ln in rows]


def test_ranks_each_benchmark_by_score_and_leaves_out_failed_runs(nightly: Path) -> None:
    got = collect(nightly, ("cmmlu", "ceval"))
    assert got.runs == 6
    assert got.models == ("glm4-9b-chat", "llama3-8b-instruct", "qwen3-8b")
    md = leaderboard_markdown(got, ("cmmlu", "ceval"), now=NOW)
    assert _table_models(md, "Leaderboard: CMMLU") == ["llama3-8b-instruct", "glm4-9b-chat", "qwen3-8b"]
    assert _table_models(md, "Leaderboard: C-Eval") == ["glm4-9b-chat", "qwen3-8b", "llama3-8b-instruct"]
    assert "| **81.2** |" in md and "| 1,000 |" in md and "| 2025-03-01 |" in md
    # In the order asked for, with the interval note once.
    assert md.index("Leaderboard: CMMLU") < md.index("Leaderboard: C-Eval")
    assert md.count("Scores with overlapping intervals") == 1
    assert md.startswith("## 🏆 Leaderboard · ") and "3 models ranked" in md
    # The partial run's 99.0 would top CMMLU: it must not be ranked at all.
    assert "yi-1.5-6b-chat" not in md.split("**Not ranked")[0] and "99.0" not in md
    notes = md.split("**Not ranked (3)**", 1)[1]
    assert "`yi-1.5-6b-chat` (`leaderboard-yi-1.5-6b-chat`): partial results (a benchmark failed): ceval: " \
           "EvalScope exited with code 1" in notes
    assert "`internlm2.5-7b-chat` (`leaderboard-internlm2.5-7b-chat`): failed: not enough disk space" in notes
    assert "second line" not in notes
    assert "`qwen2.5-7b-instruct` (`leaderboard-qwen2.5-7b-instruct`): did not finish" in notes


def test_ties_rank_more_questions_first_then_earlier(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "small-n", {"cmmlu": (50, 100)}, finished_at=DAY1)
    write_run(tmp_path, "b", "big-n-later", {"cmmlu": (500, 1000)}, finished_at=DAY2)
    write_run(tmp_path, "c", "big-n-earlier", {"cmmlu": (500, 1000)}, finished_at=DAY1)
    md = leaderboard_markdown(collect(tmp_path), now=NOW)
    assert _table_models(md, "Leaderboard: CMMLU") == ["big-n-earlier", "big-n-later", "small-n"]


def test_limit_cuts_each_table_and_says_how_many_more(tmp_path: Path) -> None:
    for i in range(5):
        write_run(tmp_path, f"m{i}", f"model-{i}", {"cmmlu": (10 * i, 100)})
    md = leaderboard_markdown(collect(tmp_path), limit=2, now=NOW)
    assert _table_models(md, "Leaderboard: CMMLU") == ["model-4", "model-3"]
    assert "… 3 more not shown" in md


def test_benchmarks_not_asked_for_are_ignored_and_missing_ones_said(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "qwen3-8b", {"cmmlu": (70, 100), "general_mcq": (9, 10)})
    got = collect(tmp_path, ("ceval", "cmmlu"))
    assert {e.benchmark for e in got.entries} == {"cmmlu"}
    md = leaderboard_markdown(got, ("ceval", "cmmlu"), now=NOW)
    assert "No result for C-Eval in this run." in md and "General MCQ" not in md
    assert "`qwen3-8b` (`a`): no C-Eval score" in md


def test_the_same_model_twice_keeps_the_newer_result(tmp_path: Path) -> None:
    write_run(tmp_path, "old", "qwen3-8b", {"cmmlu": (90, 100)}, finished_at=DAY1, run_id="nightly-1")
    write_run(tmp_path, "new", "qwen3-8b", {"cmmlu": (60, 100)}, finished_at=DAY2, run_id="nightly-2")
    got = collect(tmp_path)
    assert [(e.model, e.score) for e in got.entries] == [("qwen3-8b", 0.6)]
    assert [(s.where, s.reason) for s in got.skipped] == [("old", "CMMLU: an older result (finished 2025-03-01 "
                                                                  "02:17 UTC); the newer one is ranked")]


def test_adapters_are_labelled_and_ranked_apart_from_the_base_model(tmp_path: Path) -> None:
    write_run(tmp_path, "base", "qwen3-8b", {"cmmlu": (60, 100)})
    write_run(tmp_path, "tuned", "qwen3-8b", {"cmmlu": (70, 100)}, run_id="eval-77",
              adapter={"sha256": "f" * 64, "source": "input", "run_id": "train-42", "path": "/runs/train-42"})
    got = collect(tmp_path)
    assert sorted((e.adapter or "", e.score) for e in got.entries) == [("", 0.6), ("train-42", 0.7)]
    md = leaderboard_markdown(got, now=NOW)
    assert "| 1 | qwen3-8b | `train-42` | **70.0** |" in md and "| 2 | qwen3-8b | (base model) | **60.0** |" in md


def test_unreadable_and_foreign_files_are_reported_not_fatal(tmp_path: Path) -> None:
    write_run(tmp_path, "good", "qwen3-8b", {"cmmlu": (70, 100)})
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "results.json").write_text('{"version": 1, "scores": {', encoding="utf-8")
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "results.json").write_text(json.dumps({"version": 2}), encoding="utf-8")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "results.json").write_text(json.dumps({"version": 1, "manifest": 5}), encoding="utf-8")
    nameless = write_run(tmp_path, "nameless", "x", {"cmmlu": (1, 2)})
    data = json.loads((nameless.out / "results.json").read_text(encoding="utf-8"))
    del data["manifest"]["model"]
    (nameless.out / "results.json").write_text(json.dumps(data), encoding="utf-8")
    got = collect(tmp_path)
    assert [e.model for e in got.entries] == ["qwen3-8b"]
    reasons = {s.where: s.reason for s in got.skipped}
    assert reasons["torn"].startswith("unreadable results.json: ")
    assert "unsupported version 2" in reasons["future"]
    assert reasons["odd"].startswith("unreadable results.json: ")
    assert reasons["nameless"] == "results.json names no model (manifest.model.name)"


def test_run_directories_are_found_at_the_artifact_layouts_only(tmp_path: Path) -> None:
    single = tmp_path / "single"
    write_run(single, ".", "qwen3-8b", {"cmmlu": (1, 2)})  # download-artifact with one artifact: straight into DIR
    assert find_run_dirs(single) == [single]
    nested = tmp_path / "nested"
    run = write_run(nested, "leaderboard-qwen3-8b", "qwen3-8b", {"cmmlu": (1, 2)})
    # EvalScope's own outputs inside a run directory never count as runs.
    (run.out / "eval" / "reports").mkdir(parents=True)
    (run.out / "eval" / "reports" / "results.json").write_text("{}", encoding="utf-8")
    assert find_run_dirs(nested) == [run.out]


def test_slack_message_is_short_valid_block_kit(nightly: Path) -> None:
    got = collect(nightly, ("cmmlu", "ceval"))
    msg = slack_message(got, ("cmmlu", "ceval"), now=NOW, link="https://github.com/octo/lb/issues/4#issuecomment-9")
    assert validate_message(msg) == []
    cmmlu = msg["blocks"][1]["text"]["text"]
    assert cmmlu.splitlines() == ["*CMMLU*", "1. `llama3-8b-instruct` *81.2* (n=1,000)",
                                  "2. `glm4-9b-chat` *75.0* (n=1,000)", "3. `qwen3-8b` *70.0* (n=1,000)"]
    context = msg["blocks"][-1]["elements"][0]["text"]
    assert "<https://github.com/octo/lb/issues/4#issuecomment-9|full ranking>" in context and "3 not ranked" in context
    assert msg["text"].startswith("🏆 Leaderboard · ") and "CMMLU: llama3-8b-instruct 81.2" in msg["text"]
    zh = slack_message(got, ("cmmlu",), "zh", now=NOW)
    assert zh["blocks"][0]["text"]["text"].startswith("🏆 排行榜")


def test_cli_prints_markdown_and_exits_cleanly(nightly: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert leaderboard_main(_args(nightly, "--benchmarks", "cmmlu ceval", "--language", "zh"), {}, now=NOW) == 0
    out, err = capsys.readouterr()
    assert out.startswith("## 🏆 排行榜") and "### 排行榜：CMMLU" in out and err == ""


@pytest.mark.parametrize(("extra", "env", "says"), [
    (("--limit", "0"), {}, "--limit must be between 1 and 100, got 0"),
    (("--benchmarks", "cmmlu mmlu"), {}, "--benchmarks: unknown benchmark 'mmlu'"),
    (("--post",), {"TUNEBOT_LEADERBOARD_ISSUE": "12", "GITHUB_REPOSITORY": "octo/lb"}, "GITHUB_TOKEN is not set"),
    (("--post",), {"TUNEBOT_LEADERBOARD_ISSUE": "12", "GITHUB_TOKEN": "t"}, "GITHUB_REPOSITORY must be owner/name"),
    (("--post",), {"TUNEBOT_LEADERBOARD_ISSUE": "twelve", "GITHUB_TOKEN": "t"}, "TUNEBOT_LEADERBOARD_ISSUE must be"),
    (("--post",), {"TUNEBOT_LEADERBOARD_SLACK_CHANNEL": "#lb", "SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN is not set"),
])
def test_cli_configuration_errors_name_what_to_fix(nightly: Path, capsys: pytest.CaptureFixture[str],
                                                   extra: tuple[str, ...], env: dict[str, str], says: str) -> None:
    assert leaderboard_main(_args(nightly, *extra), env, now=NOW) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("tunebot runs leaderboard: ") and err.count("\n") == 1 and says in err


def test_cli_results_dir_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert leaderboard_main(_args(tmp_path / "missing"), {}, now=NOW) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_empty_results_still_make_a_ranking_to_post(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert leaderboard_main(_args(tmp_path, "--benchmarks", "cmmlu", "--post"), {}, now=NOW) == 0
    out, err = capsys.readouterr()
    assert "No results in this run." in out and "0 models ranked" in out
    assert "nothing to post to" in err  # --post without a target: printed only, said once


def test_env_settings_link_the_workflow_run() -> None:
    s = settings_from_env({"GITHUB_REPOSITORY": "octo/lb", "GITHUB_RUN_ID": "77", "GITHUB_TOKEN": "t",
                           "TUNEBOT_LEADERBOARD_ISSUE": "#4", "GITHUB_API_URL": "https://ghe.example/api/v3/",
                           "GITHUB_SERVER_URL": "https://ghe.example", "TUNEBOT_LEADERBOARD_SLACK_CHANNEL": "",
                           "SLACK_BOT_TOKEN": ""})
    assert s.issue == 4 and s.targets == ("github",) and s.github_api_url == "https://ghe.example/api/v3"
    assert s.run_url == "https://ghe.example/octo/lb/actions/runs/77" and s.author == "github-actions[bot]"
    assert "github_token" not in repr(s) and "slack_token" not in repr(s)  # secrets stay out of logs
