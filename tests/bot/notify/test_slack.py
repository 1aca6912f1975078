"""SlackNotifier (slack_sdk AsyncWebClient) against FakeSlack: post, update, errors and 429 handling."""

from __future__ import annotations

import time

import aiohttp
import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.notify.slack import SlackError, SlackNotifier
from tests.fakes.slack import FakeSlack

BLOCKS = [{"type": "header", "text": {"type": "plain_text", "text": "tunebot run #12"}},
          {"type": "section", "text": {"type": "mrkdwn", "text": "*train* qwen-7b: step 10/100"}}]


def _notifier(slack: FakeSlack, session: aiohttp.ClientSession, sleeps: list[float] | None = None,
              **kw: object) -> SlackNotifier:
    async def fake_sleep(s: float) -> None:
        if sleeps is not None:
            sleeps.append(s)

    return SlackNotifier(slack.token, session=session, base_url=slack.base_url, sleep=fake_sleep, **kw)  # type: ignore[arg-type]


async def test_post_then_update_by_channel_name(fake_slack: FakeSlack, http_session: aiohttp.ClientSession) -> None:
    slack = _notifier(fake_slack, http_session)
    ts = await slack.post("#tunebot", "run 12 queued", BLOCKS)
    assert isinstance(ts, str) and len(ts) == 17 and ts[10] == "."
    reply = await slack.post("#tunebot", "details", thread_ts=ts)
    await slack.update("#tunebot", ts, "run 12 done", BLOCKS[:1])
    [msg, threaded] = fake_slack.in_channel("tunebot")
    assert (msg.text, msg.blocks, msg.channel) == ("run 12 done", BLOCKS[:1], "C0TUNEBOT1")
    assert msg.updates[0]["channel"] == "C0TUNEBOT1"  # the name was mapped to the ID chat.update needs
    assert threaded.thread_ts == ts and threaded.ts == reply
    call = fake_slack.calls[0]
    assert call.authorization == f"Bearer {fake_slack.token}" and call.body["blocks"] == BLOCKS
    assert "thread_ts" not in call.body  # None values are not sent


async def test_ok_false_is_a_typed_error(fake_slack: FakeSlack, http_session: aiohttp.ClientSession) -> None:
    slack = _notifier(fake_slack, http_session)
    with pytest.raises(SlackError) as info:
        await slack.post("#nowhere", "x")
    assert info.value.code == "channel_not_found" and info.value.method == "chat.postMessage"
    fake_slack.fail_next("fatal_error")
    with pytest.raises(SlackError, match="fatal_error"):
        await slack.post("#tunebot", "x")
    with pytest.raises(SlackError) as upd:
        await slack.update("C0TUNEBOT1", "1700000000.000001", "x")
    assert upd.value.code == "message_not_found"
    bad = SlackNotifier("xoxb-wrong", session=http_session, base_url=fake_slack.base_url)
    with pytest.raises(SlackError) as auth:
        await bad.post("#tunebot", "x")
    assert auth.value.code == "invalid_auth"
    assert fake_slack.messages == []


async def test_429_is_retried_after_retry_after(fake_slack: FakeSlack, http_session: aiohttp.ClientSession) -> None:
    sleeps: list[float] = []
    slack = _notifier(fake_slack, http_session, sleeps)
    fake_slack.rate_limit_next("chat.postMessage", times=2, retry_after=3)
    await slack.post("#tunebot", "after two 429s")
    assert len(sleeps) == 2 and all(3.0 <= s < 3.3 for s in sleeps)
    assert [c.status for c in fake_slack.calls] == [429, 429, 200]
    assert len(fake_slack.messages) == 1


async def test_429_beyond_the_bounds_raises_ratelimited(fake_slack: FakeSlack,
                                                        http_session: aiohttp.ClientSession) -> None:
    sleeps: list[float] = []
    slack = _notifier(fake_slack, http_session, sleeps, max_rate_limit_retries=1)
    fake_slack.rate_limit_next("chat.postMessage", times=2, retry_after=1)
    with pytest.raises(SlackError) as info:
        await slack.post("#tunebot", "x")
    assert (info.value.code, info.value.status, info.value.retry_after) == ("ratelimited", 429, 1.0)
    assert len(sleeps) == 1
    long_wait = _notifier(fake_slack, http_session, sleeps, max_rate_limit_wait=10)
    fake_slack.rate_limit_next("chat.postMessage", times=1, retry_after=120)
    sleeps.clear()
    with pytest.raises(SlackError, match="ratelimited"):
        await long_wait.post("#tunebot", "x")
    assert sleeps == []  # a two-minute Retry-After is not slept in the notifier


async def test_real_wait_honours_retry_after(fake_slack: FakeSlack, http_session: aiohttp.ClientSession) -> None:
    slack = SlackNotifier(fake_slack.token, session=http_session, base_url=fake_slack.base_url)
    fake_slack.rate_limit_next("chat.update", retry_after=1)
    ts = await slack.post("#general", "x")
    t0 = time.monotonic()
    await slack.update("#general", ts, "y")
    assert time.monotonic() - t0 >= 1.0
    assert fake_slack.in_channel("general")[0].text == "y"


async def test_stock_slack_sdk_handler_honours_retry_after(fake_slack: FakeSlack,
                                                           http_session: aiohttp.ClientSession) -> None:
    """Verification of slack_sdk itself: AsyncRateLimitErrorRetryHandler sleeps Retry-After (+ <1 s jitter)."""
    client = AsyncWebClient(token=fake_slack.token, base_url=fake_slack.base_url, session=http_session,
                            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    fake_slack.rate_limit_next("chat.postMessage", retry_after=1)
    t0 = time.monotonic()
    resp = await client.chat_postMessage(channel="#tunebot", text="x")
    elapsed = time.monotonic() - t0
    assert resp["ok"] and 1.0 <= elapsed < 2.5


async def test_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        SlackNotifier("")
