"""`tunebot runs leaderboard --post` against the fake GitHub and Slack servers: one issue comment, created once and
edited in place after that, never someone else's; a short Slack message; one failing target does not stop the
other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.github.pygithub_impl import PyGithubPort
from bot.leaderboard import PostSettings, collect, publish, upsert_comment
from commands.leaderboard import MARKER, leaderboard_markdown
from commands.render.slack import validate_message
from tests.bot.leaderboard.helpers import DAY1, DAY2, tunebot, write_events, write_run
from tests.fakes.github import FakeGitHub, FakeRepo
from tests.fakes.slack import FakeSlack

ACTIONS_TOKEN = "ghs_actions0000000000000000000000000000"
ACTIONS = "github-actions[bot]"
ISSUE = 4
CHANNEL_ID = "C0LEADERB1"


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        # The workflow posts with its GITHUB_TOKEN, which acts as github-actions[bot].
        server.add_token(ACTIONS_TOKEN, ACTIONS, "Bot")
        repo: FakeRepo = server.add_repo("octo/lb")
        repo.issues.add(ISSUE)
        yield server


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels={"leaderboard": CHANNEL_ID}) as server:
        yield server


def _env(gh: FakeGitHub, slack: FakeSlack, **extra: str) -> dict[str, str]:
    return {"GITHUB_TOKEN": ACTIONS_TOKEN, "GITHUB_REPOSITORY": "octo/lb", "GITHUB_API_URL": gh.url,
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "9001",
            "TUNEBOT_LEADERBOARD_ISSUE": str(ISSUE), "TUNEBOT_LEADERBOARD_SLACK_CHANNEL": "#leaderboard",
            "SLACK_BOT_TOKEN": slack.token, "TUNEBOT_SLACK_API_URL": slack.base_url, **extra}


def _night(root: Path, when: float, scores: dict[str, tuple[int, int]]) -> Path:
    for model, cmmlu in scores.items():
        write_run(root, f"leaderboard-{model}", model, {"cmmlu": cmmlu, "ceval": (cmmlu[0] // 2, cmmlu[1] // 2)},
                  finished_at=when)
    return root


def _marked(gh: FakeGitHub) -> list[tuple[int, str, str, int]]:
    return [(c.id, c.login, c.body, c.edits) for c in gh.comments_on("octo/lb", ISSUE) if c.body.startswith(MARKER)]


async def test_first_run_creates_the_comment_and_later_runs_edit_it(gh: FakeGitHub, slack: FakeSlack,
                                                                     tmp_path: Path) -> None:
    gh.add_comment("octo/lb", ISSUE, "Tracking issue for the nightly ranking.", login="maintainer")
    night1 = _night(tmp_path / "n1", DAY1, {"qwen3-8b": (700, 1000), "glm4-9b-chat": (650, 1000)})
    write_events(night1 / "leaderboard-yi-1.5-6b-chat", "leaderboard-9001-1-yi-1.5-6b-chat", "yi-1.5-6b-chat",
                 "failed", "CUDA out of memory")
    args = ("runs", "leaderboard", "--post", "--results", str(night1), "--benchmarks", "cmmlu ceval")
    first = await tunebot(*args, env=_env(gh, slack))
    assert first.code == 0, first.stderr
    ((cid, login, body, edits),) = _marked(gh)
    assert login == ACTIONS and edits == 0
    assert body == f"{MARKER}\n{first.stdout}"  # what the step summary shows is what the issue shows
    assert body.index("qwen3-8b") < body.index("glm4-9b-chat") and "`yi-1.5-6b-chat`" in body
    assert "[workflow run](https://github.com/octo/lb/actions/runs/9001)" in body
    assert f"created comment https://github.com/octo/lb/issues/{ISSUE}#issuecomment-{cid}" in first.stderr
    (msg,) = slack.in_channel("#leaderboard")
    assert validate_message({"text": msg.text, "blocks": msg.blocks}) == []
    assert msg.blocks is not None and "1. `qwen3-8b` *70.0*" in msg.blocks[1]["text"]["text"]
    assert f"issuecomment-{cid}|full ranking>" in msg.blocks[-1]["elements"][0]["text"]

    night2 = _night(tmp_path / "n2", DAY2, {"qwen3-8b": (600, 1000), "glm4-9b-chat": (800, 1000)})
    second = await tunebot("runs", "leaderboard", "--post", "--results", str(night2), "--benchmarks", "cmmlu ceval",
                           env=_env(gh, slack))
    assert second.code == 0, second.stderr
    ((cid2, _, body2, edits2),) = _marked(gh)
    assert cid2 == cid and edits2 == 1 and body2 == f"{MARKER}\n{second.stdout}"
    assert body2.index("glm4-9b-chat") < body2.index("qwen3-8b") and "yi-1.5-6b-chat" not in body2
    assert len(gh.requests_to("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")) == 1
    assert len(gh.requests_to("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")) == 1
    assert f"edited comment https://github.com/octo/lb/issues/{ISSUE}#issuecomment-{cid}" in second.stderr
    assert gh.comments_on("octo/lb", ISSUE)[0].body == "Tracking issue for the nightly ranking."
    assert len(slack.in_channel("#leaderboard")) == 2  # one chat message per night


async def test_a_copied_marker_in_someone_elses_comment_is_never_edited(gh: FakeGitHub, slack: FakeSlack,
                                                                        tmp_path: Path) -> None:
    forged = f"{MARKER}\n## 🏆 Leaderboard\n| 1 | my-model | **99.9** |"
    mallory = gh.add_comment("octo/lb", ISSUE, forged, login="mallory")
    # The token's own identity writing an unmarked comment: not the ranking either.
    other = gh.add_comment("octo/lb", ISSUE, "Unrelated note from the Actions bot.", login=ACTIONS, user_type="Bot")
    root = _night(tmp_path / "n1", DAY1, {"qwen3-8b": (700, 1000)})
    run = await tunebot("runs", "leaderboard", "--post", "--results", str(root), env=_env(gh, slack))
    assert run.code == 0, run.stderr
    assert f"#issuecomment-{mallory} by mallory carries the leaderboard marker" in run.stderr
    ours = [c for c in gh.comments_on("octo/lb", ISSUE) if c.login == ACTIONS and c.body.startswith(MARKER)]
    assert len(ours) == 1
    again = await tunebot("runs", "leaderboard", "--post", "--results", str(root), env=_env(gh, slack))
    assert again.code == 0, again.stderr
    assert gh.comments[mallory].body == forged and gh.comments[mallory].edits == 0
    assert gh.comments[other].body == "Unrelated note from the Actions bot." and gh.comments[other].edits == 0
    patched = [r.path for r in gh.requests_to("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")]
    assert all(p.endswith(f"/{ours[0].id}") for p in patched)
    assert len([c for c in gh.comments_on("octo/lb", ISSUE) if c.body.startswith(MARKER)]) == 2


async def test_unchanged_ranking_is_not_rewritten_and_duplicates_pick_the_oldest(gh: FakeGitHub) -> None:
    port = PyGithubPort.with_token(gh.url, ACTIONS_TOKEN, writes_per_minute=0, writes_per_hour=0)
    try:
        body = f"{MARKER}\nranking v1\n"
        first = await upsert_comment(port, "octo/lb", ISSUE, body, author=ACTIONS)
        same = await upsert_comment(port, "octo/lb", ISSUE, body, author=ACTIONS)
        assert (first.action, same.action, same.comment_id) == ("created", "unchanged", first.comment_id)
        assert first.written_by == ACTIONS
        assert gh.requests_to("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}") == []
        # A race that left two of our comments: the older one is kept up to date, the other is left as it was.
        late = gh.add_comment("octo/lb", ISSUE, f"{MARKER}\nstray copy\n", login=ACTIONS, user_type="Bot")
        edited = await upsert_comment(port, "octo/lb", ISSUE, "ranking v2\n", author=ACTIONS)
        assert edited.action == "edited" and edited.comment_id == first.comment_id
        assert gh.comments[first.comment_id].body == f"{MARKER}\nranking v2\n"
        assert gh.comments[late].edits == 0
    finally:
        await port.close()


async def test_a_token_acting_as_someone_else_is_flagged(gh: FakeGitHub, tmp_path: Path) -> None:
    # gh.token acts as tunebot[bot]; the default author is github-actions[bot]: say how to fix it.
    root = _night(tmp_path / "n1", DAY1, {"qwen3-8b": (700, 1000)})
    run = await tunebot("runs", "leaderboard", "--post", "--results", str(root),
                        env={"GITHUB_TOKEN": gh.token, "GITHUB_REPOSITORY": "octo/lb", "GITHUB_API_URL": gh.url,
                             "TUNEBOT_LEADERBOARD_ISSUE": str(ISSUE)})
    assert run.code == 0, run.stderr
    assert "set TUNEBOT_LEADERBOARD_AUTHOR=tunebot[bot]" in run.stderr
    fixed = await tunebot("runs", "leaderboard", "--post", "--results", str(root),
                          env={"GITHUB_TOKEN": gh.token, "GITHUB_REPOSITORY": "octo/lb", "GITHUB_API_URL": gh.url,
                               "TUNEBOT_LEADERBOARD_ISSUE": str(ISSUE), "TUNEBOT_LEADERBOARD_AUTHOR": "tunebot[bot]"})
    ((cid, _, _, _),) = _marked(gh)  # found again: edited (or left alone when the text is the same)
    assert fixed.code == 0 and f"comment https://github.com/octo/lb/issues/{ISSUE}#issuecomment-{cid}" in fixed.stderr
    assert "created" not in fixed.stderr and "TUNEBOT_LEADERBOARD_AUTHOR" not in fixed.stderr


async def test_a_missing_issue_fails_the_step_but_slack_still_gets_the_ranking(gh: FakeGitHub, slack: FakeSlack,
                                                                               tmp_path: Path) -> None:
    root = _night(tmp_path / "n1", DAY1, {"qwen3-8b": (700, 1000)})
    run = await tunebot("runs", "leaderboard", "--post", "--results", str(root),
                        env=_env(gh, slack, TUNEBOT_LEADERBOARD_ISSUE="99"))
    assert run.code == 1
    errors = [ln for ln in run.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "GitHub octo/lb#99: GitHub API 404" in errors[0]
    assert run.stdout.startswith("## 🏆 Leaderboard")  # the ranking still reaches the step summary
    (msg,) = slack.in_channel("#leaderboard")
    assert msg.blocks is not None
    assert "<https://github.com/octo/lb/actions/runs/9001|full ranking>" in msg.blocks[-1]["elements"][0]["text"]


async def test_a_slack_error_does_not_stop_the_comment(gh: FakeGitHub, slack: FakeSlack, tmp_path: Path) -> None:
    root = _night(tmp_path / "n1", DAY1, {"qwen3-8b": (700, 1000)})
    got = collect(root)
    markdown = leaderboard_markdown(got, now=DAY1)
    port = PyGithubPort.with_token(gh.url, ACTIONS_TOKEN, writes_per_minute=0, writes_per_hour=0)
    settings = PostSettings(repo="octo/lb", issue=ISSUE, github_token=ACTIONS_TOKEN, github_api_url=gh.url,
                            slack_channel="#no-such-channel", slack_token=slack.token, slack_api_url=slack.base_url)
    try:
        report = await publish(markdown, got, (), settings, now=DAY1, github=port)
    finally:
        await port.close()
    assert report.errors == ["Slack #no-such-channel: Slack chat.postMessage failed: channel_not_found"]
    assert report.comment is not None and report.comment.action == "created"
    assert _marked(gh)[0][2] == f"{MARKER}\n{markdown}"
