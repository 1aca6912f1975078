"""DingTalk custom-robot client: signed sends, errcode checking, and a per-robot 20-a-minute limiter that
coalesces (merges) the messages it holds back instead of dropping them.

DingTalk answers HTTP 200 even for errors; success is `errcode == 0` only. Going over 20 messages a minute
throttles the robot for 10 minutes (errcode 130101), so we stay under the limit on our side.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import aiohttp

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # seconds since the epoch
Sleep = Callable[[float], Awaitable[None]]

ERR_SECURITY = 310000  # signature / keyword / IP / timestamp rejected
ERR_RATE_LIMIT = 130101  # over 20 messages a minute: throttled for 10 minutes
ERR_TOO_FAST_ALT = 410100  # reported by third parties for the same condition
MAX_MARKDOWN = 18_000  # DingTalk rejects very long messages; keep merged text well below ~20 KB


def sign(secret: str, ts_ms: int | str) -> str:
    """The `sign` query value: urlencode(base64(HMAC-SHA256(key=secret, msg=f"{ts}\\n{secret}"))), quote_plus."""
    string_to_sign = f"{ts_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def signed_url(webhook_url: str, secret: str | None, ts_ms: int) -> str:
    """The webhook URL with `timestamp` and `sign` appended (unchanged when the robot has no signing secret)."""
    if not secret:
        return webhook_url
    parts = urlsplit(webhook_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("timestamp", "sign")]
    base_query = urlencode(query)
    extra = f"timestamp={ts_ms}&sign={sign(secret, ts_ms)}"  # sign is already percent-encoded
    return urlunsplit(parts._replace(query=f"{base_query}&{extra}" if base_query else extra))


class DingTalkError(Exception):
    """The robot refused a message: `errcode` / `errmsg` as DingTalk sent them (HTTP failures use errcode -1)."""

    def __init__(self, errcode: int, errmsg: str, *, status: int = 200) -> None:
        super().__init__(f"DingTalk robot error {errcode}: {errmsg}" + (f" (HTTP {status})" if status != 200 else ""))
        self.errcode = errcode
        self.errmsg = errmsg
        self.status = status


class DingTalkSecurityError(DingTalkError):
    """310000: signature mismatch, timestamp out of range, keyword missing or IP not whitelisted."""


class DingTalkRateLimited(DingTalkError):
    """130101: the robot is throttled (more than 20 messages in a minute)."""


def _error(errcode: int, errmsg: str, status: int = 200) -> DingTalkError:
    if errcode == ERR_SECURITY:
        return DingTalkSecurityError(errcode, errmsg, status=status)
    if errcode in (ERR_RATE_LIMIT, ERR_TOO_FAST_ALT):
        return DingTalkRateLimited(errcode, errmsg, status=status)
    return DingTalkError(errcode, errmsg, status=status)


# --------------------------------------------------------------------------- message helpers
def _as_markdown(msg: dict[str, Any]) -> tuple[str, str]:
    """(title, markdown text) of any robot message type, for merging."""
    kind = msg.get("msgtype")
    if kind == "text":
        content = str(msg["text"]["content"])
        return content.split("\n", 1)[0][:40], content
    if kind == "markdown":
        return str(msg["markdown"]["title"]), str(msg["markdown"]["text"])
    if kind == "link":
        link = msg["link"]
        return str(link["title"]), f"[{link['title']}]({link['messageUrl']})\n\n{link.get('text', '')}"
    if kind == "actionCard":
        card = msg["actionCard"]
        buttons = card.get("btns") or ([{"title": card["singleTitle"], "actionURL": card["singleURL"]}]
                                       if card.get("singleURL") else [])
        links = "  ".join(f"[{b['title']}]({b['actionURL']})" for b in buttons)
        return str(card["title"]), f"{card['text']}\n\n{links}".rstrip()
    if kind == "feedCard":
        links = msg["feedCard"]["links"]
        return "links", "\n".join(f"- [{x['title']}]({x['messageURL']})" for x in links)
    raise ValueError(f"unknown DingTalk msgtype {kind!r}")


def merge_messages(messages: list[dict[str, Any]], max_chars: int = MAX_MARKDOWN) -> dict[str, Any]:
    """One markdown message carrying every message in order; @-mentions are united. When the merged text is too
    long the oldest parts are dropped first and the message says how many (the latest state matters most)."""
    if len(messages) == 1:
        return messages[0]
    parts = [_as_markdown(m) for m in messages]
    sections = [f"#### {title}\n{text}" if not text.startswith("#") else text for title, text in parts]
    sep = "\n\n---\n\n"
    omitted = 0
    while len(sections) > 1 and len(sep.join(sections)) > max_chars:
        sections.pop(0)
        omitted += 1
    body = sep.join(sections)
    if omitted:
        body = f"*({omitted} earlier update(s) omitted)*{sep}{body}"
    body = body[-max_chars:]
    merged: dict[str, Any] = {"msgtype": "markdown",
                              "markdown": {"title": f"{len(messages)} updates: {parts[-1][0]}"[:60], "text": body}}
    mobiles: list[str] = []
    user_ids: list[str] = []
    at_all = False
    for m in messages:
        at = m.get("at") or {}
        mobiles += [x for x in at.get("atMobiles", []) if x not in mobiles]
        user_ids += [x for x in at.get("atUserIds", []) if x not in user_ids]
        at_all = at_all or bool(at.get("isAtAll"))
    if mobiles or user_ids or at_all:
        merged["at"] = {"atMobiles": mobiles, "atUserIds": user_ids, "isAtAll": at_all}
        # An @mention only notifies when the mobile appears in the text too.
        missing = [x for x in mobiles if f"@{x}" not in body]
        if missing:
            merged["markdown"]["text"] += "\n\n" + " ".join(f"@{x}" for x in missing)
    return merged


# --------------------------------------------------------------------------- the robot
@dataclass
class _Pending:
    message: dict[str, Any]
    done: asyncio.Future[None]


@dataclass
class RobotStats:
    coalesced: int = 0  # messages that went out merged with others
    throttled: int = 0  # 130101 answers seen


class DingTalkRobot:
    """One custom robot (webhook URL + optional signing secret). `await send(msg)` returns once DingTalk has
    accepted the message, possibly merged with others; run it in a background task from progress loops."""

    def __init__(self, webhook_url: str, secret: str | None, session: aiohttp.ClientSession, *,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep, limit: int = 20, window: float = 60.0,
                 throttle_backoff: float = 600.0, max_throttle_retries: int = 1, timeout: float = 10.0) -> None:
        if not webhook_url.startswith(("https://", "http://")) or "access_token=" not in webhook_url:
            raise ValueError("DingTalk webhook URL must look like https://oapi.dingtalk.com/robot/send?access_token=...")
        if secret is not None and not secret:
            raise ValueError("DingTalk secret is empty; pass None when the robot has no signing")
        if limit < 1 or window <= 0:
            raise ValueError("DingTalk limit must be >= 1 message per positive window")
        self.webhook_url = webhook_url
        self.secret = secret
        self.session = session
        self.clock = clock
        self.sleep = sleep
        self.limit = limit
        self.window = window
        self.throttle_backoff = throttle_backoff  # DingTalk throttles for 10 minutes after a 130101
        self.max_throttle_retries = max_throttle_retries
        self.timeout = timeout
        self.stats = RobotStats()
        self._sent_at: deque[float] = deque()
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._blocked_until = 0.0

    async def send(self, message: dict[str, Any]) -> None:
        _as_markdown(message)  # validates msgtype and fields early, with a clear error
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(message, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        await done

    def _capacity_wait(self) -> float:
        now = self.clock()
        while self._sent_at and self._sent_at[0] <= now - self.window:
            self._sent_at.popleft()
        wait = max(0.0, self._blocked_until - now)
        if len(self._sent_at) >= self.limit:
            wait = max(wait, self._sent_at[0] + self.window - now)
        return wait

    async def _flush_loop(self) -> None:
        throttle_retries = 0
        while self._pending:
            wait = self._capacity_wait()
            if wait > 0:
                await self.sleep(wait)
                continue
            remaining = self.limit - len(self._sent_at)
            if len(self._pending) <= remaining or remaining > 1:
                # While slots are left every message goes out on its own, in order.
                batch, self._pending = self._pending[:1], self._pending[1:]
            else:
                # Last slot of the window and more waiting: merge everything held into that one message.
                batch, self._pending = self._pending, []
            message = merge_messages([p.message for p in batch])
            if len(batch) > 1:
                self.stats.coalesced += len(batch)
            try:
                await self._post(message)
            except DingTalkRateLimited as exc:
                self.stats.throttled += 1
                if throttle_retries >= self.max_throttle_retries:
                    self._fail(batch, exc)
                    continue
                throttle_retries += 1
                # Another sender used the robot, or the server counts differently: hold and merge, then retry.
                self._blocked_until = self.clock() + self.throttle_backoff
                log.warning("DingTalk robot throttled (130101); holding %d message(s) for %.0fs", len(batch),
                            self.throttle_backoff)
                self._pending = batch + self._pending
                continue
            except Exception as exc:
                self._fail(batch, exc)
                continue
            throttle_retries = 0
            for p in batch:
                if not p.done.done():
                    p.done.set_result(None)

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for p in batch:
            if not p.done.done():
                p.done.set_exception(exc)

    async def _post(self, message: dict[str, Any]) -> None:
        now = self.clock()
        url = signed_url(self.webhook_url, self.secret, int(now * 1000))
        self._sent_at.append(now)
        try:
            async with self.session.post(url, data=json.dumps(message, ensure_ascii=False).encode(),
                                         headers={"Content-Type": "application/json; charset=utf-8"},
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DingTalkError(-1, f"request failed: {exc}", status=0) from exc
        try:
            data = json.loads(raw)
        except ValueError:
            raise DingTalkError(-1, f"non-JSON answer: {raw[:200]!r}", status=status) from None
        if not isinstance(data, dict) or "errcode" not in data:
            raise DingTalkError(-1, f"unexpected answer: {raw[:200]!r}", status=status)
        errcode = int(data["errcode"])
        if errcode != 0:
            raise _error(errcode, str(data.get("errmsg", "")), status)
        if status != 200:
            raise DingTalkError(-1, "HTTP error with errcode 0", status=status)
