"""`tunebot serve` (and `serve --check`) and `tunebot runs list|show`: the service's command-line entry points, where
the one configuration object is built.

The service, the store and aiohttp are imported inside the commands that use them, so that `--help`, a flag error
or `tunebot runs leaderboard` answer without loading them (none of these imports is there for a cycle)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

from bot.config import Config, ConfigError, load_config


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    return load_config(args.config, **overrides)


async def _check(config: Config) -> int:
    """Validate configuration and reachability; say what is missing, one line each."""
    problems = list(config.problems())
    from bot.store import Store

    try:
        store = await Store.open(config.database_url)
        await store.ping()
        await store.close()
        print(f"ok: database {config.database_url.split('@')[-1]} reachable and migrated")
    except Exception as exc:
        problems.append(f"database {config.database_url.split('@')[-1]}: {exc}")
    if config.app_mode or config.github_token:
        login, reason = await _check_github(config)
        if reason is None:
            print(f"ok: GitHub API {config.github_api_url} ({'App' if config.app_mode else 'token'} mode), "
                  f"acting as {config.bot_login or login}"
                  + (f" (TUNEBOT_BOT_LOGIN; GitHub says {login})" if config.bot_login and config.bot_login != login
                     else ""))
        else:
            problems.append(f"GitHub API {config.github_api_url}: {reason}")
    for p in problems:
        print(f"missing: {p}", file=sys.stderr)
    if not problems:
        print("ok: configuration complete")
    return 1 if problems else 0


async def _check_github(config: Config) -> tuple[str, str | None]:
    """(the login the bot acts as, None) when GitHub answers these credentials; else ("", what is wrong). App: GET
    /app with the JWT (its slug makes `<slug>[bot]`); token: GET /user, the same questions `serve` asks at start."""
    import time

    import aiohttp
    import jwt

    base = config.github_api_url.rstrip("/")
    if config.app_mode:
        now = int(time.time())
        try:
            token = jwt.encode({"iat": now - 60, "exp": now + 540, "iss": str(config.app_id)},
                               config.private_key.get(), algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            return "", (f"the private key cannot sign a JWT ({type(exc).__name__}); check PRIVATE_KEY / "
                        "PRIVATE_KEY_PATH")
        url, auth = f"{base}/app", f"Bearer {token}"
    else:
        url, auth = f"{base}/user", f"Bearer {config.github_token.get()}"
    headers = {"Authorization": auth, "Accept": "application/vnd.github+json", "User-Agent": "tunebot"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                session.get(url, headers=headers) as resp:
            if resp.status == 200:
                data = await resp.json(content_type=None)
                return (f"{data['slug']}[bot]" if config.app_mode else str(data["login"])), None
            if resp.status == 401:
                return "", "credentials rejected (401): check APP_ID and the private key, or GITHUB_TOKEN"
            if resp.status == 403 and not config.app_mode:
                return "", ("this token cannot read its own user (403): an installation token? use a GitHub App, "
                            "or a personal access token")
            return "", f"unexpected answer {resp.status} from {url}"
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        return "", f"not reachable or not GitHub ({type(exc).__name__}: {exc})"


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tunebot serve", description="Run the tunebot GitHub App service.")
    parser.add_argument("--config", help="service configuration file (YAML); the environment overrides it")
    parser.add_argument("--port", type=int, help="listen port (default: $PORT or 3000)")
    parser.add_argument("--database-url", help="database URL (default: $TUNEBOT_DATABASE_URL or sqlite:///tunebot.db)")
    parser.add_argument("--check", action="store_true", help="validate configuration and reachability, then exit")
    args = parser.parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"tunebot serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations say what they do only when it matters
    if args.check:
        return asyncio.run(_check(config))
    problems = config.problems()
    if problems:
        for p in problems:
            print(f"tunebot serve: {p}", file=sys.stderr)
        print("tunebot serve: run `tunebot serve --check` for details", file=sys.stderr)
        return 2
    asyncio.run(_serve(config))
    return 0


async def _serve(config: Config) -> None:
    import gc

    import aiohttp
    from aiohttp import web

    from bot.app import build_app, open_service
    from bot.front import start_site

    async with aiohttp.ClientSession() as session:  # the app's one client session (Slack, DingTalk)
        service = await open_service(config, session=session)
        app = build_app(service)
        runner = web.AppRunner(app, handle_signals=True, access_log=None)
        await runner.setup()
        await start_site(runner, config, service.metrics)
        logging.getLogger("tunebot").info("listening on %s:%d (%s)", config.host, config.port,
                                          "App mode" if config.app_mode else "token mode")
        # Everything allocated so far (modules, the app) lives as long as the process: keep it out of the cyclic
        # collector's full passes, which would otherwise walk it all and stall the webhook answers for milliseconds.
        gc.collect()
        gc.freeze()
        # Young-generation passes every 20,000 allocations instead of 700: each webhook allocates hundreds of
        # short-lived objects (bench/webhook_load.sh, one A/B pair: 528 -> 474 us of service CPU per delivery).
        gc.set_threshold(20000, 50, 50)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()  # drains in-flight deliveries (see bot.app.Runtime.drain)
        await service.store.close()


def runs_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tunebot runs", description="Inspect runs recorded in the store.")
    parser.add_argument("--config")
    parser.add_argument("--database-url")
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="recent runs of a repository / PR")
    ls.add_argument("repo", help="owner/name")
    ls.add_argument("number", type=int, help="PR or issue number")
    show = sub.add_parser("show", help="one run with its events and results")
    show.add_argument("run_id")
    from bot.leaderboard import add_arguments, leaderboard_main

    board = sub.add_parser("leaderboard", help="rank downloaded run results; --post keeps them on an issue / Slack",
                           description="Rank the results of runs (DIR/<artifact>/results.json) per benchmark, print "
                                       "the Markdown, and with --post keep it in one issue comment and post to "
                                       "Slack (the scheduled leaderboard workflow).")
    add_arguments(board)
    args = parser.parse_args(argv)
    if args.action == "leaderboard":  # reads run outputs, not the store: no service configuration needed
        return leaderboard_main(args, os.environ)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"tunebot runs: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_runs(config, args))


async def _runs(config: Config, args: argparse.Namespace) -> int:
    from bot.store import Store

    store = await Store.open(config.database_url)
    try:
        if args.action == "list":
            for r in await store.runs_for_pr(args.repo, args.number):
                print(f"{r.run_id}  {r.state:<10} {r.kind:<10} {r.model or '-':<24} {r.command}")
            return 0
        run = await store.get_run(args.run_id)
        if run is None:
            print(f"tunebot runs: no run {args.run_id!r} in {config.database_url.split('@')[-1]}", file=sys.stderr)
            return 1
        results = await store.load_results(run.run_id)
        out = {
            "run_id": run.run_id, "repo": run.repo, "number": run.number, "state": run.state, "kind": run.kind,
            "model": run.model, "command": run.command, "reason": run.reason, "workflow_url": run.workflow_url,
            "events": len(await store.events_after(run.run_id, -1)),
            "scores": {b: {"score": r.score, "n": r.n} for b, r in (results.benchmarks.items() if results else [])},
        }
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
        return 0
    finally:
        await store.close()
