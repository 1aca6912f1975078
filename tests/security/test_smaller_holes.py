"""Finding 7 (issue 11): the smaller holes, each played as an attack against the running service."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

from bot.github.port import Forbidden
from tests.bot.service.conftest import REPO


async def test_ok_to_train_with_a_short_sha_is_refused_and_grants_nothing(memory_bot: Any) -> None:
    bot = await memory_bot()
    head = bot.repo.add_pull(2, head_repo="eve/Hello-World", author="eve").head_sha
    await bot.comment(f"/ok-to-train {head[:7]}", number=2)
    await bot.settle()
    assert "is a short SHA" in bot.bot_comments(2)[-1]
    assert await bot.service.store.grant_for(REPO, 2, head) is None
    await bot.comment(f"/ok-to-train {head}", number=2)
    await bot.settle()
    assert await bot.service.store.grant_for(REPO, 2, head) is not None


async def _raw_callback(bot: Any, run_id: str, body: bytes, signature: bytes) -> int:
    """POST with a header of raw bytes, as a hostile client can (aiohttp's client would refuse to send it)."""
    url = urlparse(bot.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"POST /api/runs/" + run_id.encode() + b"/events HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nX-Tunebot-Signature-256: " + signature + b"\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_a_non_ascii_callback_signature_is_a_401_not_a_500(make_bot: Any) -> None:
    bot = await make_bot()
    rid = (await bot.start_run()).run_id
    body = b'{"v": 1, "run_id": "' + rid.encode() + b'", "seq": 0, "ts": 1.0, "type": "heartbeat"}'
    assert await _raw_callback(bot, rid, body, "sha256=é".encode() + b"0" * 63) == 401
    assert await _raw_callback(bot, rid, body, b"sha256=\xff\xfe" + b"0" * 62) == 401


async def test_events_after_a_run_finished_are_refused_and_not_stored(make_bot: Any) -> None:
    bot = await make_bot()
    run = await bot.start_run()
    rid = run.run_id
    await bot.post_event(rid, run.run_token, 0, "finished", status="succeeded")
    await bot.settle()
    status, _ = await bot.post_event(rid, run.run_token, 1, "eval_result", benchmark="cmmlu", score=1.0, n=1,
                                     correct=1)
    assert status == 409
    assert [e.seq for e in await bot.service.store.events_after(rid, -1)] == [0]
    assert await bot.post_event(rid, run.run_token, 0, "finished", status="succeeded") == (200, '{"status": '
                                                                                             '"duplicate"}')


async def test_a_replayed_pull_request_event_does_not_train_again(memory_bot: Any) -> None:
    """The delivery id is not covered by the webhook's HMAC: a replay with a new id is the same event."""
    bot = await memory_bot(policy="version: 1\nauto_train: true\n")
    pull = bot.repo.add_pull(3, author="Codertocat", files=["configs/tiny.yaml"])
    bot.repo.add_file("configs/tiny.yaml", "tunebot: train\nmodel: tiny\nbenchmarks: none\n", ref=pull.head_sha)
    for delivery in ("first-delivery-id", "replayed-with-a-new-id"):
        assert (await bot.pull_request("opened", 3, pull.head_sha, delivery_id=delivery)).status == 202
        await bot.settle()
    assert len(bot.dispatches()) == 1


async def test_an_unreadable_policy_file_starts_nothing(memory_bot: Any) -> None:
    """Fail closed: a .tunebot.yml that GitHub would not give us may hold restrictions the defaults lack."""
    bot = await memory_bot(policy="version: 1\nmodels:\n  allowed: [tiny]\n")
    bot.github.fail_next("get_file", Forbidden(403, "Resource not accessible by integration"), times=50)
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    assert bot.dispatches() == []
    assert "could not be read from GitHub" in bot.bot_comments()[-1]
    assert ("GET", f"/repos/{REPO}/contents/.tunebot.yml", None) in bot.github.calls  # it was asked for, and refused


async def _failed_fork_run(bot: Any) -> str:
    bot.repo.add_pull(2, head_repo="eve/Hello-World", author="eve")
    bot.repo.set_permission("eve", "write")
    await bot.comment("/ok-to-train", number=2)  # Codertocat (admin) approves eve's head
    await bot.settle()
    run = await bot.start_run(number=2, login="eve", association="CONTRIBUTOR")
    await bot.post_event(run.run_id, run.run_token, 0, "finished", status="failed", reason="OOM")
    await bot.settle()
    return run.run_id


async def test_retry_typed_elsewhere_is_judged_on_the_runs_own_fork_pr(memory_bot: Any) -> None:
    bot = await memory_bot()
    rid = await _failed_fork_run(bot)
    bot.repo.pulls[2].head_sha = "e" * 40  # eve pushed again: the approval does not cover the new head
    bot.repo.add_pull(5, author="eve")  # a PR of this repository, where no approval is needed
    await bot.comment(f"/retry {rid}", number=5, login="eve", association="CONTRIBUTOR")
    await bot.settle()
    assert len(bot.dispatches()) == 1
    assert "that run was for commit" in bot.bot_comments(5)[-1]


async def test_retry_of_an_approved_commit_is_refused_after_a_new_push(memory_bot: Any) -> None:
    bot = await memory_bot()
    rid = await _failed_fork_run(bot)
    new_head = "e" * 40
    bot.repo.pulls[2].head_sha = new_head
    await bot.comment(f"/ok-to-train {new_head}", number=2)  # the new head is approved ...
    await bot.settle()
    await bot.comment(f"/retry {rid}", number=2, login="eve", association="CONTRIBUTOR")
    await bot.settle()
    assert len(bot.dispatches()) == 1  # ... but the retried run is of the old, no longer approved commit
    assert "that run was for commit" in bot.bot_comments(2)[-1]
