"""DingTalk robot client against FakeDingTalk: signing vectors, errcode handling and the 20-a-minute limiter."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from bot.notify.dingtalk import (
    DingTalkError,
    DingTalkRateLimited,
    DingTalkRobot,
    DingTalkSecurityError,
    merge_messages,
    sign,
    signed_url,
)
from tests.fakes.dingtalk import FakeDingTalk
from tests.paths import FIXTURES

VECTORS = json.loads((FIXTURES / "dingtalk" / "sign_vectors.json").read_text())["vectors"]


def text_message(content: str, *, at_mobiles: list[str] | None = None) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content},
            **({"at": {"atMobiles": at_mobiles}} if at_mobiles else {})}


def markdown_message(title: str, text: str, *, at_mobiles: list[str] | None = None) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text},
            **({"at": {"atMobiles": at_mobiles}} if at_mobiles else {})}


class Clock:
    """A shared fake clock; `sleep` advances it instead of waiting."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_the_vector_file_holds_vectors() -> None:
    # An empty file would turn test_sign_vectors into a silent skip.
    assert len(VECTORS) >= 4 and len({v["timestamp"] for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["timestamp"])
def test_sign_vectors(vector: dict[str, str]) -> None:
    assert sign(vector["secret"], vector["timestamp"]) == vector["sign_quote_plus"]
    assert sign(vector["secret"], int(vector["timestamp"])) == vector["sign_quote_plus"]
    url = signed_url("https://oapi.dingtalk.com/robot/send?access_token=XXXXXX", vector["secret"],
                     int(vector["timestamp"]))
    assert url == vector["signed_url"]


def test_signed_url_without_secret_and_with_stale_params() -> None:
    base = "https://oapi.dingtalk.com/robot/send?access_token=abc"
    assert signed_url(base, None, 1) == base
    resigned = signed_url(base + "&timestamp=1&sign=old", "s", 5)
    assert resigned.count("timestamp=") == 1 and "sign=old" not in resigned


async def _robot(ding: FakeDingTalk, session: aiohttp.ClientSession, clock: Clock, **kw: Any) -> DingTalkRobot:
    return DingTalkRobot(ding.webhook_url(), ding.secret, session, clock=clock, sleep=clock.sleep, **kw)


async def test_signed_send_is_accepted(http_session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeDingTalk(clock=clock) as ding:
        robot = await _robot(ding, http_session, clock)
        await robot.send(markdown_message("训练完成", "#### qwen-7b\n> CMMLU 52.1 → 54.3", at_mobiles=["150XXXXXXXX"]))
        await robot.send(text_message("我就是我, 是不一样的烟火"))
        [md, txt] = ding.messages()
        assert md["markdown"]["title"] == "训练完成" and md["at"]["atMobiles"] == ["150XXXXXXXX"]
        assert txt == {"msgtype": "text", "text": {"content": "我就是我, 是不一样的烟火"}}
        assert ding.calls[0].query["timestamp"] == str(int(clock.now * 1000))


async def test_security_errors_are_typed(http_session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeDingTalk(clock=clock) as ding:
        wrong = DingTalkRobot(ding.webhook_url(), "SECwrong", http_session, clock=clock, sleep=clock.sleep)
        with pytest.raises(DingTalkSecurityError) as info:
            await wrong.send(text_message("x"))
        assert info.value.errcode == 310000 and "sign not match" in info.value.errmsg
        skewed = Clock(clock.now - 3601)  # our clock an hour and a second behind DingTalk's
        late = DingTalkRobot(ding.webhook_url(), ding.secret, http_session, clock=skewed, sleep=skewed.sleep)
        with pytest.raises(DingTalkSecurityError, match="invalid timestamp"):
            await late.send(text_message("x"))
        unknown = DingTalkRobot(ding.webhook_url("nope"), ding.secret, http_session, clock=clock)
        with pytest.raises(DingTalkError) as tok:
            await unknown.send(text_message("x"))
        assert tok.value.errcode == 300005
        assert ding.messages() == []


async def test_bad_messages_and_urls_fail_early(http_session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="access_token"):
        DingTalkRobot("https://oapi.dingtalk.com/robot/send", None, http_session)
    with pytest.raises(ValueError, match="secret is empty"):
        DingTalkRobot("https://x/robot/send?access_token=a", "", http_session)
    robot = DingTalkRobot("https://x/robot/send?access_token=a", None, http_session)
    with pytest.raises(ValueError, match="unknown DingTalk msgtype"):
        await robot.send({"msgtype": "image", "image": {"picURL": "x"}})


async def test_limiter_coalesces_instead_of_dropping(http_session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeDingTalk(clock=clock) as ding:
        robot = await _robot(ding, http_session, clock)
        await asyncio.gather(*[robot.send(text_message(f"step {i}")) for i in range(45)])
        accepted = ding.messages()
        # 19 slots go to single messages; the 20th carries the other 26 merged, all within the first minute.
        assert len(accepted) == 20 and clock.sleeps == []
        assert [m["text"]["content"] for m in accepted[:19]] == [f"step {i}" for i in range(19)]
        merged = accepted[19]["markdown"]["text"]
        assert all(f"step {i}" in merged for i in range(19, 45))
        assert merged.index("step 19") < merged.index("step 44")
        assert robot.stats.coalesced == 26
        # The minute is used up: the next messages wait for the window, then go out one by one.
        clock.now += 10
        await asyncio.gather(*[robot.send(text_message(f"late {i}")) for i in range(3)])
        assert 49.0 <= sum(clock.sleeps) <= 51.0
        assert [m["text"]["content"] for m in ding.messages()[20:]] == ["late 0", "late 1", "late 2"]
        assert all(c.errcode == 0 for c in ding.calls), "the server never had to throttle us"


async def test_sequential_sends_over_the_limit_merge_the_backlog(http_session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeDingTalk(clock=clock) as ding:
        robot = await _robot(ding, http_session, clock)
        for i in range(20):
            await robot.send(text_message(f"m{i}"))
        backlog = [asyncio.create_task(robot.send(text_message(f"b{i}"))) for i in range(30)]
        await asyncio.gather(*backlog)
        sent = ding.messages()
        assert len(sent) == 40 and all(c.errcode == 0 for c in ding.calls)
        assert [m["text"]["content"] for m in sent[20:39]] == [f"b{i}" for i in range(19)]
        assert all(f"b{i}" in sent[39]["markdown"]["text"] for i in range(19, 30))


async def test_server_throttle_130101_holds_and_retries(http_session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeDingTalk(clock=clock) as ding:
        robot = await _robot(ding, http_session, clock, throttle_backoff=600.0)
        ding.fail_next(130101, "send too fast, exceed 20 times per minute")
        await robot.send(text_message("held then delivered"))
        assert [c.errcode for c in ding.calls] == [130101, 0]
        assert clock.sleeps == [600.0] and robot.stats.throttled == 1
        assert ding.messages()[0]["text"]["content"] == "held then delivered"
        ding.fail_next(130101, "send too fast", times=5)
        with pytest.raises(DingTalkRateLimited) as info:
            await robot.send(text_message("gives up after the bounded retry"))
        assert info.value.errcode == 130101


async def test_fake_throttles_a_client_without_limiter(http_session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeDingTalk(clock=clock) as ding:
        robot = await _robot(ding, http_session, clock, limit=1000, max_throttle_retries=0)
        for i in range(20):
            await robot.send(text_message(f"m{i}"))
        with pytest.raises(DingTalkRateLimited, match="exceed 20 times per minute"):
            await robot.send(text_message("m20"))
        clock.now += 120  # a minute later the fake still throttles (10 minutes)
        with pytest.raises(DingTalkRateLimited):
            await robot.send(text_message("m21"))
        assert len(ding.messages()) == 20


def test_merge_keeps_order_mentions_and_tail() -> None:
    msgs = [text_message("a", at_mobiles=["1"]), markdown_message("T", "#### T\nbody", at_mobiles=["2"]),
            {"msgtype": "link", "link": {"title": "L", "text": "t", "messageUrl": "https://x", "picUrl": ""}}]
    merged = merge_messages(msgs)
    text = merged["markdown"]["text"]
    assert text.index("a") < text.index("body") < text.index("[L](https://x)")
    assert merged["at"]["atMobiles"] == ["1", "2"] and "@1" in text and "@2" in text
    big = merge_messages([text_message(f"{i:04d} " + "x" * 500) for i in range(100)], max_chars=5000)
    body = big["markdown"]["text"]
    assert len(body) <= 5000 + 200 and "0099" in body and "0000 " not in body and "omitted" in body
