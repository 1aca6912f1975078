"""Decides when a frequently changing message (a run card, a chat message) is actually written: at most once per
interval per key, and the final state always (GitHub's secondary limits forbid an edit per progress line)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Writer = Callable[[str], Awaitable[None]]


class _Slot:
    __slots__ = ("last_write", "pending", "timer")

    def __init__(self) -> None:
        self.last_write = float("-inf")
        self.pending: Writer | None = None
        self.timer: asyncio.TimerHandle | None = None


class Coalescer:
    """`update(key, write)` writes now if the key was quiet for `interval` seconds, else remembers only the latest
    write and performs it when the interval has passed. `update(..., final=True)` writes at once."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.writes = 0
        self.skipped = 0

    async def update(self, key: str, write: Writer, *, final: bool = False) -> None:
        slot = self._slots.setdefault(key, _Slot())
        now = self._clock()
        if final or now - slot.last_write >= self.interval:
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            slot.pending = None
            slot.last_write = now
            await self._run(key, write)
            if final:
                self._slots.pop(key, None)
            return
        if slot.pending is not None:
            self.skipped += 1
        slot.pending = write
        if slot.timer is None:
            delay = max(0.0, slot.last_write + self.interval - now)
            slot.timer = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.timer = None
        write, slot.pending = slot.pending, None
        if write is None:
            return
        slot.last_write = self._clock()
        task = asyncio.create_task(self._run(key, write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, write: Writer) -> None:
        try:
            await write(key)
            self.writes += 1
        except Exception:  # a failed edit must never break the event flow; the next update retries
            log.exception("coalesced write for %s failed", key)

    async def flush(self) -> None:
        """Write every pending update now (shutdown)."""
        for key, slot in list(self._slots.items()):
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            write, slot.pending = slot.pending, None
            if write is not None:
                await self._run(key, write)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
