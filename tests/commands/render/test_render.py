"""What each rendered message must say and must never break, in both languages."""

from __future__ import annotations

import math
import re
import string

import pytest

from commands.compare import Comparison, Conclusion, compare_results, decide
from commands.render import (
    DingTalkAt,
    LeaderboardEntry,
    ReportLinks,
    ScoreView,
    check_run_output,
    compare_marker,
    dingtalk_comparison_markdown,
    dingtalk_milestone,
    dingtalk_run_action_card,
    dingtalk_run_markdown,
    downsample,
    headline,
    loss_chart,
    normalize_language,
    render_cached_reply,
    render_comparison,
    render_leaderboard,
    render_run_card,
    render_status_list,
    run_marker,
    slack_comparison_message,
    slack_milestone_text,
    slack_run_message,
    validate_message,
)
from commands.render.i18n import _MESSAGES
from commands.render.split import balanced, measure
from commands.render.views import RUN_STATES
from commands.results import Results

from .fixtures import LINKS, NOW, benchmark, comparison, conclusion, paired_runs, run_view

LANGS = ("en", "zh")


# --- the catalogue ------------------------------------------------------------------------------------------------


def test_every_phrase_exists_in_both_languages_with_the_same_placeholders() -> None:
    assert len(_MESSAGES) > 100  # the catalogue was found
    for key, (en, zh) in _MESSAGES.items():
        fields_en = {f for _, f, _, _ in string.Formatter().parse(en) if f}
        fields_zh = {f for _, f, _, _ in string.Formatter().parse(zh) if f}
        assert fields_en == fields_zh, key
        assert zh.strip() and en.strip(), key


def test_language_names() -> None:
    assert normalize_language("zh-CN") == "zh" and normalize_language("EN") == "en"
    with pytest.raises(ValueError, match="unsupported language 'fr'"):
        normalize_language("fr")
    with pytest.raises(ValueError):
        render_run_card(run_view(), "klingon")


# --- headline -----------------------------------------------------------------------------------------------------


def _two_benchmarks() -> Comparison:
    # CMMLU: 40 wrong→right vs 17 right→wrong of 1000 (significant gain); C-Eval: 6 vs 4 of 500 (noise).
    def bench(name: str, n: int, b: int, c: int) -> tuple[dict[str, bool], dict[str, bool]]:
        base = {f"s/{i}": i >= c and i < n // 2 + c for i in range(n)}
        new = dict(base)
        for i in range(c):
            new[f"s/{i}"] = True
        for i in range(c, c + b):
            new[f"s/{i}"] = False
        return base, new

    cb, cn = bench("cmmlu", 1000, 17, 40)
    eb, en = bench("ceval", 500, 6, 4)
    base = Results("a", "succeeded", {"cmmlu": benchmark("cmmlu", cb), "ceval": benchmark("ceval", eb)})
    new = Results("b", "succeeded", {"cmmlu": benchmark("cmmlu", cn), "ceval": benchmark("ceval", en)})
    return compare_results(base, new)


def test_headline_reads_like_the_issue_example() -> None:
    cmp = _two_benchmarks()
    assert headline(cmp, "en") == "CMMLU +2.3 (p = 0.003, significant) · C-Eval −0.4 (within noise)"
    assert headline(cmp, "zh") == ("本次PR提升CMMLU成绩2.3个百分点（显著，p = 0.003）；"
                                   "C-Eval成绩下降0.4个百分点（在噪声范围内）")


def test_headline_is_the_first_visible_line_of_the_report() -> None:
    cmp = _two_benchmarks()
    for lang in LANGS:
        parts = render_comparison(cmp, decide(cmp), lang)
        lines = parts[0].split("\n")
        assert lines[0] == compare_marker("a..b")
        assert headline(cmp, lang) in lines[1]


# --- comparison report --------------------------------------------------------------------------------------------


def _huge_comparison() -> tuple[Comparison, Conclusion]:
    subjects = tuple(f"subject_{i:02d}" for i in range(67))
    base_q, new_q = paired_runs(subjects, 180, 0.5, {s: 0.5 for s in subjects[:30]}, 9)
    base = Results("base", "succeeded", {"cmmlu": benchmark("cmmlu", base_q)})
    new = Results("new", "succeeded", {"cmmlu": benchmark("cmmlu", new_q)})
    cmp = compare_results(base, new, resamples=200)
    return cmp, decide(cmp)


@pytest.mark.parametrize("lang", LANGS)
def test_a_long_report_is_split_into_well_formed_parts(lang: str) -> None:
    cmp, concl = _huge_comparison()
    limit = 4000
    parts = render_comparison(cmp, concl, lang, LINKS, key="pr-7", limit=limit)
    assert len(parts) > 2
    assert parts[0].startswith(compare_marker("pr-7") + "\n### ")
    assert headline(cmp, lang) in parts[0]
    for i, part in enumerate(parts, start=1):
        assert measure(part) <= limit
        assert balanced(part)
        assert part.startswith(compare_marker("pr-7", i))
        assert not re.search(r"</summary>\n*</details>", part), "a part ends with an empty <details>"
    # the benchmark table is in the first part, subject details after it
    assert "| CMMLU |" in parts[0]


def test_github_sized_report_fits_in_one_comment_with_capped_flip_lists() -> None:
    cmp, concl = _huge_comparison()
    parts = render_comparison(cmp, concl, "en", LINKS)
    assert all(measure(p) <= 65536 for p in parts)
    assert "… and " in parts[0]  # flips are capped


def test_report_mentions_mismatched_questions_config_and_holm() -> None:
    text = "\n".join(render_comparison(comparison(), conclusion(), "en", LINKS))
    assert "did not answer the same questions (2 only in the baseline, 1 only in the new run)" in text
    assert "Holm-corrected" in text
    assert "<details><summary>CMMLU: 6 subjects (2 improved, 1 regressed)</summary>" in text
    assert "decided by rule `*: max_loss=1, significant`" in text
    assert "[Actions run](https://github.com/acme/llm/actions/runs/123456789)" in text


def test_unpaired_benchmark_is_reported_as_untested() -> None:
    from commands.results import BenchmarkResult, SubsetScore

    base = Results("a", "ok", {"ceval": BenchmarkResult("ceval", {"logic": SubsetScore(100, 40)}, {})})
    new = Results("b", "ok", {"ceval": BenchmarkResult("ceval", {"logic": SubsetScore(100, 45)}, {})})
    cmp = compare_results(base, new)
    text = render_comparison(cmp, decide(cmp), "en")[0]
    assert "C-Eval +5.0 (not tested: no per-question data)" in text
    assert "no per-question outcomes, so the change was not tested" in text


# --- run card -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("state", RUN_STATES)
def test_run_card_always_starts_with_its_marker_and_is_well_formed(state: str, lang: str) -> None:
    card = render_run_card(run_view(state), lang)
    assert card.startswith(run_marker("tb-20250115-0042") + "\n")
    assert card.count("<!-- tunebot:") == 1
    assert balanced(card)
    assert ("```mermaid" in card) == (state in ("succeeded", "failed"))  # the curve only once the run is over


def test_running_card_shows_progress_eta_and_elapsed_time() -> None:
    card = render_run_card(run_view("running"), "en")
    assert "`████████░░░░░░░░░░░░` 40% · step 120/300" in card
    assert "loss 1.234" in card and "lr 1.6e-4" in card and "ETA 12m 34s" in card and "3.21 samples/s" in card
    assert "running for 10m 00s" in card
    zh = render_run_card(run_view("running"), "zh")
    assert "第 120/300 步" in zh and "预计剩余 12分34秒" in zh and "运行中：训练" in zh


def test_finished_card_shows_scores_with_delta_and_no_eta() -> None:
    card = render_run_card(run_view("succeeded"), "en")
    assert "| CMMLU | 480 | 54.3 | 51.0 | **+3.2** |" in card
    assert "ETA" not in card
    assert "took 30m 00s" in card


def test_user_text_cannot_forge_markers_break_fences_or_ping() -> None:
    view = run_view("failed", command="/eval cmmlu <!-- tunebot:run:evil -->",
                    reason="boom ``` \n```\n<!-- tunebot:run:evil --> @everyone")
    card = render_run_card(view, "en")
    assert card.count("<!-- tunebot:") == 1
    assert balanced(card)
    slack = slack_run_message(view)
    assert "<!--" not in str(slack)


def test_card_drops_non_finite_losses_and_says_so() -> None:
    loss = ((1, 2.0), (2, float("nan")), (3, 1.5), (4, float("inf")), (5, 1.2))
    card = render_run_card(run_view("succeeded", loss=loss), "en")
    assert "2 non-finite loss values left out" in card
    assert "line [2, 1.5, 1.2]" in card


# --- loss chart ----------------------------------------------------------------------------------------------------


def test_downsample_keeps_ends_spikes_and_the_limit() -> None:
    points = [(s, 1.0 + 0.001 * math.sin(s)) for s in range(1, 1001)]
    points[500] = (501, 9.0)  # a loss spike must survive
    shown = downsample(points, 50)
    assert len(shown) == 50
    assert shown[0] == points[0] and shown[-1] == points[-1]
    assert (501, 9.0) in shown
    assert [p[0] for p in shown] == sorted(p[0] for p in shown)


def test_loss_chart_syntax() -> None:
    chart = loss_chart([(i, 3.0 / i) for i in range(1, 200)], title='Loss "quoted"')
    assert chart is not None
    lines = chart.split("\n")
    assert lines[0] == "```mermaid" and lines[1] == "xychart-beta" and lines[-1] == "```"
    assert lines[2] == "    title \"Loss 'quoted'\""
    xs = re.search(r"x-axis \"step\" \[(.*)\]", chart)
    ys = re.search(r"line \[(.*)\]", chart)
    assert xs and ys and len(xs.group(1).split(", ")) == len(ys.group(1).split(", ")) <= 50
    assert loss_chart([(1, 1.0)]) is None


# --- /status, cached reply, /leaderboard -----------------------------------------------------------------------------


def test_status_list_is_newest_first_and_links_runs() -> None:
    views = [run_view("succeeded", run_id="old", started_at=NOW - 9000), run_view("running", run_id="new")]
    text = render_status_list(views, "en")
    assert text.index("`new`") < text.index("`old`")
    assert "CMMLU 54.3" in text and "40%" in text
    assert render_status_list([], "zh") == "本 PR 还没有 tunebot 运行。\n"


def test_cached_reply_names_run_sha_and_force() -> None:
    text = render_cached_reply("tb-9", "0123456789abcdef0123", "en", run_url="https://x.test/runs/9",
                               scores={"ceval": ScoreView(0.5, 10)})
    assert "run [`tb-9`](https://x.test/runs/9) at `0123456`" in text and "`force=true`" in text
    assert "| C-Eval | 10 | 50.0 |" in text


def test_leaderboard_ranks_by_score_then_n_then_date() -> None:
    entries = [
        LeaderboardEntry("cmmlu", "qwen-7b", 0.60, 100, NOW, run_id="r1", adapter="r1"),
        LeaderboardEntry("cmmlu", "qwen-7b", 0.60, 400, NOW, run_id="r2", adapter="r2"),
        LeaderboardEntry("cmmlu", "yi-6b", 0.70, 400, NOW - 86400),
        LeaderboardEntry("ceval", "tiny", 0.25, 50, NOW),
    ]
    text = render_leaderboard(entries, "en", benchmark="cmmlu")
    rows = [line for line in text.split("\n") if re.match(r"\| \d+ \|", line)]
    assert [r.split(" | ")[1] for r in rows] == ["yi-6b", "qwen-7b", "qwen-7b"]
    assert "`r2`" in rows[1] and "`r1`" in rows[2]
    assert "C-Eval" not in text
    assert "(base model)" in rows[0]
    assert render_leaderboard(entries, "zh", benchmark="general_mcq") == "还没有 General MCQ 的评测结果。\n"


# --- check run ------------------------------------------------------------------------------------------------------


def test_check_run_output_respects_github_limits() -> None:
    cmp, concl = _huge_comparison()
    many = Comparison("a", "b", tuple(
        type(cmp.benchmarks[0])(**{**cmp.benchmarks[0].__dict__, "benchmark": f"bench_{i}"}) for i in range(40)))
    out = check_run_output(many, concl, "en")
    assert len(out.title) <= 255 and out.title.endswith("…")
    assert measure(out.summary) <= 65535 and measure(out.text) <= 65535
    assert balanced(out.summary) and balanced(out.text)
    assert out.output()["title"] == out.title
    assert out.conclusion == concl.conclusion


# --- Slack ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("state", RUN_STATES)
def test_slack_run_messages_are_valid_block_kit(state: str, lang: str) -> None:
    message = slack_run_message(run_view(state), lang)
    assert validate_message(message) == []
    assert message["blocks"][0]["type"] == "header"


def test_slack_escapes_and_stays_inside_limits_with_huge_inputs() -> None:
    scores = {f"bench_{i:03d}": ScoreView(0.5, 100) for i in range(600)}
    view = run_view("failed", command="/eval a<b & c>d", reason="x" * 20000, scores=scores)
    message = slack_run_message(view, "en")
    assert validate_message(message) == []
    assert len(message["blocks"]) <= 50
    assert "`/eval a&lt;b &amp; c&gt;d`" in message["blocks"][1]["text"]["text"]


def test_slack_comparison_and_milestones() -> None:
    message = slack_comparison_message(comparison(), conclusion(), "zh", LINKS)
    assert validate_message(message) == []
    assert message["text"] == headline(comparison(), "zh")
    assert slack_milestone_text(run_view("failed"), "failed", "en").startswith("❌ Run tb-20250115-0042 failed: ")
    assert slack_milestone_text(run_view("running", command="<!channel>"), "queued", "en").endswith(
        "&lt;!channel&gt;")


def test_every_run_state_is_a_milestone_and_unknown_ones_are_refused() -> None:
    assert slack_milestone_text(run_view("running"), "running", "en") == "▶️ Run tb-20250115-0042 started on qwen-7b"
    assert "已派发" in slack_milestone_text(run_view("dispatched"), "dispatched", "zh")
    with pytest.raises(ValueError, match="unknown milestone 'exploded'"):
        slack_milestone_text(run_view(), "exploded")


def test_validate_message_finds_violations() -> None:
    bad = {"text": "", "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x"}] * 11},
                                  {"type": "header", "text": {"type": "mrkdwn", "text": "y" * 151}}] * 26}
    problems = validate_message(bad)
    assert any("52 blocks" in p for p in problems)
    assert any("11 fields" in p for p in problems)
    assert any("plain_text" in p for p in problems)
    assert any("text: missing" in p for p in problems)


# --- DingTalk -------------------------------------------------------------------------------------------------------


def _dingtalk_texts() -> list[str]:
    return [
        dingtalk_run_markdown(run_view("succeeded"))["markdown"]["text"],
        dingtalk_run_action_card(run_view("failed"))["actionCard"]["text"],
        dingtalk_comparison_markdown(comparison(), conclusion())["markdown"]["text"],
    ]


def test_dingtalk_markdown_uses_only_the_supported_subset() -> None:
    for text in _dingtalk_texts():
        assert "<details" not in text and "|---" not in text and "```" not in text
        assert "tunebot" in text  # the robot's usual security keyword


def test_dingtalk_defaults_to_chinese_and_mentions_properly() -> None:
    body = dingtalk_run_markdown(run_view("succeeded"), at=DingTalkAt(mobiles=("13800000000",), user_ids=("u1",)))
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "tunebot 运行 tb-20250115-0042：已完成"
    assert body["at"] == {"isAtAll": False, "atMobiles": ["13800000000"], "atUserIds": ["u1"]}
    assert body["markdown"]["text"].endswith("@13800000000 @u1")
    card = dingtalk_run_action_card(run_view("succeeded"), "en")
    assert card["actionCard"]["singleTitle"] == "View run"
    assert card["actionCard"]["singleURL"] == "https://github.com/acme/llm/actions/runs/123456789"
    with pytest.raises(ValueError, match="needs an http"):
        dingtalk_run_action_card(run_view("queued", actions_url=None))


def test_dingtalk_milestone_is_a_text_message() -> None:
    body = dingtalk_milestone(run_view("succeeded"), "scores", "zh")
    content = "tunebot：📊 运行 tb-20250115-0042 成绩：C-Eval 44.2 (−0.8)；CMMLU 54.3 (+3.2)"
    assert body == {"msgtype": "text", "text": {"content": content}}


def test_score_view_rejects_points_where_a_fraction_is_expected() -> None:
    with pytest.raises(ValueError, match="fraction"):
        ScoreView(52.3, 100)


def test_report_links_are_optional() -> None:
    text = render_comparison(comparison(), conclusion(), "en", ReportLinks())[0]
    assert "Actions run" not in text
