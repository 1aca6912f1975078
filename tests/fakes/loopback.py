"""The one way a fake network service runs in the tests: an aiohttp app on a free port of 127.0.0.1.

A subclass builds its `web.Application` in `make_app`; the base starts and stops it. Async tests use
`async with Fake() as fake:` (served by the test's own loop); synchronous tests, and code under test that blocks
(the runner agent, in its own thread or process), use `with Fake() as fake:`, which serves the app from an event
loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Self

from aiohttp import web


class LoopbackServer:
    """An aiohttp app on 127.0.0.1; `port` is known once it has started (0 asks the system for a free one)."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ in the caller's event loop
    async def start(self, port: int | None = None) -> Self:
        """Serve on `port` (default: the port of an earlier start, so a restarted fake keeps its URL)."""
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port if port is None else port)
        await site.start()
        server: Any = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ in a thread of its own
    def __enter__(self) -> Self:
        started: Future[None] = Future()
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # the caller sees why the fake could not start
                started.set_exception(exc)
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread_loop = loop
        self._thread = threading.Thread(target=serve, name=f"fake-{type(self).__name__}", daemon=True)
        self._thread.start()
        started.result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread_loop is not None and self._thread is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            self._thread.join(timeout=30)
            self._thread = self._thread_loop = None
