"""What the Slack app reads out of a message: the pull request it is about, and the command as a comment says it."""

from __future__ import annotations

import re

import pytest

from commands.slack_text import (
    SlackRequest,
    Target,
    TargetError,
    comment_text,
    from_slack,
    help_markdown,
    parse_slack_text,
    strip_bot_mention,
)
from configs import load_catalog

REPO = "Codertocat/Hello-World"


@pytest.mark.parametrize("text", [
    "train tiny max_steps=20 repo=Codertocat/Hello-World pr=1",
    "train tiny max_steps=20 Codertocat/Hello-World#1",
    "train Codertocat/Hello-World#1 tiny max_steps=20",
    "train tiny max_steps=20 repo=Codertocat/Hello-World#1",
    "train tiny max_steps=20 repo=Codertocat/Hello-World #1",
    "train tiny max_steps=20 https://github.com/Codertocat/Hello-World/pull/1",
    "train tiny max_steps=20 https://github.com/Codertocat/Hello-World/pull/1/files#diff-abc",
    "train tiny max_steps=20 PR=1 Repo=Codertocat/Hello-World",
    "train tiny max_steps=20 Codertocat/Hello-World#1 pr=1",  # the same target twice is not a conflict
])
def test_target_forms(text: str) -> None:
    assert parse_slack_text(text) == SlackRequest(Target(REPO, 1), "train tiny max_steps=20")


def test_issue_links_other_hosts_and_no_target() -> None:
    assert parse_slack_text("status https://github.com/o/r/issues/7").target == Target("o/r", 7)
    ghes = parse_slack_text("status https://git.corp.example/o/r/pull/3", web_url="https://git.corp.example/")
    assert ghes.target == Target("o/r", 3)
    with pytest.raises(TargetError, match=re.escape("not a link to https://github.com")):
        parse_slack_text("status https://git.corp.example/o/r/pull/3")
    assert parse_slack_text("help train") == SlackRequest(None, "help train")
    assert parse_slack_text("").verb == "help" and parse_slack_text("/eval cmmlu o/r#2").verb == "eval"


@pytest.mark.parametrize(("text", "message"), [
    ("train tiny repo=o/r", "which pull request in `o/r`?"),
    ("train tiny pr=4", "which repository?"),
    ("train tiny #4", "which repository?"),
    ("train tiny o/r#1 o/r#2", "two different pull requests"),
    ("train tiny o/r#1 x/y#1", "two different repositories"),
    ("train tiny repo=o pr=1", "expected `repo=owner/name`"),
    ("train tiny repo=o/r pr=abc", "expected a pull request number"),
    ("train tiny repo=o/r pr=0", "expected a pull request number"),
    ("train tiny repo=o/.. pr=1", "expected `repo=owner/name`"),
])
def test_target_problems_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        parse_slack_text(text)


def test_other_words_stay_where_they_were() -> None:
    req = parse_slack_text('eval cmmlu o/r#5 subsets=agronomy,arts name="my run"\n/compare main')
    assert req.command == 'eval cmmlu subsets=agronomy,arts name="my run"\n/compare main'


def test_from_slack_unwraps_links_and_entities() -> None:
    assert from_slack("status <https://github.com/o/r/pull/1>") == "status https://github.com/o/r/pull/1"
    assert from_slack("status <https://github.com/o/r/pull/1|o/r#1>") == "status https://github.com/o/r/pull/1"
    # Slack links words that look like domains; what the user typed is the label.
    assert from_slack("train tiny dataset=<http://data.jsonl|data.jsonl>") == "train tiny dataset=data.jsonl"
    assert from_slack("a &lt;b&gt; &amp;lt;") == "a <b> &lt;"


def test_comment_text_keeps_the_slash_form_and_falls_back_to_a_mention() -> None:
    catalog = load_catalog()
    assert comment_text("train tiny max_steps=20", command_name="tunebot", catalog=catalog) == \
        "/train tiny max_steps=20"
    assert comment_text("/status", command_name="tunebot", catalog=catalog) == "/status"
    # Not one of our verbs: addressed by name, so the parser answers instead of ignoring another bot's verb.
    assert comment_text("deploy tiny", command_name="tunebot", catalog=catalog) == "@tunebot deploy tiny"
    assert comment_text("trian tiny", command_name="tunebot", catalog=catalog) == "/trian tiny"  # a near miss: answered
    assert comment_text("", command_name="tunebot", catalog=catalog) == "@tunebot"


def test_strip_bot_mention() -> None:
    assert strip_bot_mention("<@U0BOT00001> train tiny o/r#1", "U0BOT00001") == "train tiny o/r#1"
    assert strip_bot_mention("hey <@U0BOT00001>: status o/r#1", "U0BOT00001") == "status o/r#1"
    assert strip_bot_mention("status o/r#1 <@U0BOT00001>", "U0BOT00001") == "status o/r#1"
    # Someone else mentioned first: the bot's own mention decides where the command starts.
    assert strip_bot_mention("<@U0ALICE0001> look, <@U0BOT00001> status o/r#1", "U0BOT00001") == "status o/r#1"
    assert strip_bot_mention("<@U0BOT00001|tunebot> status") == "status"


def test_help_answers_as_a_comment_would() -> None:
    catalog = load_catalog()
    text = help_markdown("help", command_name="tunebot", catalog=catalog)
    assert "/train" in text and "/eval" in text
    assert help_markdown("help train", command_name="tunebot", catalog=catalog) != text  # a topic narrows it
    assert help_markdown("status", command_name="tunebot", catalog=catalog) == ""  # not a reply: nothing to say
