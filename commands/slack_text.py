"""Reads a Slack command or @mention: which pull request it is about, and the command as a PR comment would say it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .catalog import Catalog
from .decision import Ignore, Reply
from .parse import parse_comment
from .policy import DEFAULT_POLICY


class TargetError(ValueError):
    """The text names no pull request, or names it in a way that cannot be read; the message says how to fix it."""


@dataclass(frozen=True)
class Target:
    repo: str  # owner/name
    number: int

    def __str__(self) -> str:
        return f"{self.repo}#{self.number}"


@dataclass(frozen=True)
class SlackRequest:
    """A Slack command's text split into the pull request it is about and the command itself."""

    target: Target | None
    command: str  # the command text with the target words removed, e.g. "train tiny max_steps=20"

    @property
    def verb(self) -> str:
        first = self.command.split(maxsplit=1)
        return first[0].lstrip("/").lower() if first else "help"


_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_REPO_RE = re.compile(rf"({_OWNER})/({_NAME})")
_REPO_NUM_RE = re.compile(rf"({_OWNER}/{_NAME})#(\d{{1,9}})")
_REPO_KEY_RE = re.compile(r"(?:repo|repository)=(.*)", re.IGNORECASE)
_NUM_KEY_RE = re.compile(r"(?:pr|pull|issue)=#?(.*)", re.IGNORECASE)
_HASH_NUM_RE = re.compile(r"#(\d{1,9})")
_URL_RE = re.compile(rf"(https?://[^/\s]+)/({_OWNER})/({_NAME})/(?:pull|pulls|issues)/(\d{{1,9}})(?:[/?#]\S*)?")
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")
_ANY_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>[,:]?")

USAGE = ("Say which pull request: `owner/name#123`, `repo=owner/name pr=123`, or paste the PR's link. "
         "For example: `{cmd} train tiny max_steps=20 Codertocat/Hello-World#1`, `{cmd} status owner/name#7`, "
         "`{cmd} help`.")


def from_slack(text: str) -> str:
    """Slack's wire text back to what the user typed: links unwrapped, `&amp;`, `&lt;`, `&gt;` decoded."""

    def link(m: re.Match[str]) -> str:
        url, label = m.group(1), m.group(2)
        bare = re.sub(r"^(?:https?://|mailto:)", "", url)
        # Slack links words that look like domains (`model.bin` -> <http://model.bin|model.bin>): keep what was typed.
        return label if label and label in (url, bare) else url

    text = _SLACK_LINK.sub(link, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_bot_mention(text: str, bot_user_id: str = "") -> str:
    """The words addressed to the bot in an app_mention: what follows its `<@U…>`, or what precedes it when the
    mention ends the message ("train tiny o/r#1 <@U…>")."""
    pattern = re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[,:]?") if bot_user_id else _ANY_MENTION
    m = pattern.search(text)
    if m is None:
        return text.strip()
    after = text[m.end():].strip()
    return after if after else text[:m.start()].strip()


def _valid_repo(value: str) -> str | None:
    m = _REPO_RE.fullmatch(value)
    if m is None or m.group(2) in (".", ".."):
        return None
    return value


def parse_slack_text(text: str, *, web_url: str = "https://github.com") -> SlackRequest:
    """Find the target (`owner/name#N`, `repo=owner/name pr=N`, a PR/issue link) in already-unescaped text.

    Raises TargetError for a target that is malformed, incomplete, or contradicts another one. Every other word is
    left to the command parser, in place.
    """
    host = web_url.rstrip("/").lower()
    repos: list[tuple[str, str]] = []  # (repo, as typed)
    numbers: list[tuple[int, str]] = []
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        words: list[str] = []
        for word in line.split():
            if m := _REPO_NUM_RE.fullmatch(word):
                repos.append((m.group(1), word))
                numbers.append((int(m.group(2)), word))
            elif m := _URL_RE.fullmatch(word):
                if m.group(1).lower() != host:
                    raise TargetError(f"`{word}` is not a link to {host}; link to a pull request there, or write "
                                      "`owner/name#123`")
                repos.append((f"{m.group(2)}/{m.group(3)}", word))
                numbers.append((int(m.group(4)), word))
            elif m := _REPO_KEY_RE.fullmatch(word):
                value = m.group(1)
                if n := _REPO_NUM_RE.fullmatch(value):
                    repos.append((n.group(1), word))
                    numbers.append((int(n.group(2)), word))
                elif _valid_repo(value):
                    repos.append((value, word))
                else:
                    raise TargetError(f"`{word}`: expected `repo=owner/name`")
            elif m := _NUM_KEY_RE.fullmatch(word):
                if not m.group(1).isdigit() or len(m.group(1)) > 9 or int(m.group(1)) < 1:
                    raise TargetError(f"`{word}`: expected a pull request number, e.g. `pr=12`")
                numbers.append((int(m.group(1)), word))
            elif m := _HASH_NUM_RE.fullmatch(word):
                numbers.append((int(m.group(1)), word))
            else:
                words.append(word)
        kept.append(" ".join(words))
    command = "\n".join(line for line in kept if line).strip()
    distinct_repos = {r.lower(): (r, w) for r, w in repos}
    distinct_numbers = {n: w for n, w in numbers}
    if len(distinct_repos) > 1:
        a, b = list(distinct_repos.values())[:2]
        raise TargetError(f"two different repositories: `{a[1]}` and `{b[1]}`; name one")
    if len(distinct_numbers) > 1:
        a_word, b_word = list(distinct_numbers.values())[:2]
        raise TargetError(f"two different pull requests: `{a_word}` and `{b_word}`; name one")
    if not repos and not numbers:
        return SlackRequest(None, command)
    if not repos:
        raise TargetError(f"`{numbers[0][1]}`: which repository? Add `repo=owner/name`")
    if not numbers:
        repo = repos[0][0]
        raise TargetError(f"which pull request in `{repo}`? Add `pr=<number>` or write `{repo}#<number>`")
    if numbers[0][0] < 1:
        raise TargetError(f"`{numbers[0][1]}`: pull request numbers start at 1")
    return SlackRequest(Target(repos[0][0], numbers[0][0]), command)


def comment_text(command: str, *, command_name: str, catalog: Catalog) -> str:
    """The command as a PR comment would say it: `/train …` (what the run card shows), or `@tunebot …` when the
    verb is not one of ours, so that the parser answers "unknown command" instead of staying silent."""
    first, _, rest = command.partition("\n")
    first = first.strip()
    slash = first if first.startswith("/") else f"/{first}"
    text = slash + ("\n" + rest if rest else "")
    if first and not isinstance(parse_comment(text, catalog=catalog, policy=DEFAULT_POLICY,
                                              bot_login=command_name), Ignore):
        return text
    return f"@{command_name} {first.lstrip('/')}".rstrip() + ("\n" + rest if rest else "")


def help_markdown(command: str, *, command_name: str, catalog: Catalog) -> str:
    """What `help` (or `help <topic>`) answers, as the GitHub Markdown a PR comment would get; "" when nothing."""
    decision = parse_comment(comment_text(command, command_name=command_name, catalog=catalog), catalog=catalog,
                             policy=DEFAULT_POLICY, bot_login=command_name)
    return decision.text if isinstance(decision, Reply) else ""
