"""Assembles the service from its parts and routes each verified delivery to the part that handles it; the entry
points the HTTP app, local mode and Slack call (`process_delivery`, `handle_text`, `accept_callback`, `sweep`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bot.autotrain import AutoTrain
from bot.cards import Cards
from bot.comments import Comments
from bot.comparisons import Comparisons
from bot.config import Config
from bot.core import Conversation, Core
from bot.github.port import Forbidden, GitHubPort, NotFound
from bot.github.sansio import (
    IssueComment,
    PullRequestEvent,
    WebhookError,
    WebhookEvent,
    WorkflowJobEvent,
    WorkflowRunEvent,
    parse_event,
)
from bot.handlers import Parts, check_handlers
from bot.jobs import Jobs
from bot.lifecycle import Lifecycle
from bot.metrics import Metrics
from bot.outbox import Outbox
from bot.store import Store
from bot.store.models import Delivery, OutboxItem
from commands.catalog import Catalog
from commands.policy import DEFAULT_POLICY, Policy
from commands.render.i18n import t

log = logging.getLogger(__name__)


class Service:
    def __init__(self, *, config: Config, store: Store, github: GitHubPort, catalog: Catalog, metrics: Metrics,
                 clock: Callable[[], float] = time.time, chat: Any = None) -> None:
        check_handlers()
        self.core = core = Core(config=config, store=store, github=github, catalog=catalog, metrics=metrics,
                                clock=clock, chat=chat)
        self.cards = Cards(core)
        self.jobs = Jobs(core, self.cards)
        self.comparisons = Comparisons(core, self.cards, self.jobs)
        self.lifecycle = Lifecycle(core, self.cards, self.comparisons)
        self.lifecycle.on_runner_lost = self.jobs.resume_lost
        parts = Parts(core, self.cards, self.jobs, self.comparisons, self.lifecycle)
        self.comments = Comments(parts)
        self.autotrain = AutoTrain(parts, self.comments)
        self.outbox = core.outbox = Outbox(store=store, github=github, bot_login=config.bot_login, metrics=metrics,
                                           clock=clock, chat=chat.performers() if chat is not None else None,
                                           on_done=self.jobs.on_outbox_done,
                                           lease=timedelta(seconds=max(config.delivery_lease_s, 1.0)),
                                           on_gave_up=self.dispatch_failed)
        metrics.describe("deliveries_processed_total", "counter", "Deliveries processed by event and outcome.")
        # The entry points, where they live.
        self.handle_text = self.comments.handle_text
        self.accept_callback = self.lifecycle.accept_callback
        self.workflow_completed = self.lifecycle.workflow_completed
        self.sweep = self.lifecycle.sweep
        self.prune = self.lifecycle.prune
        self.policy_for = core.policy_for
        self.now = core.now

    # The dependencies, as one place to read them from (tests and local mode replace `config` after start-up).
    @property
    def config(self) -> Config:
        return self.core.config

    @config.setter
    def config(self, value: Config) -> None:
        self.core.config = value

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def github(self) -> GitHubPort:
        return self.core.github

    @property
    def catalog(self) -> Catalog:
        return self.core.catalog

    @property
    def metrics(self) -> Metrics:
        return self.core.metrics

    @property
    def clock(self) -> Callable[[], float]:
        return self.core.clock

    @clock.setter
    def clock(self, value: Callable[[], float]) -> None:
        self.core.clock = value

    @property
    def chat(self) -> Any:
        return self.core.chat

    async def settle(self) -> None:
        """Write the card edits still waiting for their interval, and let the outbox pumps at work finish (tests,
        shutdown): a write the runtime's loop has claimed is not due, yet not done either."""
        await self.cards.settle()
        await self.outbox.idle()

    async def dispatch_failed(self, item: OutboxItem, exc: Exception) -> None:
        """A dispatch GitHub refused for good (404: no workflow file on the default branch; 403: the App lacks
        `actions: write`): the run fails at once, and its card and a reply say what is wrong and how to fix it."""
        if item.kind != "dispatch" or item.run_id is None:
            return
        run = await self.store.get_run(item.run_id)
        if run is None or run.finished:
            return
        key = ("reply.dispatch_failed.workflow_missing" if isinstance(exc, NotFound)
               else "reply.dispatch_failed.forbidden" if isinstance(exc, Forbidden)
               else "reply.dispatch_failed.rejected")
        error = getattr(exc, "message", None) or str(exc)
        text = t(await self.core.language_for(run.repo), key, run=run.run_id, workflow=item.payload.get("workflow"),
                 ref=item.payload.get("ref"), error=f"GitHub {getattr(exc, 'status', '?')}: {error}")
        ended, changed = await self.store.advance_run(run.run_id, "failed", now=self.now(), reason=text)
        if not changed:
            return
        self.metrics.inc("runs_finished_total", labels={"state": "failed"})
        await self.cards.finished(ended)
        if run.number is not None:
            await self.core.write(f"reply:{run.run_id}:dispatch_failed", "comment_create",
                                  {"repo": run.repo, "number": run.number, "body": f"@{run.actor} {text}"},
                                  run_id=run.run_id, pump=False)

    async def delivery_failed(self, delivery: Delivery, error: str) -> None:
        """A delivery's last attempt failed: a commenter whose command it carried hears what failed and what to do
        (through the outbox, which keeps trying to post it while GitHub is down)."""
        try:
            event = parse_event(delivery.event, delivery.payload())
        except (WebhookError, ValueError):
            return
        if not isinstance(event, IssueComment) or event.action != "created" or event.is_bot \
                or event.user_login == self.core.bot_login:
            return
        try:
            policy = await self.core.policy_for(event.repo)
        except Exception:  # GitHub may still be down: answer in the default language
            policy = DEFAULT_POLICY
        conv = Conversation(event.repo, event.issue_number, event.is_pull_request, event.user_login,
                            event.author_association, f"c{event.comment_id}",
                            policy if isinstance(policy, Policy) else DEFAULT_POLICY, event.comment_id)
        await self.core.reply(conv, "failed", conv.say("reply.delivery_failed", actor=conv.actor,
                                                       attempts=delivery.attempts, error=error[:500].rstrip("."),
                                                       delivery=delivery.delivery_id))

    async def process_delivery(self, delivery: Delivery) -> None:
        try:
            event: WebhookEvent = parse_event(delivery.event, delivery.payload())
        except (WebhookError, ValueError) as exc:
            log.warning("delivery %s (%s) is malformed: %s", delivery.delivery_id, delivery.event, exc)
            self.metrics.inc("deliveries_processed_total", labels={"event": delivery.event, "outcome": "malformed"})
            return
        remember = getattr(self.github, "remember_installation", None)
        installation = getattr(event, "installation_id", None)
        if remember is not None and installation and getattr(event, "repo", None):
            remember(event.repo, installation)  # type: ignore[union-attr]
        if isinstance(event, IssueComment):
            await self.comments.on_comment(event, f"c{event.comment_id}")
        elif isinstance(event, PullRequestEvent):
            await self.autotrain.on_pull_request(event)
        elif isinstance(event, WorkflowRunEvent):
            await self.lifecycle.on_workflow_run(event)
        elif isinstance(event, WorkflowJobEvent):
            await self.lifecycle.on_workflow_job(event)
        self.metrics.inc("deliveries_processed_total", labels={"event": delivery.event, "outcome": "done"})
