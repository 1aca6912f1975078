"""The read-only web view served by `tunebot serve` under /ui/: each repository's runs, run pages, the default
branch's score history and the leaderboard, from the store; mounted as a sub-application with its own session
middleware, so the webhook path is untouched."""

from __future__ import annotations

from aiohttp import web

from bot.service import Service

from .pages import build_ui


def mount_web(app: web.Application, service: Service) -> web.Application:
    """Add the web view to `app` at /ui/ and return its sub-application."""
    ui = build_ui(service)
    app.add_subapp("/ui/", ui)

    async def to_ui(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    app.router.add_get("/ui", to_ui)
    return ui


__all__ = ["mount_web"]
