"""A fake Slack Web API (chat.postMessage / chat.update) on 127.0.0.1, shaped like chat_methods_openapi.json.

It checks the bearer token, accepts JSON and form bodies like Slack, records every message, and can answer
HTTP 429 + Retry-After (`{"ok":false,"error":"ratelimited"}`) or `ok:false` errors on demand.

For the Slack app mode it also answers `auth.test` (what Bolt asks once per token), `chat.postEphemeral`, and the
slash-command `response_url`s it hands out (`/commands/{team}/{id}/{secret}`; answered `200 ok` in text/plain,
like Slack's message-response webhooks).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

DEFAULT_TOKEN = "xoxb-test-token"
MAX_TEXT = 40_000


@dataclass
class SlackMessage:
    channel: str  # channel ID
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)  # every chat.update body applied, in order
    user: str | None = None  # who wrote it (a person's message added by a test); None for the bot's own
    ephemeral_to: str | None = None  # chat.postEphemeral: the only user who sees it


@dataclass(frozen=True)
class SlackResponse:
    """One POST to a slash command's response_url."""

    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class SlackCall:
    method: str
    body: dict[str, Any]
    authorization: str | None
    status: int
    answer: dict[str, Any]


class FakeSlack(LoopbackServer):
    """`async with FakeSlack() as slack:`; give clients `slack.base_url` (ends with /api/) and `slack.token`."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, channels: dict[str, str] | None = None) -> None:
        super().__init__()
        self.token = token
        # name -> ID; posting to "#name" or "name" answers the ID, like Slack.
        self.channels: dict[str, str] = dict(channels or {"tunebot": "C0TUNEBOT1", "general": "C0GENERAL1"})
        self.messages: list[SlackMessage] = []
        self.calls: list[SlackCall] = []
        self._rate_limits: list[tuple[str, int, int]] = []  # (method, remaining, retry_after)
        self._errors: list[tuple[str, int, str]] = []  # (method, remaining, error)
        self._counter = itertools.count(1)
        self.ephemeral: list[SlackMessage] = []  # chat.postEphemeral, kept apart: nobody else sees these
        self.responses: list[SlackResponse] = []  # bodies POSTed to response_urls handed out by new_response_url
        self._response_urls: set[str] = set()
        # auth.test identity: the bot user whose own messages Bolt ignores.
        self.team_id = "T0TUNEBOT1"
        self.bot_user_id = "U0TUNEBOT1"
        self.bot_id = "B0TUNEBOT1"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_post("/commands/{team}/{id}/{secret}", self._handle_response_url)
        return app

    # ------------------------------------------------------------------ test controls
    def rate_limit_next(self, method: str = "*", times: int = 1, retry_after: int = 1) -> None:
        self._rate_limits.append((method, times, retry_after))

    def fail_next(self, error: str, method: str = "*", times: int = 1) -> None:
        self._errors.append((method, times, error))

    def in_channel(self, channel: str) -> list[SlackMessage]:
        cid = self._resolve(channel) or channel
        return [m for m in self.messages if m.channel == cid]

    def thread(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        """The replies in a thread, oldest first (not the parent message)."""
        cid = self._resolve(channel) or channel
        return [m for m in self.messages if m.channel == cid and m.thread_ts == thread_ts]

    def add_user_message(self, channel: str, text: str, *, user: str, thread_ts: str | None = None) -> str:
        """A message a person wrote (so that a later event can point at it); returns its ts."""
        cid = self._resolve(channel)
        if cid is None:
            raise KeyError(f"unknown channel {channel!r}")
        ts = f"{int(time.time()):010d}.{next(self._counter):06d}"
        self.messages.append(SlackMessage(cid, ts, text, None, thread_ts, user=user))
        return ts

    def new_response_url(self, team: str | None = None) -> str:
        """A slash command's response_url, in Slack's shape (hooks.slack.com/commands/T…/…/…), served here."""
        n = next(self._counter)
        url = f"http://127.0.0.1:{self.port}/commands/{team or self.team_id}/{n:012d}/secret{n:06d}"
        self._response_urls.add(url)
        return url

    # ------------------------------------------------------------------ server
    def _resolve(self, channel: str) -> str | None:
        if channel in self.channels.values():
            return channel
        return self.channels.get(channel.lstrip("#"))

    def _take(self, faults: list[tuple[str, int, Any]], method: str) -> Any | None:
        for i, (m, remaining, value) in enumerate(faults):
            if remaining > 0 and m in ("*", method):
                faults[i] = (m, remaining - 1, value)
                return value
        return None

    def _answer(self, method: str, body: dict[str, Any], auth: str | None, data: dict[str, Any],
                status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        self.calls.append(SlackCall(method, body, auth, status, data))
        return web.Response(text=json.dumps(data), status=status, headers=headers,
                            content_type="application/json", charset="utf-8")

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        auth = request.headers.get("Authorization")
        body: dict[str, Any]
        if request.content_type == "application/json":
            try:
                parsed = json.loads(await request.read() or b"{}")
            except ValueError:
                return self._answer(method, {}, auth, {"ok": False, "error": "invalid_json"})
            if not isinstance(parsed, dict):
                return self._answer(method, {}, auth, {"ok": False, "error": "json_not_object"})
            body = parsed
        else:
            form = await request.post()
            body = {k: str(v) for k, v in form.items()}
            for key in ("blocks", "attachments"):
                if isinstance(body.get(key), str):
                    try:
                        body[key] = json.loads(body[key])
                    except ValueError:
                        return self._answer(method, body, auth, {"ok": False, "error": "invalid_blocks"})
        retry_after = self._take(self._rate_limits, method)
        if retry_after is not None:
            return self._answer(method, body, auth, {"ok": False, "error": "ratelimited"}, status=429,
                                headers={"Retry-After": str(retry_after)})
        token = (auth or "").removeprefix("Bearer ").strip() if auth and auth.startswith("Bearer ") else None
        if token is None:
            return self._answer(method, body, auth, {"ok": False, "error": "not_authed"})
        if token != self.token:
            return self._answer(method, body, auth, {"ok": False, "error": "invalid_auth"})
        forced = self._take(self._errors, method)
        if forced is not None:
            return self._answer(method, body, auth, {"ok": False, "error": forced})
        if method == "auth.test":
            return self._answer(method, body, auth, {
                "ok": True, "url": "https://tunebot-test.slack.com/", "team": "Tunebot Test", "user": "tunebot",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False})
        if method == "chat.postEphemeral":
            return self._post_ephemeral(body, auth)
        if method == "chat.postMessage":
            return self._post(body, auth)
        if method == "chat.update":
            return self._update(body, auth)
        return self._answer(method, body, auth, {"ok": False, "error": "unknown_method"}, status=404)

    def _check_content(self, body: dict[str, Any]) -> str | None:
        text, blocks = body.get("text"), body.get("blocks")
        if not text and not blocks and not body.get("attachments"):
            return "no_text"
        if text is not None and not isinstance(text, str):
            return "invalid_arguments"
        if isinstance(text, str) and len(text) > MAX_TEXT:
            return "msg_too_long"
        if blocks is not None and (not isinstance(blocks, list) or len(blocks) > 50
                                   or not all(isinstance(b, dict) and isinstance(b.get("type"), str)
                                              for b in blocks)):
            return "invalid_blocks"
        return None

    def _post(self, body: dict[str, Any], auth: str | None) -> web.Response:
        channel = self._resolve(str(body.get("channel") or ""))
        if channel is None:
            return self._answer("chat.postMessage", body, auth, {"ok": False, "error": "channel_not_found"})
        error = self._check_content(body)
        if error:
            return self._answer("chat.postMessage", body, auth, {"ok": False, "error": error})
        thread_ts = body.get("thread_ts")
        if thread_ts is not None and not any(m.ts == thread_ts and m.channel == channel for m in self.messages):
            return self._answer("chat.postMessage", body, auth, {"ok": False, "error": "thread_not_found"})
        ts = f"{int(time.time()):010d}.{next(self._counter):06d}"
        msg = SlackMessage(channel, ts, body.get("text"), body.get("blocks"), thread_ts)
        self.messages.append(msg)
        message = {"type": "message", "subtype": "bot_message", "bot_id": "B0TUNEBOT1", "text": body.get("text") or "",
                   "ts": ts, "username": "tunebot"}
        if body.get("blocks"):
            message["blocks"] = body["blocks"]
        if thread_ts:
            message["thread_ts"] = thread_ts
        return self._answer("chat.postMessage", body, auth, {"ok": True, "channel": channel, "ts": ts,
                                                             "message": message})

    def _update(self, body: dict[str, Any], auth: str | None) -> web.Response:
        channel = str(body.get("channel") or "")
        ts = str(body.get("ts") or "")
        if channel not in self.channels.values():
            # chat.update wants the channel ID; a name is an error.
            return self._answer("chat.update", body, auth, {"ok": False, "error": "channel_not_found"})
        msg = next((m for m in self.messages if m.ts == ts and m.channel == channel), None)
        if msg is None:
            return self._answer("chat.update", body, auth, {"ok": False, "error": "message_not_found"})
        error = self._check_content(body)
        if error:
            return self._answer("chat.update", body, auth, {"ok": False, "error": error})
        msg.text = body.get("text", msg.text)
        if "blocks" in body:
            msg.blocks = body["blocks"]
        msg.updates.append(body)
        return self._answer("chat.update", body, auth, {"ok": True, "channel": channel, "ts": ts,
                                                        "text": msg.text or "",
                                                        "message": {"text": msg.text or "", "user": "U0TUNEBOT1"}})

    def _post_ephemeral(self, body: dict[str, Any], auth: str | None) -> web.Response:
        method = "chat.postEphemeral"
        channel = self._resolve(str(body.get("channel") or ""))
        if channel is None:
            return self._answer(method, body, auth, {"ok": False, "error": "channel_not_found"})
        user = str(body.get("user") or "")
        if not user:
            return self._answer(method, body, auth, {"ok": False, "error": "user_not_in_channel"})
        error = self._check_content(body)
        if error:
            return self._answer(method, body, auth, {"ok": False, "error": error})
        ts = f"{int(time.time()):010d}.{next(self._counter):06d}"
        self.ephemeral.append(SlackMessage(channel, ts, body.get("text"), body.get("blocks"), body.get("thread_ts"),
                                           ephemeral_to=user))
        return self._answer(method, body, auth, {"ok": True, "message_ts": ts})

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        url = f"http://127.0.0.1:{self.port}{request.path}"
        if url not in self._response_urls:
            return web.Response(status=404, text="no_service", content_type="text/plain")
        try:
            parsed = json.loads(await request.read() or b"null")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return web.Response(status=400, text="invalid_payload", content_type="text/plain")
        if not parsed.get("text") and not parsed.get("blocks"):
            return web.Response(status=400, text="no_text", content_type="text/plain")
        self.responses.append(SlackResponse(url, parsed))
        return web.Response(status=200, text="ok", content_type="text/plain")
