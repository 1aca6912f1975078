"""Group commit: many concurrent callers share one durable write, so every delivery is stored before its 202."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitter(Generic[T, R]):
    """Collects items while a write is in flight and writes them together in the next one.

    Under load this turns N commits into one per round trip; with a single caller it costs one write, no waiting.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 512) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue `item` for the next write; the future resolves when it is written (or the write fails)."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        return fut

    async def _flush_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                results = await self._write([item for item, _ in batch])
            except BaseException as exc:  # every waiter learns the write failed; nothing is acknowledged
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
