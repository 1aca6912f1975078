"""Slack app mode: decides which pull request and which GitHub user a Slack slash command or @mention stands for,
runs it through the service exactly as a PR comment would be run, and answers in a Slack thread.

Slack never grants anything by itself: the Slack user is mapped to a GitHub login through `slack_user_map`, and that
login's permission on the repository is what the service authorizes against (the same check a comment gets).

Routes (mounted by `bot.app.build_app` when `slack_signing_secret` is set): `POST /slack/commands` (slash commands)
and `POST /slack/events` (Events API: `app_mention`, `url_verification`). Both go to one Bolt `AsyncApp`, which checks
`X-Slack-Signature` / `X-Slack-Request-Timestamp` (v0 HMAC-SHA256, 5-minute window) before anything else runs.
Requests are acknowledged at once (Slack waits 3 s at most); the GitHub work happens after, in tracked tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.config import Config, ConfigError
from bot.github.port import GitHubError, NotFound
from bot.notify.slack import SlackError, SlackNotifier
from commands.decision import Ignore, Reply
from commands.parse import parse_comment
from commands.policy import DEFAULT_POLICY
from commands.render.slack import esc

if TYPE_CHECKING:
    from bot.service import Service

log = logging.getLogger(__name__)

COMMANDS_PATH = "/slack/commands"
EVENTS_PATH = "/slack/events"
_PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_MAX_REMEMBERED = 2000  # threads whose target we remember, and event ids we have seen (bounded: memory only)


# --- reading what the user typed --------------------------------------------------------------------------------------

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


def comment_text(command: str, *, command_name: str, catalog: Any) -> str:
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


# --- writing for Slack ------------------------------------------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_TAG = re.compile(r"</?(?:details|summary|sub|sup|br|p|b|i|em|strong|code|kbd|span|div|picture|source)\b"
                       r"[^>]*>", re.IGNORECASE)
_FENCE_LINE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MD_LINK = re.compile(r"!?\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_MD_ITALIC = re.compile(r"(?<![*\w])\*(?![\s*])([^*\n]+?)(?<!\s)\*(?![*\w])")
_MD_BOLD = re.compile(r"\*\*(?!\s)(.+?)(?<!\s)\*\*|__(?!\s)(.+?)(?<!\s)__")
_MD_STRIKE = re.compile(r"~~(?!\s)(.+?)(?<!\s)~~")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_GH_MENTION = re.compile(r"(?<![\w`/@])@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?)(?![\w-])")


def _prose(text: str, slack_users: Mapping[str, str]) -> str:
    text = esc(_HTML_TAG.sub("", text))
    text = _MD_LINK.sub(lambda m: f"<{m.group(2).replace('|', '%7C')}|{m.group(1).replace('|', '/')}>", text)
    text = _MD_ITALIC.sub(r"_\1_", text)
    text = _MD_BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    text = _MD_STRIKE.sub(r"~\1~", text)

    def mention(m: re.Match[str]) -> str:
        user = slack_users.get(m.group(1).lower())
        return f"<@{user}>" if user else m.group(0)

    return _GH_MENTION.sub(mention, text)


def to_mrkdwn(markdown: str, *, slack_users: Mapping[str, str] | None = None) -> str:
    """GitHub Markdown (what the bot writes on PRs) as Slack mrkdwn: links, bold/italic, headings, code blocks,
    `&<>` escaped, hidden markers dropped, and `@login` turned into a Slack mention for mapped users
    (`slack_users`: lower-cased GitHub login -> Slack user id)."""
    users = slack_users or {}
    out: list[str] = []
    fence: str | None = None
    for line in _HTML_COMMENT.sub("", markdown).split("\n"):
        m = _FENCE_LINE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip(" `~"):
                fence = None
                out.append("```")
            else:
                out.append(esc(line))
            continue
        if m:
            fence = m.group(1)
            out.append("```")  # Slack has no info string (```python): drop it
            continue
        if _TABLE_RULE.match(line) and "|" in line:
            continue  # a table's |---| rule means nothing in Slack; the rows still read as text
        heading = _MD_HEADING.match(line)
        body = heading.group(1) if heading else line
        parts: list[str] = []
        last = 0
        for span in _CODE_SPAN.finditer(body):
            parts.append(_prose(body[last:span.start()], users))
            parts.append("`" + esc(span.group(2).replace("`", "'").strip()) + "`")
            last = span.end()
        parts.append(_prose(body[last:], users))
        text = "".join(parts)
        out.append(f"*{text}*" if heading and text else text)
    if fence is not None:
        out.append("```")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


# --- where answers go -------------------------------------------------------------------------------------------------

class Answer(Protocol):
    async def say(self, text: str) -> None:
        """Visible to the channel (in the thread)."""

    async def whisper(self, text: str) -> None:
        """Visible only to the person who asked."""


class ThreadAnswer:
    """Replies in a channel thread; whispers are ephemeral messages in that thread."""

    def __init__(self, slack: SlackNotifier, channel: str, thread_ts: str, user: str) -> None:
        self.slack = slack
        self.channel = channel
        self.thread_ts = thread_ts
        self.user = user

    async def say(self, text: str) -> None:
        await self.slack.post(self.channel, text, thread_ts=self.thread_ts)

    async def whisper(self, text: str) -> None:
        try:
            await self.slack.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text,
                                                       thread_ts=self.thread_ts)
        except SlackApiError as exc:
            raise SlackError("chat.postEphemeral", str(exc.response.get("error") or "error")) from exc


class ResponseUrlAnswer:
    """Answers through a slash command's response_url (ephemeral): where tunebot cannot post into the channel."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None) -> None:
        self.client = AsyncWebhookClient(url, session=session, timeout=15)

    async def _send(self, text: str) -> None:
        resp = await self.client.send(text=text, response_type="ephemeral")
        if resp.status_code != 200:
            raise SlackError("response_url", resp.body or f"http_{resp.status_code}", status=resp.status_code)

    async def say(self, text: str) -> None:
        await self._send(text)

    async def whisper(self, text: str) -> None:
        await self._send(text)


# --- the bridge -------------------------------------------------------------------------------------------------------

class SlackBridge:
    """The Bolt app and what it needs: the Slack client, the service, the tasks that run commands after the ack."""

    def __init__(self, service: Service, config: Config) -> None:
        if not config.slack_signing_secret:
            raise ConfigError("SLACK_SIGNING_SECRET is not set: Slack requests cannot be verified")
        if not config.slack_token:
            raise ConfigError("SLACK_SIGNING_SECRET is set but SLACK_BOT_TOKEN is not: the Slack app mode needs the "
                              "bot token (xoxb-…) to answer in threads")
        self.service = service
        self.config = config
        bad = sorted(k for k in config.slack_user_map if not _SLACK_USER_ID.fullmatch(str(k)))
        if bad:
            log.warning("slack_user_map keys must be Slack user ids (U…/W…, see the user's profile → Copy member ID);"
                        " these are not and will never match: %s", ", ".join(map(str, bad)))
        if not config.slack_user_map:
            log.warning("slack_user_map is empty: nobody can run commands from Slack until it maps Slack user ids "
                        "to GitHub logins")
        self.slack = SlackNotifier(config.slack_token.get(), base_url=config.slack_api_url)
        self.session: aiohttp.ClientSession | None = None
        self.bolt = AsyncApp(name="tunebot", client=self.slack.client,
                             signing_secret=config.slack_signing_secret.get(),
                             logger=logging.getLogger("bot.slack_app.bolt"))
        self.bolt.command(re.compile(r"^/.+"))(self._on_command)
        self.bolt.event("app_mention")(self._on_mention)
        # Everything else the app may be subscribed to is acknowledged and dropped: a 404 would make Slack retry.
        self.bolt.event(re.compile(".*"))(self._ignore_event)
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads: OrderedDict[tuple[str, str], Target] = OrderedDict()
        self._seen_events: OrderedDict[str, None] = OrderedDict()

    # --- lifecycle ----------------------------------------------------------------------------------------------------

    def use_session(self, session: aiohttp.ClientSession | None) -> None:
        self.session = session
        self.slack.client.session = session

    async def settle(self) -> None:
        """Wait for the commands already acknowledged to finish (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, timeout: float = 30.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settle(), timeout)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- HTTP ---------------------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await self.bolt.async_dispatch(bolt_request))

    # --- facts --------------------------------------------------------------------------------------------------------

    @property
    def user_map(self) -> Mapping[str, str]:
        mapping: Mapping[str, str] = self.service.config.slack_user_map  # read per request: config may be replaced
        return mapping

    def slack_users(self) -> dict[str, str]:
        """Lower-cased GitHub login -> Slack user id (the first one mapped), for mentions in answers."""
        out: dict[str, str] = {}
        for slack_id, login in self.user_map.items():
            out.setdefault(str(login).lower(), str(slack_id))
        return out

    def unmapped_text(self, user: str) -> str:
        return esc(f"Your Slack account (`{user}`) is not linked to a GitHub login, so tunebot cannot check what you "
                f"may do on GitHub. Ask a tunebot admin to add `{user}: <your-github-login>` under `slack_user_map:` "
                "in the service config.")

    def help_text(self, command: str) -> str:
        decision = parse_comment(comment_text(command, command_name=self.config.command_name,
                                              catalog=self.service.catalog),
                                 catalog=self.service.catalog, policy=DEFAULT_POLICY,
                                 bot_login=self.config.command_name)
        text = decision.text if isinstance(decision, Reply) else ""
        return to_mrkdwn(text, slack_users=self.slack_users())

    def _remember_thread(self, channel: str, thread_ts: str, target: Target) -> None:
        self._threads[(channel, thread_ts)] = target
        self._threads.move_to_end((channel, thread_ts))
        while len(self._threads) > _MAX_REMEMBERED:
            self._threads.popitem(last=False)

    def _first_time(self, event_id: str) -> bool:
        if not event_id:
            return True
        if event_id in self._seen_events:
            return False
        self._seen_events[event_id] = None
        while len(self._seen_events) > _MAX_REMEMBERED:
            self._seen_events.popitem(last=False)
        return True

    def _link(self, target: Target, is_pr: bool = True) -> str:
        kind = "pull" if is_pr else "issues"
        return f"<{self.config.github_web_url.rstrip('/')}/{target.repo}/{kind}/{target.number}|{esc(str(target))}>"

    # --- listeners ----------------------------------------------------------------------------------------------------

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        user = str(body.get("user_id") or "")
        team = str(body.get("team_id") or "")
        channel = str(body.get("channel_id") or "")
        cmd = str(body.get("command") or f"/{self.config.command_name}")
        try:
            req = parse_slack_text(from_slack(str(body.get("text") or "")), web_url=self.config.github_web_url)
        except TargetError as exc:
            await ack(text=esc(f"⚠️ {exc}\n{USAGE.format(cmd=cmd)}"), response_type="ephemeral")
            return
        if req.verb == "help":
            await ack(text=self.help_text(req.command or "help") + "\n\n" + esc(USAGE.format(cmd=cmd)),
                      response_type="ephemeral")
            return
        if req.target is None:
            await ack(text=esc(f"⚠️ {USAGE.format(cmd=cmd)}"), response_type="ephemeral")
            return
        login = self.user_map.get(user)
        if not login:
            await ack(text=self.unmapped_text(user), response_type="ephemeral")
            return
        await ack()  # the answer comes in a thread; Slack shows nothing for an empty ack
        trigger = f"slack:{team}:{channel}:{body.get('trigger_id') or ''}"
        self._spawn(self._run_slash(req, req.target, str(login), user, channel, trigger,
                                    str(body.get("response_url") or ""), cmd))

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        # Events are acknowledged by Bolt before this runs; a retried delivery of the same event is dropped here.
        if event.get("bot_id") or not event.get("user"):
            return  # another bot (or a workflow) mentioning tunebot: only people run commands
        if not self._first_time(str(body.get("event_id") or "")):
            return
        self._spawn(self._run_mention(str(body.get("team_id") or event.get("team") or ""), event,
                                      str(context.bot_user_id or "")))

    async def _ignore_event(self, event: dict[str, Any]) -> None:
        log.debug("ignoring Slack event %s", event.get("type"))

    # --- the work after the ack ---------------------------------------------------------------------------------------

    async def _run_slash(self, req: SlackRequest, target: Target, login: str, user: str, channel: str,
                         trigger: str, response_url: str, cmd: str) -> None:
        fallback = ResponseUrlAnswer(response_url, self.session) if response_url else None
        line = " ".join(req.command.split()).replace("`", "'")  # no way to escape a backtick in Slack code
        root = f"<@{user}> (GitHub @{esc(login)}): `{esc(line)}` on {self._link(target)}"
        answer: Answer
        try:
            ts = await self.slack.post(channel, root)
        except SlackError as exc:
            # Private channels and DMs the bot is not in: answer the person alone, through the response_url.
            log.info("cannot post into %s (%s); answering through response_url", channel, exc.code)
            if fallback is None:
                return
            answer = fallback
            with contextlib.suppress(SlackError, SlackClientError, aiohttp.ClientError, TimeoutError):
                await answer.whisper(f"I cannot post in this conversation (`{exc.code}`): invite me with "
                                     f"`/invite @{self.config.command_name}` to get answers in a thread. Until then "
                                     "they come here, visible only to you.")
        else:
            channel_id = self.slack.channel_id(ts) or channel
            answer = ThreadAnswer(self.slack, channel_id, ts, user)
            self._remember_thread(channel_id, ts, target)
        await self.execute(target, login, req.command, trigger, answer)

    async def _run_mention(self, team: str, event: Mapping[str, Any], bot_user_id: str = "") -> None:
        user = str(event.get("user") or "")
        channel = str(event.get("channel") or "")
        ts = str(event.get("ts") or "")
        thread_ts = str(event.get("thread_ts") or ts)
        answer = ThreadAnswer(self.slack, channel, thread_ts, user)
        raw = strip_bot_mention(str(event.get("text") or ""), bot_user_id)
        try:
            try:
                req = parse_slack_text(from_slack(raw), web_url=self.config.github_web_url)
            except TargetError as exc:
                await answer.whisper(esc(f"⚠️ {exc}\n{USAGE.format(cmd='@' + self.config.command_name)}"))
                return
            if req.verb == "help":
                await answer.whisper(self.help_text(req.command or "help"))
                return
            target = req.target or self._threads.get((channel, thread_ts))
            if target is None:
                await answer.whisper(esc("⚠️ " + USAGE.format(cmd="@" + self.config.command_name)))
                return
            login = self.user_map.get(user)
            if not login:
                await answer.whisper(self.unmapped_text(user))
                return
            self._remember_thread(channel, thread_ts, target)
        except (SlackError, SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("answering a Slack mention in %s failed: %s", channel, exc)
            return
        await self.execute(target, str(login), req.command, f"slack:{team}:{channel}:{ts}", answer)

    async def execute(self, target: Target, login: str, command: str, trigger: str, answer: Answer) -> None:
        """Run `command` on `target` as GitHub user `login`; every reply, and each run started, goes to `answer`."""
        service = self.service
        said: list[str] = []
        users = self.slack_users()

        async def echo(text: str) -> None:
            said.append(text)
            await answer.say(to_mrkdwn(text, slack_users=users))

        try:
            try:
                perm = await service.github.get_permission(target.repo, login)
            except NotFound:
                perm = None
            level = None if perm is None else (perm.role_name if perm.role_name in _PERMISSIONS else perm.permission)
            if level is None or level == "none":
                # One answer for "no such repo", "not installed there" and "you cannot see it": Slack must not tell a
                # mapped user more about a private repository than GitHub would.
                await answer.whisper(esc(f"⚠️ I cannot find `{target}`, or GitHub user `{login}` has no access to "
                                         "it (is tunebot installed on that repository?)."))
                return
            is_pr = await self._is_pull(target)
            if is_pr is None:
                await answer.whisper(esc(f"⚠️ `{target}` is neither a pull request nor an issue of `{target.repo}`."))
                return
            text = comment_text(command, command_name=self.config.command_name, catalog=service.catalog)
            await service.handle_text(target.repo, target.number, login, text, trigger=trigger, is_pr=is_pr,
                                      echo=echo)
            started = [r for r in await service.store.runs_for_pr(target.repo, target.number)
                       if (r.trigger_key or "").startswith(trigger + ":")]
            for run in reversed(started):  # oldest first, as they were started
                await answer.say(self._started_text(run, target))
                if isinstance(answer, ThreadAnswer):
                    # The run's outcome and comparison come back to the thread that asked (bot/chat.py).
                    await service.store.remember_message(run.run_id, "slack_thread", answer.thread_ts,
                                                         now=service.now(), channel=answer.channel)
            if not said and not started:
                await answer.say(f"Nothing to do: no tunebot command in `{esc(command) or 'this message'}`. "
                                 f"Try `/{self.config.command_name} help`.")
        except GitHubError as exc:
            log.warning("Slack command %s on %s failed on GitHub: %s", trigger, target, exc)
            await self._best_effort(answer, f"⚠️ GitHub refused this: {esc(exc.message or str(exc))} "
                                            f"(HTTP {exc.status}). Nothing was started.")
        except (SlackError, SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("answering Slack command %s failed: %s", trigger, exc)
        except Exception:
            log.exception("Slack command %s on %s failed", trigger, target)
            await self._best_effort(answer, "⚠️ tunebot hit an internal error running this; the service log has "
                                            "the details.")

    async def _best_effort(self, answer: Answer, text: str) -> None:
        try:
            await answer.say(text)
        except Exception as exc:  # the log above already holds the real problem
            log.warning("could not tell Slack: %s", exc)

    async def _is_pull(self, target: Target) -> bool | None:
        """True for a pull request, False for an issue, None when the number is neither."""
        github = self.service.github
        try:
            await github.get_pull(target.repo, target.number)
            return True
        except NotFound:
            pass
        try:
            await github.list_comments(target.repo, target.number)
            return False
        except NotFound:
            return None

    def _started_text(self, run: Any, target: Target) -> str:
        web_url = self.config.github_web_url.rstrip("/")
        card = f"{web_url}/{target.repo}/pull/{target.number}"
        if run.comment_id:
            card += f"#issuecomment-{run.comment_id}"
        what = f"{run.kind} `{esc(run.model or '?')}`"
        sha = f" on `{run.head_sha[:7]}`" if run.head_sha else ""
        actions = f" · <{run.workflow_url}|workflow run>" if run.workflow_url else ""
        return f"▶️ Started `{run.run_id}`: {what}{sha}. Live progress: <{card}|run card on {esc(str(target))}>" \
               f"{actions}"


SLACK_KEY: web.AppKey[SlackBridge] = web.AppKey("slack", SlackBridge)


def mount_slack(app: web.Application, service: Service) -> SlackBridge:
    """Add `POST /slack/commands` and `POST /slack/events` to the service's app, with the bridge's lifecycle."""
    bridge = SlackBridge(service, service.config)
    app[SLACK_KEY] = bridge
    app.router.add_post(COMMANDS_PATH, bridge.handle)
    app.router.add_post(EVENTS_PATH, bridge.handle)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        bridge.use_session(session)
        try:
            yield
        finally:
            await bridge.close()
            bridge.use_session(None)
            await session.close()

    app.cleanup_ctx.append(lifecycle)
    return bridge


__all__ = ["COMMANDS_PATH", "EVENTS_PATH", "SLACK_KEY", "Answer", "ResponseUrlAnswer", "SlackBridge", "SlackRequest",
           "Target", "TargetError", "ThreadAnswer", "comment_text", "from_slack", "mount_slack", "parse_slack_text",
           "strip_bot_mention", "to_mrkdwn"]
