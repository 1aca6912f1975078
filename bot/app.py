"""Owns the aiohttp application: its routes, its start-up and shutdown, and how the service is built from its
configuration (the slow work after a webhook's answer is `runtime.py`'s)."""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.chat import Chat
from bot.config import Config
from bot.front import track_requests
from bot.github.port import GitHubError
from bot.github.pygithub_impl import PyGithubPort
from bot.intake import Intake
from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.service import Service
from bot.store import NewDelivery, Store
from configs import BENCH_DATA_DIR, load_catalog, with_pack_digests

log = logging.getLogger(__name__)

SERVICE_KEY: web.AppKey[Service] = web.AppKey("service", Service)
RUNTIME_KEY: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
INTAKE_KEY: web.AppKey[Intake] = web.AppKey("intake", Intake)


def _new_delivery(*, source: str, delivery_id: str, event: str, body: bytes, received_at: float) -> NewDelivery:
    return NewDelivery(source=source, delivery_id=delivery_id, event=event, body=body,
                       received_at=datetime.fromtimestamp(received_at, UTC))


def build_app(service: Service) -> web.Application:
    config: Config = service.config
    metrics = service.metrics
    runtime = Runtime(service, config, metrics)
    intake = Intake(secret=config.webhook_secret.get().encode("utf-8"), record_batch=runtime.record,
                    make_delivery=_new_delivery, metrics=metrics, max_body_bytes=config.max_body_bytes)
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[track_requests])
    app[SERVICE_KEY] = service
    app[RUNTIME_KEY] = runtime
    app[INTAKE_KEY] = intake
    started = time.time()

    async def callback(request: web.Request) -> web.Response:
        body = await request.read()
        status, text = await service.accept_callback(request.match_info["run_id"], body,
                                                     request.headers.get("X-Tunebot-Signature-256"))
        runtime.outbox_wakeup.set()
        return web.json_response({"status": text}, status=status)

    async def healthz(request: web.Request) -> web.Response:
        try:
            await service.store.ping()
        except Exception:
            # The reason goes to the log, not to whoever asks: it can name hosts, users and paths.
            log.exception("health check: the store does not answer")
            return web.json_response({"ok": False, "store": "unavailable"}, status=503)
        return web.json_response({"ok": True, "uptime_s": round(time.time() - started, 1),
                                  "accepting": intake.accepting})

    async def metrics_route(request: web.Request) -> web.Response:
        token = service.config.metrics_token
        if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode("utf-8", "replace"),
                                             f"Bearer {token.get()}".encode()):
            return web.Response(status=401, text="metrics need a bearer token",
                                headers={"WWW-Authenticate": 'Bearer realm="tunebot-metrics"'})
        with contextlib.suppress(Exception):
            metrics.set("process_resident_memory_bytes", _rss_bytes())
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app.router.add_post("/webhook", intake.handle)
    async def checkpoint_upload(request: web.Request) -> web.Response:
        step = request.match_info["step"]
        if not step.isdigit() or not 0 < int(step) < 10**9:
            return web.json_response({"status": "bad step"}, status=400)
        # Streamed to disk (the app's body limit is for webhooks); the size cap is the checkpoint limit.
        status, text = await service.jobs.checkpoints.receive(
            request.match_info["run_id"], int(step), request.content.iter_chunked(1 << 20),
            request.headers.get("X-Tunebot-Signature-256"))
        return web.json_response({"status": text}, status=status)

    async def checkpoint_download(request: web.Request) -> web.StreamResponse:
        status, found = await service.jobs.checkpoints.for_resume(request.match_info["run_id"],
                                                                  request.headers.get("X-Tunebot-Signature-256"))
        if isinstance(found, str):
            return web.json_response({"status": found}, status=status)
        return web.FileResponse(found, headers={"Content-Type": "application/gzip"})

    app.router.add_post("/api/runs/{run_id}/events", callback)
    app.router.add_put("/api/runs/{run_id}/checkpoints/{step}", checkpoint_upload)
    app.router.add_get("/api/runs/{run_id}/resume-checkpoint", checkpoint_download)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_route)
    if config.web_ui:  # the read-only web view (bot/web/): /ui/…
        from bot.web import mount_web  # lazily: Jinja2 and the sessions are only imported when the view is on

        mount_web(app, service)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await runtime.recover()
        runtime.start()
        yield
        await intake.drain()
        await runtime.drain()

    app.cleanup_ctx.append(lifecycle)

    # --- Slack app mode (bot/slack_app.py): POST /slack/commands and /slack/events, only when configured. Added
    # after `lifecycle` so that its cleanup runs first: Slack commands still in flight finish while the service is up.
    if config.slack_signing_secret:
        from bot.slack_app import mount_slack  # lazily: slack_bolt is only imported when Slack is configured

        mount_slack(app, service)
    return app


async def learn_bot_login(github: Any) -> str:
    """Who the bot is on GitHub, asked once at start-up: its own comments (run cards it edits in place, replies it
    must never answer) are recognised by this login."""
    try:
        login = str(await github.whoami())
    except GitHubError as exc:
        raise RuntimeError(f"cannot learn the bot's login from GitHub ({exc}); check the credentials with "
                           "`tunebot serve --check`, or set TUNEBOT_BOT_LOGIN") from exc
    log.info("acting on GitHub as %s", login)
    return login


def _rss_bytes() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def open_service(config: Config, *, github: Any = None, clock: Callable[[], float] = time.time,
                       session: Any = None) -> Service:
    """Build the service from its configuration (store opened and migrated, GitHub port per auth mode)."""
    if github is None:
        pace = {"writes_per_minute": config.github_writes_per_minute,
                "writes_per_hour": config.github_writes_per_hour}
        if config.app_mode:
            github = PyGithubPort.with_app(config.github_api_url, config.app_id, config.private_key.get(), **pace)
        else:
            github = PyGithubPort.with_token(config.github_api_url, config.github_token.get(), **pace)
    if not config.bot_login:
        config = replace(config, bot_login=await learn_bot_login(github))
    store = await Store.open(config.database_url)
    chat = None
    if session is not None and (config.slack_token or config.dingtalk_robots):
        chat = Chat(config=config, session=session, clock=clock)
    catalog = with_pack_digests(load_catalog(), None if config.bench_data.lower() == "none"
                                else Path(config.bench_data) if config.bench_data else BENCH_DATA_DIR)
    service = Service(config=config, store=store, github=github, catalog=catalog, metrics=Metrics(),
                      clock=clock, chat=chat)
    if chat is not None:
        chat.attach(service)
    return service


