"""One tunebot replica as its own process, for the multi-replica tests (run as a script).

  replica.py CONFIG_JSON    serve webhooks on 127.0.0.1 (an ephemeral port), print `READY <port>`, run until killed

CONFIG_JSON holds `database_url`, `schema` (PostgreSQL schema), `github_api_url`, `github_token`, `replica_id`,
`delivery_lease_s` and any other Config setting. The service is built the way `tunebot serve` builds it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from aiohttp import web

from bot.app import build_app
from bot.config import Secret, load_config
from bot.front import start_site
from bot.github.port import RetryPolicy
from bot.github.pygithub_impl import PyGithubPort
from bot.metrics import Metrics
from bot.service import Service
from bot.store import Store
from configs import load_catalog


async def main(settings: dict[str, Any]) -> None:
    schema = settings.pop("schema", None)
    token = settings.pop("github_token")
    secret = settings.pop("webhook_secret")
    config = load_config(environ={}, github_token=Secret(token), webhook_secret=Secret(secret),
                         job_signing_key=Secret("job-signing-key-for-tests"), **settings)
    github = PyGithubPort.with_token(config.github_api_url, token, writes_per_minute=config.github_writes_per_minute,
                                     writes_per_hour=config.github_writes_per_hour,
                                     retry=RetryPolicy(max_attempts=3, base_delay=0.05))
    store = await Store.open(config.database_url, schema=schema)
    service = Service(config=config, store=store, github=github, catalog=load_catalog(), metrics=Metrics())
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = await start_site(runner, config, service.metrics, host="127.0.0.1", port=0)
    print(f"READY {site.port}", flush=True)
    await asyncio.Event().wait()  # until SIGKILL (or SIGTERM's default: exit)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
