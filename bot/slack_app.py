"""Slack app mode: runs a Slack slash command or @mention (whose words `commands.slack_text` reads) through the
service exactly as a PR comment would be run, as the GitHub user the Slack user is mapped to; answers in a thread.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackClientError

from bot.config import Config, ConfigError
from bot.github.port import GitHubError, GitHubPort, NotFound
from bot.notify.slack import Answer, ResponseUrlAnswer, SlackError, SlackNotifier, ThreadAnswer
from bot.outbox import GITHUB_KINDS
from bot.store import Run, Store
from commands.catalog import Catalog
from commands.render.slack import esc, to_mrkdwn
from commands.slack_text import (
    USAGE,
    SlackRequest,
    Target,
    TargetError,
    comment_text,
    from_slack,
    help_markdown,
    parse_slack_text,
    strip_bot_mention,
)

log = logging.getLogger(__name__)

COMMANDS_PATH = "/slack/commands"
EVENTS_PATH = "/slack/events"
_PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_MAX_REMEMBERED = 2000  # threads whose target we remember, and event ids we have seen (bounded: memory only)
_SLACK_DOWN = (SlackError, SlackClientError, aiohttp.ClientError, TimeoutError)


class SlackService(Protocol):
    """What the Slack app uses of the service (bot.service.Service is one): its config, catalog, GitHub port, store
    and clock, and running command text on a pull request exactly as a comment would be run."""

    @property
    def config(self) -> Config: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def github(self) -> GitHubPort: ...
    @property
    def store(self) -> Store: ...

    def now(self) -> datetime: ...

    async def handle_text(self, repo: str, number: int, actor: str, text: str, *, trigger: str, is_pr: bool,
                          echo: Callable[[str], Awaitable[None]]) -> None: ...


# --- the bridge -------------------------------------------------------------------------------------------------------

class SlackBridge:
    """The Bolt app and what it needs: the Slack client, the service, the tasks that run commands after the ack."""

    def __init__(self, service: SlackService, config: Config) -> None:
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
        markdown = help_markdown(command, command_name=self.config.command_name, catalog=self.service.catalog)
        return to_mrkdwn(markdown, slack_users=self.slack_users())

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

    def _link(self, target: Target) -> str:
        return f"<{self.config.github_web_url.rstrip('/')}/{target.repo}/pull/{target.number}|{esc(str(target))}>"

    def _understand(self, text: str, user: str, cmd: str, *, known: Target | None = None,
                    usage_with_help: bool = False) -> tuple[SlackRequest, Target, str] | str:
        """The request, the pull request it is about (named in it, else `known`) and the GitHub login asking; or the
        answer, for `user` alone, that ends it here: an unreadable target, help, no target, an unmapped user."""
        try:
            req = parse_slack_text(from_slack(text), web_url=self.config.github_web_url)
        except TargetError as exc:
            return esc(f"⚠️ {exc}\n{USAGE.format(cmd=cmd)}")
        if req.verb == "help":
            return self.help_text(req.command or "help") + \
                ("\n\n" + esc(USAGE.format(cmd=cmd)) if usage_with_help else "")
        target = req.target or known
        if target is None:
            return esc(f"⚠️ {USAGE.format(cmd=cmd)}")
        login = self.user_map.get(user)
        if not login:
            return self.unmapped_text(user)
        return req, target, str(login)

    # --- listeners ----------------------------------------------------------------------------------------------------

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        user = str(body.get("user_id") or "")
        team = str(body.get("team_id") or "")
        channel = str(body.get("channel_id") or "")
        cmd = str(body.get("command") or f"/{self.config.command_name}")
        understood = self._understand(str(body.get("text") or ""), user, cmd, usage_with_help=True)
        if isinstance(understood, str):
            await ack(text=understood, response_type="ephemeral")
            return
        req, target, login = understood
        await ack()  # the answer comes in a thread; Slack shows nothing for an empty ack
        trigger = f"slack:{team}:{channel}:{body.get('trigger_id') or ''}"
        self._spawn(self._run_slash(req, target, login, user, channel, trigger, str(body.get("response_url") or ""),
                                    cmd))

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
            with contextlib.suppress(*_SLACK_DOWN):
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
        understood = self._understand(strip_bot_mention(str(event.get("text") or ""), bot_user_id), user,
                                      f"@{self.config.command_name}", known=self._threads.get((channel, thread_ts)))
        if isinstance(understood, str):
            try:
                await answer.whisper(understood)
            except _SLACK_DOWN as exc:
                log.warning("answering a Slack mention in %s failed: %s", channel, exc)
            return
        req, target, login = understood
        self._remember_thread(channel, thread_ts, target)
        await self.execute(target, login, req.command, f"slack:{team}:{channel}:{ts}", answer)

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
            # The answer links each run's card: have the GitHub writes performed now (the runtime's loop would
            # take them a moment later), so that the card's comment exists.
            await service.outbox.pump(kinds=GITHUB_KINDS)
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
        except _SLACK_DOWN as exc:
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

    def _started_text(self, run: Run, target: Target) -> str:
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


def mount_slack(app: web.Application, service: SlackService) -> SlackBridge:
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

