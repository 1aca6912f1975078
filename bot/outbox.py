"""Performs the writes the bot decided on (comments, reactions, dispatches, check runs, chat messages) from the
outbox, so a crash between deciding and posting neither loses nor doubles one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.github.port import (
    RUN_NAME_INPUT,
    CheckOutput,
    Conflict,
    Forbidden,
    GitHubError,
    GitHubPort,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from bot.metrics import Metrics
from bot.store import Store
from bot.store.models import OutboxItem

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
GITHUB_KINDS = ("comment_create", "comment_edit", "reaction", "dispatch", "cancel", "check_create", "check_update")
# What goes first when GitHub's write pace makes writes queue (a burst of commands): dispatches (a GPU waits for
# them) and cancels (one is burning GPU time), then new comments (run cards, replies), check runs, edits; reactions
# (the 👀 acknowledgement) last. Within a rank, oldest first.
PRIORITY = ("dispatch", "cancel", "comment_create", "check_create", "comment_edit", "check_update")
# GitHub said no in a way a retry will not change: give up at once and say why. (A 403 that is a rate limit
# arrives as RateLimited, not Forbidden: a Forbidden is a missing permission, e.g. `actions: write`.)
_PERMANENT = (NotFound, ValidationFailed, Conflict, Forbidden)

Performer = Callable[[Mapping[str, Any], OutboxItem], Awaitable[Mapping[str, Any] | None]]


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Outbox:
    def __init__(self, *, store: Store, github: GitHubPort, bot_login: str, metrics: Metrics,
                 clock: Callable[[], float], chat: Mapping[str, Performer] | None = None,
                 on_done: Callable[[OutboxItem, Mapping[str, Any]], Awaitable[None]] | None = None,
                 lease: timedelta = timedelta(seconds=60),
                 on_gave_up: Callable[[OutboxItem, Exception], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.on_gave_up = on_gave_up  # told when a write is given up for good (a dispatch that cannot start)
        self.lease = lease  # a replica that dies holding items: another performs them once this runs out
        self.github = github
        self.bot_login = bot_login
        self.metrics = metrics
        self.clock = clock
        self.on_done = on_done
        self._kinds: dict[str, Performer] = {
            "comment_create": self._comment_create,
            "comment_edit": self._comment_edit,
            "reaction": self._reaction,
            "dispatch": self._dispatch,
            "cancel": self._cancel,
            "check_create": self._check_create,
            "check_update": self._check_update,
            **dict(chat or {}),
        }
        metrics.describe("outbox_writes_total", "counter", "Outbox writes by kind and outcome.")
        self._pumps = 0  # pumps at work here; `idle()` waits for them
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> bool:
        """A pump of this process is at work: what it claimed is neither due nor done yet."""
        return self._pumps > 0

    async def idle(self) -> None:
        """Wait until no pump of this process is at work (its claimed items are performed)."""
        await self._idle.wait()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def pump(self, limit: int = 50, kinds: Collection[str] | None = None, *, batch: int | None = None) -> int:
        """Perform up to `limit` due items (of these kinds), highest priority first; returns how many succeeded.

        With `batch`, items are claimed that many at a time until `limit` were tried or none is due: each claim
        sees what was decided meanwhile (a dispatch decided during the burst overtakes the reactions claimed
        later), and a claimed item never waits long for GitHub's write pace while its lease runs.
        """
        done = tried = 0
        self._pumps += 1
        self._idle.clear()
        try:
            while tried < limit:
                items = await self.store.due(self.now(), min(limit - tried, batch or limit), kinds=kinds,
                                             lease=self.lease, first=PRIORITY)
                for item in items:
                    if await self.perform(item):
                        done += 1
                tried += len(items)
                if not items or batch is None:
                    break
        finally:
            self._pumps -= 1
            if not self._pumps:
                self._idle.set()
        return done

    async def perform(self, item: OutboxItem) -> bool:
        performer = self._kinds.get(item.kind)
        if performer is None:
            await self.store.fail(item.id, f"unknown outbox kind {item.kind!r}", None, now=self.now())
            return False
        try:
            result = await performer(item.payload, item) or {}
        except Exception as exc:
            permanent = isinstance(exc, _PERMANENT) or item.attempts >= MAX_ATTEMPTS
            delay = getattr(exc, "retry_after", None) if isinstance(exc, RateLimited) else None
            delay = delay or min(300.0, 2.0 ** item.attempts)
            retry_at = None if permanent else self.now() + timedelta(seconds=delay)
            outcome = "gave_up" if permanent else "retry"
            self.metrics.inc("outbox_writes_total", labels={"kind": item.kind, "outcome": outcome})
            log.warning("outbox %s (%s) attempt %d failed: %s%s", item.key, item.kind, item.attempts, exc,
                        "" if retry_at else " — giving up")
            await self.store.fail(item.id, str(exc) or type(exc).__name__, retry_at, now=self.now(),
                                  version=item.version)
            if retry_at is None and self.on_gave_up is not None:
                await self.on_gave_up(item, exc)
            return False
        await self.store.complete(item.id, dict(result), now=self.now(), version=item.version)
        self.metrics.inc("outbox_writes_total", labels={"kind": item.kind, "outcome": "done"})
        if self.on_done is not None:
            await self.on_done(item, result)
        return True

    # --- GitHub writes ------------------------------------------------------------------------------------------------

    async def _comment_create(self, p: Mapping[str, Any], item: OutboxItem) -> Mapping[str, Any]:
        repo, number, body = p["repo"], int(p["number"]), p["body"]
        marker = p.get("marker")
        subject, purpose = p.get("subject"), p.get("purpose")
        if subject and purpose:
            known = await self.store.message_for(subject, purpose)
            if known is not None:  # created before, edit instead of posting twice
                await self.github.edit_comment(repo, int(known.message_id), body)
                return {"comment_id": int(known.message_id)}
        if marker and item.attempts > 1:
            # A previous attempt may have posted before the crash/timeout: look for our own marked comment.
            for c in await self.github.list_comments(repo, number):
                if marker in c.body and c.author_login == self.bot_login:
                    return await self._remember(p, c.id, c.html_url)
        ref = await self.github.create_comment(repo, number, body)
        return await self._remember(p, ref.id, ref.html_url)

    async def _remember(self, p: Mapping[str, Any], comment_id: int, url: str) -> Mapping[str, Any]:
        if p.get("subject") and p.get("purpose"):
            await self.store.remember_message(p["subject"], p["purpose"], str(comment_id), now=self.now())
        return {"comment_id": comment_id, "html_url": url}

    async def _comment_edit(self, p: Mapping[str, Any], item: OutboxItem) -> Mapping[str, Any]:
        repo = p["repo"]
        msg = await self.store.message_for(p["subject"], p["purpose"])
        if msg is None:
            raise GitHubError(0, f"no comment remembered yet for {p['subject']}/{p['purpose']} (create pending)")
        comment_id = int(msg.message_id)
        current = await self.github.get_comment(repo, comment_id)
        # Only ever edit comments this bot wrote: a copied marker in someone else's comment must not be touched.
        if current.author_login != self.bot_login:
            raise ValidationFailed(0, f"comment {comment_id} was written by {current.author_login}, not the bot")
        if current.body != p["body"]:
            await self.github.edit_comment(repo, comment_id, p["body"])
        return {"comment_id": comment_id}

    async def _reaction(self, p: Mapping[str, Any], item: OutboxItem) -> None:
        await self.github.add_reaction(p["repo"], int(p["comment_id"]), p["content"])

    async def _dispatch(self, p: Mapping[str, Any], item: OutboxItem) -> Mapping[str, Any]:
        repo, inputs = p["repo"], dict(p["inputs"])
        run = await self.store.get_run(p["run_id"]) if p.get("run_id") else None
        if run is not None and run.finished:  # ended (cancelled, failed) before its dispatch went out
            return {"workflow_run_id": None, "html_url": None, "skipped": f"the run is {run.state}"}
        created_after = datetime.fromisoformat(p["decided_at"]) - timedelta(minutes=5)
        if item.attempts > 1:
            # The first attempt may have reached GitHub before we crashed: never start a second GPU run.
            found = await self.github.find_run_by_name(repo, p["workflow"], inputs[RUN_NAME_INPUT], created_after)
            if found is not None:
                return {"workflow_run_id": found.id, "html_url": found.html_url}
        result = await self.github.dispatch_workflow(repo, p["workflow"], p["ref"], inputs)
        if result.workflow_run_id is None:
            found = await self.github.find_run_by_name(repo, p["workflow"], inputs[RUN_NAME_INPUT], created_after)
            if found is not None:
                return {"workflow_run_id": found.id, "html_url": found.html_url}
            return {"workflow_run_id": None, "html_url": None}
        return {"workflow_run_id": result.workflow_run_id, "html_url": result.html_url}

    async def _cancel(self, p: Mapping[str, Any], item: OutboxItem) -> Mapping[str, Any]:
        ok = await self.github.cancel_workflow_run(p["repo"], int(p["workflow_run_id"]))
        return {"cancelled": ok}

    async def _check_create(self, p: Mapping[str, Any], item: OutboxItem) -> Mapping[str, Any]:
        ref = await self.github.create_check_run(
            p["repo"], p["name"], p["head_sha"], p.get("status", "queued"),
            output=CheckOutput(**p["output"]) if p.get("output") else None,
            details_url=p.get("details_url"), external_id=p.get("external_id"))
        return {"check_run_id": ref.id}

    async def _check_update(self, p: Mapping[str, Any], item: OutboxItem) -> None:
        check_id = p.get("check_run_id")
        if check_id is None and p.get("run_id"):
            run = await self.store.get_run(p["run_id"])
            check_id = run.check_run_id if run is not None else None
        if check_id is None:
            raise GitHubError(0, "check run not created yet (create pending)")
        await self.github.update_check_run(
            p["repo"], int(check_id), status=p.get("status"), conclusion=p.get("conclusion"),
            output=CheckOutput(**p["output"]) if p.get("output") else None, details_url=p.get("details_url"),
            completed_at=_dt(p.get("completed_at")))
