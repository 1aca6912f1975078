"""Local mode: the real service, store and agent on this machine, with the terminal standing in for the PR thread
(`tunebot try "<comment>"` and the guided `tunebot demo`)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.app import build_app, open_service
from bot.config import Config, Secret, load_config
from bot.front import start_site
from bot.github.port import WorkflowRun, run_id_from_name
from bot.local_github import BOT_LOGIN, LocalGitHub, git_head


class Terminal:
    """Prints the conversation: the user's comments and the bot's comments as they are posted and finalised."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.color = bool(getattr(self.stream, "isatty", lambda: False)())

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def user(self, login: str, text: str) -> None:
        print("\n" + self._c("1;36", f"💬 @{login} commented:"), file=self.stream)
        for line in text.splitlines():
            print("   " + line, file=self.stream)
        self.stream.flush()

    def bot(self, text: str, *, edited: bool = False) -> None:
        head = "✏️  tunebot updated its comment:" if edited else "🤖 tunebot commented:"
        print("\n" + self._c("1;35", head), file=self.stream)
        for line in text.splitlines():
            if line.startswith("<!--"):
                continue
            print("   " + line, file=self.stream)
        self.stream.flush()

    def note(self, text: str) -> None:
        print(self._c("2", f"   · {text}"), file=self.stream)
        self.stream.flush()


class LocalSession:
    """The service on 127.0.0.1 (for the agent's callbacks), a SQLite store under runs/, and LocalGitHub."""

    def __init__(self, workdir: Path, runs_dir: Path, *, agent_args: list[str] | None = None,
                 terminal: Terminal | None = None) -> None:
        self.workdir = workdir
        self.runs_dir = runs_dir
        self.terminal = terminal or Terminal()
        self.user = os.environ.get("USER") or "you"
        self.github = LocalGitHub(workdir, runs_dir, self.terminal, self.user,
                                  repo=f"local/{workdir.name or 'repo'}", head_sha=git_head(workdir),
                                  agent_args=list(agent_args or []))
        self.github.on_workflow_done = self._workflow_done
        self.runner: web.AppRunner | None = None
        self.service: Any = None
        self.comment_seq = itertools.count(1)

    async def __aenter__(self) -> LocalSession:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        config: Config = load_config(
            environ={}, webhook_secret=Secret("local"), github_token=Secret("local"),
            job_signing_key=Secret("local"), database_url=f"sqlite:///{self.runs_dir / 'tunebot.db'}",
            bot_login=BOT_LOGIN, card_edit_interval_s=5.0, sweep_interval_s=3600.0,
            checkpoint_dir=str(self.runs_dir / "checkpoints"))
        self.service = await open_service(config, github=self.github)
        app = build_app(self.service)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = (await start_site(self.runner, config, self.service.metrics, host="127.0.0.1", port=0)).port
        self.service.config = replace(self.service.config, public_url=f"http://127.0.0.1:{port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.github.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.service is not None:
            await self.service.store.close()

    async def _workflow_done(self, run: WorkflowRun) -> None:
        run_id = run_id_from_name(run.display_title)
        stored = await self.service.store.find_run_by_name_token(run_id) if run_id else None
        if stored is not None:
            await self.service.workflow_completed(stored, run.conclusion, run.html_url)

    def run_page(self, run_id: str) -> str:
        """The web view's page of a run, served by this session's service (bot/web/) while the session is open."""
        return f"{self.service.config.public_url}/ui/{self.github.repo}/runs/{run_id}"

    async def say(self, text: str) -> None:
        """Post `text` as a comment on the local PR and wait until everything it started has finished."""
        self.terminal.user(self.user, text)
        await self.service.handle_text(self.github.repo, 1, self.user, text,
                                       trigger=f"local:{time.time():.6f}:{next(self.comment_seq)}")
        await self.settle()

    async def settle(self) -> None:
        store = self.service.store
        while True:
            await self.github.wait_all()
            await self.service.settle()
            await self.service.outbox.pump()
            active = await store.active_runs()
            if not active and not self.service.outbox.busy and not await store.due(self.service.now(), 1):
                break
            await asyncio.sleep(0.2)
        # Let the last callbacks and the final card edits land.
        for _ in range(3):
            await self.service.outbox.pump()
            await asyncio.sleep(0.05)
        self.github.flush_edits()


def local_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--workdir", type=Path, default=Path.cwd(), help="the repository to act on (default: here)")
    p.add_argument("--runs-dir", type=Path, default=None, help="where runs, reports and the store go (./runs)")
    p.add_argument("--agent-arg", action="append", default=[], help="extra argument for `tunebot agent run`")
    return p


def try_main(argv: list[str]) -> int:
    p = local_parser("tunebot try")
    p.add_argument("comment", nargs="+", help='the comment text, e.g. "/train tiny max_steps=20"')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    text = " ".join(args.comment).replace("\\n", "\n")
    runs_dir = args.runs_dir or args.workdir / "runs"

    async def go() -> None:
        async with LocalSession(args.workdir, runs_dir, agent_args=args.agent_arg) as session:
            await session.say(text)

    asyncio.run(go())
    return 0
