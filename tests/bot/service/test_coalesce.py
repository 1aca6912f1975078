"""Run-card edits are coalesced: at most one per interval per run, and the final state is always written."""

import asyncio

from bot.coalesce import Coalescer


async def test_coalescing_keeps_latest_and_always_writes_final() -> None:
    written: list[str] = []

    def writer(text: str):
        async def write(key: str) -> None:
            written.append(text)
        return write

    c = Coalescer(interval=0.2)
    await c.update("run1", writer("step 1"))  # first write goes out at once
    for i in range(2, 30):
        await c.update("run1", writer(f"step {i}"))  # all within the interval: only the latest survives
    assert written == ["step 1"]
    await asyncio.sleep(0.3)
    assert written == ["step 1", "step 29"]
    await c.update("run1", writer("step 30"))
    await c.update("run1", writer("finished"), final=True)  # final bypasses the interval
    assert written[-1] == "finished"
    assert c.skipped >= 27


async def test_flush_writes_pending_and_failures_do_not_raise() -> None:
    written: list[str] = []

    async def boom(key: str) -> None:
        raise RuntimeError("GitHub 502")

    async def ok(key: str) -> None:
        written.append(key)

    c = Coalescer(interval=60)
    await c.update("a", boom)  # failure is logged, not raised
    await c.update("a", ok)  # pending (interval not over)
    assert written == []
    await c.flush()
    assert written == ["a"]
