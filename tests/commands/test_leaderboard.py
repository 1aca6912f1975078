"""The scheduled leaderboard's rules on plain values: which results count, why the others do not, and the texts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from commands.leaderboard import (
    MARKER,
    Collected,
    LeaderboardConfigError,
    Skipped,
    comment_body,
    keep_newest,
    leaderboard_markdown,
    parse_benchmarks,
    run_entries,
    slack_message,
)
from commands.render import LeaderboardEntry
from commands.render.slack import validate_message
from commands.results import BenchmarkResult, Results, SubsetScore

DAY = 1740795420.0  # 2025-03-01 02:17 UTC


def _results(model: str | None, scores: dict[str, tuple[int, int]], *, status: str = "succeeded",
             run_id: str = "r-1", **manifest: Any) -> str:
    """results.json's text, as the agent writes it."""
    benches = {b: BenchmarkResult(b, {"all": SubsetScore(n=n, correct=c)}, {}) for b, (c, n) in scores.items()}
    m: dict[str, Any] = {"model": {"name": model}} if model is not None else {}
    return Results(run_id=run_id, status=status, benchmarks=benches, manifest={**m, **manifest}).to_json()


def _events(model: str | None = None, *finished: tuple[str, str]) -> str:
    """events.jsonl's text (only the events the leaderboard reads): accepted, then each (status, reason) finished."""
    lines = [{"type": "accepted", "model": model}] if model else []
    lines += [{"type": "finished", "status": status, "reason": reason} for status, reason in finished]
    return "".join(json.dumps(x) + "\n" for x in lines)


def _entry(bench: str, model: str, score: float, *, n: int = 100, date: float = DAY,
           adapter: str | None = None) -> LeaderboardEntry:
    return LeaderboardEntry(bench, model, score, n, date, run_id=adapter or "", adapter=adapter)


def test_benchmark_words_follow_the_eval_grammar() -> None:
    known = ["ceval", "cmmlu", "general_mcq"]
    assert parse_benchmarks("cmmlu ceval", known) == ("cmmlu", "ceval")
    assert parse_benchmarks(" cmmlu,ceval  limit=50 subsets=all cmmlu", known) == ("cmmlu", "ceval")
    assert parse_benchmarks(None, known) == ()
    with pytest.raises(LeaderboardConfigError, match="unknown benchmark 'mmlu'"):
        parse_benchmarks("cmmlu mmlu", known)


def test_events_say_the_model_and_the_last_finish() -> None:
    text = _events("qwen3-8b", ("failed", "a"), ("cancelled", "b")) + '[1, 2]\n{"type": "finished", "sta'  # torn
    assert run_entries("a", text, None, (), "en")[1] == [Skipped("a", "qwen3-8b", "cancelled: b")]
    assert run_entries("a", '{"type": "accepted", "model": 7}', "{}", (), "en")[1][0].model is None


def test_runs_without_usable_results_say_why() -> None:
    killed = _events("m")
    assert run_entries("a", killed, None, (), "en") == ([], [Skipped("a", "m", "did not finish (no results.json; "
                                                                          "the job may have timed out or been "
                                                                          "cancelled)")])
    failed = _events("m", ("failed", "out of disk\nsecond line"))
    assert run_entries("a", failed, None, (), "zh")[1] == [Skipped("a", "m", "失败: out of disk")]
    assert run_entries("a", failed, OSError("gone"), (), "en")[1] == \
        [Skipped("a", "m", "unreadable results.json: gone")]
    assert run_entries("a", failed, '{"version": 1, "sc', (), "en")[1][0].reason.startswith("unreadable results.json: ")
    assert run_entries("a", failed, '{"version": 2}', (), "en")[1][0].reason == \
        "unreadable results.json: results: unsupported version 2; expected 1"
    partial = _results("m2", {"cmmlu": (9, 10)}, status="partial")
    assert run_entries("a", failed, partial, (), "en")[1] == \
        [Skipped("a", "m2", "partial results (a benchmark failed): out of disk")]
    assert run_entries("a", _events("m"), _results(None, {"cmmlu": (9, 10)}), (), "en")[1] == \
        [Skipped("a", "m", "results.json names no model (manifest.model.name)")]


def test_a_succeeded_run_contributes_one_entry_per_wanted_benchmark() -> None:
    results = _results("qwen3-8b", {"cmmlu": (7, 10), "ceval": (0, 0), "odd": (3, 2)}, run_id="eval-9",
                       started_at=DAY - 60, adapter={"source": "input", "run_id": "train-4"})
    entries, skipped = run_entries("d", "", results, ("cmmlu", "ceval", "general_mcq", "odd"), "en",
                                   mtime=1.0)
    assert entries == [LeaderboardEntry("cmmlu", "qwen3-8b", 0.7, 10, DAY - 60, run_id="eval-9", adapter="train-4")]
    assert [s.reason for s in skipped] == ["C-Eval: no questions were scored", "no General MCQ score",
                                           "odd: malformed score (score must be a fraction between 0 and 1, got 1.5)"]
    # Neither finished_at nor started_at: the file's time dates it. No adapter: no run id either.
    [base], _ = run_entries("d", "", _results("yi-6b", {"cmmlu": (1, 2)}, run_id="eval-1"), (), "en",
                            mtime=123.0)
    assert (base.date, base.run_id, base.adapter) == (123.0, "", None)


def test_the_newest_result_of_a_model_counts_and_date_ties_go_by_path() -> None:
    old, new = _entry("cmmlu", "m", 0.9, date=DAY), _entry("cmmlu", "m", 0.6, date=DAY + 86400)
    tuned = _entry("cmmlu", "m", 0.8, adapter="train-1")
    kept, skipped = keep_newest([(new, "b"), (tuned, "c"), (old, "a")], "en")
    assert kept == (tuned, new)  # an adapter is ranked apart from its base model
    assert skipped == [Skipped("a", "m", "CMMLU: an older result (finished 2025-03-01 02:17 UTC); the newer one is "
                                         "ranked")]
    # Directories compare part by part, as paths do: g/x comes before g-h/x, so g-h/x is the one kept.
    one, two = _entry("cmmlu", "m", 0.5), _entry("cmmlu", "m", 0.4)
    kept, skipped = keep_newest([(two, "g-h/x"), (one, "g/x")], "zh")
    assert kept == (two,) and [s.where for s in skipped] == ["g/x"]
    assert skipped[0].reason.startswith("CMMLU：较早的结果")


def test_markdown_follows_the_order_asked_and_caps_the_notes() -> None:
    collected = Collected((_entry("ceval", "m", 0.5), _entry("cmmlu", "m", 0.7)),
                          tuple(Skipped(f"run-{i}", None, "failed") for i in range(53)), runs=55)
    md = leaderboard_markdown(collected, ("cmmlu", "general_mcq", "ceval"), now=DAY, run_url="https://x/runs/1")
    assert md.startswith("## 🏆 Leaderboard · 2025-03-01\n\n<sub>1 model ranked · updated 2025-03-01 02:17 UTC · "
                         "[workflow run](https://x/runs/1)</sub>")
    assert md.index("### Leaderboard: CMMLU") < md.index("No result for General MCQ in this run.") \
        < md.index("### Leaderboard: C-Eval")
    assert md.count("<sub>Scores with overlapping intervals") == 1
    assert "**Not ranked (53)**" in md and "- `run-49`: failed" in md and "run-50" not in md
    assert md.endswith("- … and 3 more\n")
    assert "本次运行没有可用的评测结果。" in leaderboard_markdown(Collected(()), (), "zh", now=DAY)


def test_comment_body_is_marked_and_must_fit_a_comment() -> None:
    assert comment_body("## ranking\n") == f"{MARKER}\n## ranking\n"
    with pytest.raises(LeaderboardConfigError, match="lower --limit"):
        comment_body("x" * 70_000)


def test_slack_message_shows_the_top_and_links_the_rest() -> None:
    entries = (*(_entry("cmmlu", f"m{i}", i / 10) for i in range(4)), _entry("cmmlu", "<b>", 0.95, adapter="t&1"))
    msg = slack_message(Collected(entries, (Skipped("x", None, "failed"),)), top=2, now=DAY, link="javascript:x")
    assert validate_message(msg) == []
    assert msg["blocks"][1]["text"]["text"].splitlines() == ["*CMMLU*", "1. `&lt;b&gt;` (t&amp;1) *95.0* (n=100)",
                                                            "2. `m3` *30.0* (n=100)"]
    assert msg["blocks"][-1]["elements"][0]["text"] == "1 not ranked"  # no link that is not http(s)
    assert msg["text"] == "🏆 Leaderboard · 2025-03-01: CMMLU: <b> 95.0, m3 30.0, m2 20.0"
