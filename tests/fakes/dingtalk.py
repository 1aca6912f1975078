"""A fake DingTalk custom-robot endpoint (`/robot/send`) on 127.0.0.1 that enforces what the real one does.

Checks: access_token known, timestamp (ms) within 1 h of the server clock, `sign` = quote_plus(base64(HMAC-SHA256)),
JSON body with a known msgtype, and at most 20 messages a minute per robot (then errcode 130101 and a 10-minute
throttle). Errors are HTTP 200 with errcode != 0, as DingTalk answers them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

DEFAULT_TOKEN = "robot-token-1"
DEFAULT_SECRET = "SECtest-secret-0123456789"
MSGTYPES = {"text": "text", "markdown": "markdown", "link": "link", "actionCard": "actionCard",
            "feedCard": "feedCard"}


@dataclass
class Robot:
    token: str
    secret: str | None
    keywords: tuple[str, ...] = ()
    accepted: list[dict[str, Any]] = field(default_factory=list)
    window: deque[float] = field(default_factory=deque)
    throttled_until: float = 0.0


@dataclass(frozen=True)
class DingCall:
    token: str | None
    query: dict[str, str]
    body: Any
    errcode: int
    at: float


class FakeDingTalk(LoopbackServer):
    """`async with FakeDingTalk() as ding:`; `ding.webhook_url()` is a robot URL, `ding.secret` its SEC secret."""

    def __init__(self, *, clock: Callable[[], float] | None = None, limit: int = 20, window: float = 60.0,
                 throttle: float = 600.0) -> None:
        super().__init__()
        self.clock = clock or time.time
        self.limit = limit
        self.window = window
        self.throttle = throttle
        self.robots: dict[str, Robot] = {}
        self.calls: list[DingCall] = []
        self._forced: list[list[Any]] = []  # [remaining, errcode, errmsg]
        self.add_robot(DEFAULT_TOKEN, DEFAULT_SECRET)

    @property
    def secret(self) -> str:
        return DEFAULT_SECRET

    def webhook_url(self, token: str = DEFAULT_TOKEN) -> str:
        return f"http://127.0.0.1:{self.port}/robot/send?access_token={token}"

    def add_robot(self, token: str, secret: str | None, keywords: tuple[str, ...] = ()) -> Robot:
        robot = Robot(token, secret, keywords)
        self.robots[token] = robot
        return robot

    def messages(self, token: str = DEFAULT_TOKEN) -> list[dict[str, Any]]:
        return self.robots[token].accepted

    def fail_next(self, errcode: int, errmsg: str, times: int = 1) -> None:
        self._forced.append([times, errcode, errmsg])

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/robot/send", self._handle)
        return app

    def _answer(self, token: str | None, query: dict[str, str], body: Any, errcode: int,
                errmsg: str) -> web.Response:
        self.calls.append(DingCall(token, query, body, errcode, self.clock()))
        return web.json_response({"errcode": errcode, "errmsg": errmsg})

    @staticmethod
    def expected_sign(secret: str, timestamp: str) -> str:
        digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    async def _handle(self, request: web.Request) -> web.Response:
        # request.query is already percent-decoded, so `sign` compares against the raw base64.
        query = dict(request.query)
        token = query.get("access_token")
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        if request.method != "POST":
            return self._answer(token, query, body, 43002, "需要POST请求")
        if not token:
            return self._answer(token, query, body, 40035, "缺少参数 access_token")
        robot = self.robots.get(token)
        if robot is None:
            return self._answer(token, query, body, 300005, "token is not exist")
        if robot.secret is not None:
            ts, sig = query.get("timestamp", ""), query.get("sign", "")
            if not ts.isdigit() or abs(self.clock() * 1000 - int(ts)) > 3600_000:
                return self._answer(token, query, body, 310000, "invalid timestamp")
            if not hmac.compare_digest(sig, self.expected_sign(robot.secret, ts)):
                return self._answer(token, query, body, 310000, "sign not match")
        if not isinstance(body, dict) or body.get("msgtype") not in MSGTYPES:
            return self._answer(token, query, body, 40035, "缺少参数 json")
        payload = body.get(MSGTYPES[body["msgtype"]])
        if not isinstance(payload, dict):
            return self._answer(token, query, body, 40035, f"缺少参数 {body['msgtype']}")
        if robot.keywords and not any(k in json.dumps(payload, ensure_ascii=False) for k in robot.keywords):
            return self._answer(token, query, body, 310000, "keywords not in content")
        for forced in self._forced:
            if forced[0] > 0:
                forced[0] -= 1
                return self._answer(token, query, body, forced[1], forced[2])
        now = self.clock()
        if now < robot.throttled_until:
            return self._answer(token, query, body, 130101, "send too fast, exceed 20 times per minute")
        while robot.window and robot.window[0] <= now - self.window:
            robot.window.popleft()
        if len(robot.window) >= self.limit:
            robot.throttled_until = now + self.throttle
            return self._answer(token, query, body, 130101, "send too fast, exceed 20 times per minute")
        robot.window.append(now)
        robot.accepted.append(body)
        return self._answer(token, query, body, 0, "ok")
