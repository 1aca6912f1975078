"""Finding 7 (issue 11): /metrics and /healthz tell the internet nothing it should not know."""

from __future__ import annotations

from typing import Any

from bot.config import Secret


async def test_metrics_need_the_bearer_token_when_one_is_set(make_bot: Any) -> None:
    bot = await make_bot(metrics_token=Secret("scrape-me"))
    async with bot.session.get(f"{bot.url}/metrics") as resp:
        assert resp.status == 401 and "tunebot_" not in await resp.text()
    async with bot.session.get(f"{bot.url}/metrics", headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 401
    async with bot.session.get(f"{bot.url}/metrics", headers={"Authorization": "Bearer scrape-me"}) as resp:
        assert resp.status == 200 and "tunebot_process_resident_memory_bytes" in await resp.text()


async def test_metrics_stay_open_without_a_token(make_bot: Any) -> None:
    bot = await make_bot()
    async with bot.session.get(f"{bot.url}/metrics") as resp:
        assert resp.status == 200


async def test_healthz_does_not_say_why_the_store_failed(make_bot: Any) -> None:
    bot = await make_bot()
    secret_detail = "connection to postgres://admin@db.internal:5432 refused"

    async def broken() -> None:
        raise RuntimeError(secret_detail)

    bot.service.store.ping = broken  # the store's own failure, as a driver would raise it
    async with bot.session.get(f"{bot.url}/healthz") as resp:
        body = await resp.text()
    assert resp.status == 503 and "db.internal" not in body and "unavailable" in body
