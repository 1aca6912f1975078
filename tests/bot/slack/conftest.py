"""A running tunebot with the Slack app mode on: the real service against the fake GitHub (tests/bot/service) and a
FakeSlack on 127.0.0.1, driven by Slack requests built and signed the way Slack builds and signs them."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.config import Secret
from bot.slack_app import SLACK_KEY, SlackBridge
from tests.bot.service.conftest import Bot, make_bot  # noqa: F401  (make_bot is the fixture this one builds on)
from tests.fakes.slack import FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the shape of a Slack signing secret (32 hex-ish chars)
ALICE = "U0ALICE0001"  # mapped to Codertocat, admin on the repo
MALLORY = "U0MALLORY01"  # mapped to mallory, read-only on the repo
EVE = "U0EVE000001"  # not mapped
CHANNEL = "C0TUNEBOT1"  # FakeSlack's #tunebot
USER_MAP = {ALICE: "Codertocat", MALLORY: "mallory"}


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What Slack sends in X-Slack-Signature: v0= + hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class SlackReply:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class SlackBot:
    bot: Bot
    slack: FakeSlack
    counter: Any

    @property
    def bridge(self) -> SlackBridge:
        app = self.bot.runner.app
        assert app is not None
        return app[SLACK_KEY]

    async def post_signed(self, path: str, body: bytes, content_type: str, *, secret: str = SIGNING_SECRET,
                          timestamp: int | None = None, headers: dict[str, str] | None = None) -> SlackReply:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        hdrs = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": slack_signature(secret, ts, body), **(headers or {})}
        async with self.bot.session.post(f"{self.bot.url}{path}", data=body, headers=hdrs) as resp:
            return SlackReply(resp.status, await resp.text())

    async def command(self, text: str, *, user: str = ALICE, channel: str = CHANNEL, command: str = "/tunebot",
                      secret: str = SIGNING_SECRET, timestamp: int | None = None) -> SlackReply:
        """A slash command exactly as Slack POSTs it: application/x-www-form-urlencoded."""
        n = next(self.counter)
        form = {
            "token": "gIkuvaNzQIHg97ATvDxqgjtO",  # the deprecated verification token: present, never trusted
            "team_id": self.slack.team_id, "team_domain": "tunebot-test",
            "channel_id": channel, "channel_name": "tunebot",
            "user_id": user, "user_name": user.lower(),
            "command": command, "text": text,
            "api_app_id": "A0TUNEBOT01", "is_enterprise_install": "false",
            "response_url": self.slack.new_response_url(),
            "trigger_id": f"13345224609.738474920.8088930838d88f008e0{n:03d}",
        }
        return await self.post_signed("/slack/commands", urlencode(form).encode(), "application/x-www-form-urlencoded",
                                secret=secret, timestamp=timestamp)

    async def mention(self, text: str, *, user: str = ALICE, channel: str = CHANNEL, thread_ts: str | None = None,
                      event_id: str | None = None, ts: str | None = None,
                      retry: int | None = None) -> tuple[SlackReply, str]:
        """An Events API `event_callback` carrying an `app_mention`, as JSON; returns the reply and the event ts."""
        n = next(self.counter)
        ts = ts or f"{int(time.time())}.{n:06d}"
        event: dict[str, Any] = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel,
                                 "event_ts": ts, "team": self.slack.team_id,
                                 "blocks": [{"type": "rich_text", "block_id": "b1", "elements": []}]}
        if thread_ts:
            event["thread_ts"] = thread_ts
        body = {"token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": self.slack.team_id, "api_app_id": "A0TUNEBOT01",
                "event": event, "type": "event_callback", "event_id": event_id or f"Ev0TUNEBOT{n:04d}",
                "event_time": int(float(ts)),
                "authorizations": [{"enterprise_id": None, "team_id": self.slack.team_id,
                                    "user_id": self.slack.bot_user_id, "is_bot": True,
                                    "is_enterprise_install": False}],
                "is_ext_shared_channel": False, "event_context": "4-eyJldCI6ImFwcF9tZW50aW9uIn0"}
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        reply = await self.post_signed("/slack/events", json.dumps(body).encode(), "application/json",
                                 secret=SIGNING_SECRET, timestamp=None, headers=headers)
        return reply, ts

    async def settle(self) -> None:
        """Wait for acknowledged Slack commands to finish, then for the service (deliveries, outbox) to settle."""
        await self.bridge.settle()
        await self.bot.settle()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as slack:
        yield slack


@pytest.fixture
async def make_slack_bot(make_bot: Callable[..., Awaitable[Bot]],  # noqa: F811
                         fake_slack: FakeSlack) -> Callable[..., Awaitable[SlackBot]]:
    async def make(**config: Any) -> SlackBot:
        settings: dict[str, Any] = {"slack_signing_secret": Secret(SIGNING_SECRET),
                                    "slack_token": Secret(fake_slack.token), "slack_api_url": fake_slack.base_url,
                                    "slack_user_map": dict(USER_MAP)}
        settings.update(config)
        bot = await make_bot(**settings)
        return SlackBot(bot, fake_slack, itertools.count(1))

    return make
