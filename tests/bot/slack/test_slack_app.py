"""Slack app mode end to end: signed slash commands and app mentions → the real service → a workflow dispatch on the
fake GitHub and answers in a FakeSlack thread; authorization stays GitHub's (the mapped login's permission)."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from bot.config import ConfigError, Secret, load_config
from bot.slack_app import SlackBridge
from tests.bot.service.conftest import REPO, job_of
from tests.bot.slack.conftest import ALICE, CHANNEL, EVE, MALLORY, SIGNING_SECRET, SlackBot, slack_signature
from tests.fakes.slack import SlackMessage


def _bot_messages(sb: SlackBot) -> list[SlackMessage]:
    return [m for m in sb.slack.messages if m.user is None]


async def test_slash_command_dispatches_and_answers_in_a_thread(make_slack_bot) -> None:
    sb = await make_slack_bot()
    started = time.monotonic()
    reply = await sb.command("train tiny max_steps=20 repo=Codertocat/Hello-World pr=1")
    ack_s = time.monotonic() - started
    assert reply.status == 200 and reply.text == ""  # an empty ack: the answer comes in the thread
    assert ack_s < 3.0  # Slack gives up after 3 s (this first request includes Bolt's one auth.test)
    await sb.settle()

    [dispatch] = sb.bot.dispatches()
    job = job_of(dispatch)
    assert job.model.name == "tiny" and job.hyper.max_steps == 20 and job.sha == sb.bot.repo.pulls[1].head_sha
    run = await sb.bot.service.store.get_run(job.run_id)
    assert run is not None and run.actor == "Codertocat"  # the mapped GitHub login, not the Slack user
    assert run.command == "/train tiny max_steps=20"
    assert run.trigger_key is not None and run.trigger_key.startswith(f"slack:{sb.slack.team_id}:{CHANNEL}:")

    root, *replies = _bot_messages(sb)
    assert root.channel == CHANNEL and root.thread_ts is None
    assert f"<@{ALICE}>" in root.text and "`train tiny max_steps=20`" in root.text
    assert f"<https://github.com/{REPO}/pull/1|{REPO}#1>" in root.text
    [started_msg] = replies
    assert started_msg.thread_ts == root.ts
    assert f"Started `{job.run_id}`" in started_msg.text and "`tiny`" in started_msg.text
    assert f"#issuecomment-{run.comment_id}" in started_msg.text  # links the run card on the PR
    posts = [c for c in sb.slack.calls if c.method == "chat.postMessage"]
    assert all(c.authorization == f"Bearer {sb.slack.token}" for c in posts)
    # GitHub keeps the record as for a comment: the sticky run card on the PR.
    assert any(f"tunebot:run:{job.run_id}" in c for c in sb.bot.bot_comments())
    # When the run ends, the outcome comes back to the thread that asked.
    await sb.bot.post_event(run.run_id, run.run_token, 0, "finished", status="failed", reason="out of memory")
    await sb.settle()
    await sb.bot.settle()
    outcome = [m for m in _bot_messages(sb) if m.thread_ts == root.ts and job.run_id in m.text
               and "Started" not in m.text]
    assert outcome and "out of memory" in outcome[-1].text


async def test_unmapped_slack_user_gets_an_ephemeral_explanation_and_nothing_runs(make_slack_bot) -> None:
    sb = await make_slack_bot()
    reply = await sb.command("train tiny Codertocat/Hello-World#1", user=EVE)
    assert reply.status == 200
    answer = reply.json()
    assert answer["response_type"] == "ephemeral"
    # Escaped as Slack asks: a bare <…> would be read as a link or a mention.
    assert f"`{EVE}: &lt;your-github-login&gt;`" in answer["text"] and "slack_user_map" in answer["text"]
    await sb.settle()
    assert sb.bot.dispatches() == []
    assert sb.slack.messages == [] and sb.bot.bot_comments() == []


async def test_mapped_user_without_write_gets_githubs_denial_in_the_thread(make_slack_bot) -> None:
    sb = await make_slack_bot()
    sb.bot.repo.set_permission("mallory", "read")
    reply = await sb.command("train tiny max_steps=20 Codertocat/Hello-World#1", user=MALLORY)
    assert reply.status == 200
    await sb.settle()
    assert sb.bot.dispatches() == []
    [denial_on_pr] = sb.bot.bot_comments()
    assert denial_on_pr.startswith("@mallory `/train tiny max_steps=20`:") and "`write`" in denial_on_pr
    root, denial = _bot_messages(sb)
    assert denial.thread_ts == root.ts
    # The same words, in Slack's markup: the GitHub @mention becomes the mapped Slack user's mention.
    assert denial.text.startswith(f"<@{MALLORY}> `/train tiny max_steps=20`:")
    assert denial.text.split(":", 1)[1] == denial_on_pr.split(":", 1)[1]


async def test_no_access_is_answered_like_not_found_and_writes_nothing_on_github(make_slack_bot) -> None:
    sb = await make_slack_bot()
    sb.bot.repo.set_permission("mallory", "none")
    await sb.command("status Codertocat/Hello-World#1", user=MALLORY)
    await sb.settle()
    [whisper] = sb.slack.ephemeral
    assert whisper.ephemeral_to == MALLORY and "cannot find `Codertocat/Hello-World#1`" in whisper.text
    assert sb.bot.bot_comments() == [] and sb.bot.dispatches() == []
    # A repository tunebot does not know reads exactly the same.
    await sb.command("status Codertocat/Secret#1")
    await sb.settle()
    assert "cannot find `Codertocat/Secret#1`" in sb.slack.ephemeral[-1].text


async def test_bad_or_stale_signature_is_refused_with_401(make_slack_bot) -> None:
    sb = await make_slack_bot()
    forged = await sb.command("train tiny Codertocat/Hello-World#1", secret="not-the-signing-secret")
    assert forged.status == 401
    stale = await sb.command("train tiny Codertocat/Hello-World#1", timestamp=int(time.time()) - 6 * 60)
    assert stale.status == 401  # correctly signed, but outside Slack's 5-minute window (a replay)
    # A body altered after signing.
    ts = str(int(time.time()))
    signed = urlencode({"command": "/tunebot", "text": "status Codertocat/Hello-World#1", "user_id": ALICE}).encode()
    tampered = signed.replace(b"status", b"train+tiny")
    async with sb.bot.session.post(f"{sb.bot.url}/slack/commands", data=tampered, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": slack_signature(SIGNING_SECRET, ts, signed)}) as resp:
        assert resp.status == 401
    await sb.settle()
    assert sb.bot.dispatches() == [] and sb.slack.messages == []


async def test_app_mention_in_a_thread_runs_and_answers_there(make_slack_bot) -> None:
    sb = await make_slack_bot()
    root_ts = sb.slack.add_user_message(CHANNEL, "shall we fine-tune on PR 1?", user=ALICE)
    reply, ts = await sb.mention(f"<@{sb.slack.bot_user_id}> train tiny max_steps=20 Codertocat/Hello-World#1",
                                 thread_ts=root_ts, event_id="Ev0MENTION01")
    assert reply.status == 200
    await sb.settle()
    [dispatch] = sb.bot.dispatches()
    job = job_of(dispatch)
    run = await sb.bot.service.store.get_run(job.run_id)
    assert run.actor == "Codertocat" and run.trigger_key.startswith(f"slack:{sb.slack.team_id}:{CHANNEL}:{ts}:")
    [started] = sb.slack.thread(CHANNEL, root_ts)
    assert f"Started `{job.run_id}`" in started.text

    # Slack redelivers an event it thinks was lost: the same event_id is not run twice.
    again, _ = await sb.mention(f"<@{sb.slack.bot_user_id}> train tiny max_steps=20 Codertocat/Hello-World#1",
                                thread_ts=root_ts, event_id="Ev0MENTION01", ts=ts, retry=1)
    assert again.status == 200
    await sb.settle()
    assert len(sb.bot.dispatches()) == 1 and len(sb.slack.thread(CHANNEL, root_ts)) == 1

    # A follow-up in the same thread needs no target: the thread remembers its pull request.
    await sb.mention(f"<@{sb.slack.bot_user_id}> status", thread_ts=root_ts)
    await sb.settle()
    status = sb.slack.thread(CHANNEL, root_ts)[-1]
    assert job.run_id in status.text and len(sb.bot.dispatches()) == 1


async def test_top_level_mention_threads_under_the_mention_and_unmapped_is_whispered(make_slack_bot) -> None:
    sb = await make_slack_bot()
    text = f"<@{sb.slack.bot_user_id}> status <https://github.com/{REPO}/pull/1>"
    ts = sb.slack.add_user_message(CHANNEL, text, user=ALICE)  # the message the event is about
    await sb.mention(text, ts=ts)
    await sb.settle()
    [status] = _bot_messages(sb)
    assert status.thread_ts == ts  # a new thread under the user's message
    text = f"<@{sb.slack.bot_user_id}> train tiny {REPO}#1"
    await sb.mention(text, user=EVE, ts=sb.slack.add_user_message(CHANNEL, text, user=EVE))
    await sb.settle()
    [whisper] = sb.slack.ephemeral
    assert whisper.ephemeral_to == EVE and "slack_user_map" in whisper.text
    assert sb.bot.dispatches() == []


async def test_text_problems_are_answered_ephemerally_at_once(make_slack_bot) -> None:
    sb = await make_slack_bot()
    cases = {
        "train tiny": "Say which pull request",
        "train tiny repo=Codertocat/Hello-World": "which pull request in `Codertocat/Hello-World`?",
        "train tiny pr=1": "which repository?",
        "train tiny Codertocat/Hello-World#1 pr=2": "two different pull requests",
        "train tiny repo=notarepo pr=1": "expected `repo=owner/name`",
        "train tiny https://gitlab.com/Codertocat/Hello-World/pull/1": "is not a link to https://github.com",
    }
    for text, expected in cases.items():
        reply = await sb.command(text)
        assert reply.status == 200, text
        answer = reply.json()
        assert answer["response_type"] == "ephemeral" and expected in answer["text"], (text, answer["text"])
    help_reply = (await sb.command("help")).json()
    assert help_reply["response_type"] == "ephemeral" and "`/train &lt;model&gt;" in help_reply["text"]
    await sb.settle()
    assert sb.bot.dispatches() == [] and sb.slack.messages == []


async def test_unknown_verb_gets_the_parsers_suggestion_in_the_thread(make_slack_bot) -> None:
    sb = await make_slack_bot()
    await sb.command("trian tiny Codertocat/Hello-World#1")
    await sb.settle()
    _root, answer = _bot_messages(sb)
    assert "unknown command `/trian`" in answer.text and "/train" in answer.text
    assert sb.bot.dispatches() == []


async def test_channel_the_bot_is_not_in_falls_back_to_the_response_url(make_slack_bot) -> None:
    sb = await make_slack_bot()
    await sb.command("train tiny max_steps=20 Codertocat/Hello-World#1", channel="C0PRIVATE01")
    await sb.settle()
    [dispatch] = sb.bot.dispatches()
    assert sb.slack.messages == []
    note, started = sb.slack.responses
    assert all(r.body["response_type"] == "ephemeral" for r in sb.slack.responses)
    assert "channel_not_found" in note.body["text"] and "/invite @tunebot" in note.body["text"]
    assert f"Started `{job_of(dispatch).run_id}`" in started.body["text"]


async def test_url_verification_answers_the_challenge(make_slack_bot) -> None:
    sb = await make_slack_bot()
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"})
    reply = await sb.post_signed("/slack/events", body.encode(), "application/json")
    assert reply.status == 200 and reply.json() == {"challenge": challenge}
    unsigned = await sb.post_signed("/slack/events", body.encode(), "application/json", secret="wrong")
    assert unsigned.status == 401


async def test_slack_routes_exist_only_when_configured(make_bot) -> None:
    bot = await make_bot()
    async with bot.session.post(f"{bot.url}/slack/commands", data=b"text=x") as resp:
        assert resp.status in (404, 405)


async def test_issues_and_numbers_that_are_neither(make_slack_bot) -> None:
    sb = await make_slack_bot()
    sb.bot.repo.issues.add(5)  # an issue, not a pull request
    await sb.command("train tiny Codertocat/Hello-World#5")
    await sb.command("train tiny Codertocat/Hello-World#99")
    await sb.settle()
    assert sb.bot.dispatches() == []
    answers = [m.text for m in _bot_messages(sb) if m.thread_ts]
    assert answers == ["`/train` runs on pull requests: comment it on a PR."]
    [whisper] = sb.slack.ephemeral
    assert "`Codertocat/Hello-World#99` is neither a pull request nor an issue" in whisper.text


def test_slack_mode_without_a_bot_token_is_a_config_error() -> None:
    config = load_config(environ={}, slack_signing_secret=Secret("s3cr3t"))
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not"):
        SlackBridge(object(), config)  # type: ignore[arg-type]
