"""Assembles the service from its parts and routes each verified delivery to the part that handles it; the entry
points the HTTP app, local mode and Slack call (`process_delivery`, `handle_text`, `accept_callback`, `sweep`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bot.autotrain import AutoTrain
from bot.cards import Cards
from bot.comments import Comments
from bot.comparisons import Comparisons
from bot.config import Config
from bot.core import Core
from bot.github.port import GitHubPort
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
from bot.store.models import Delivery
from commands.catalog import Catalog

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
                                           on_done=self.jobs.on_outbox_done)
        metrics.describe("deliveries_processed_total", "counter", "Deliveries processed by event and outcome.")
        # The entry points, where they live.
        self.handle_text = self.comments.handle_text
        self.accept_callback = self.lifecycle.accept_callback
        self.workflow_completed = self.lifecycle.workflow_completed
        self.sweep = self.lifecycle.sweep
        self.prune = self.lifecycle.prune
        self.policy_for = core.policy_for
        self.now = core.now
        self.settle = self.cards.settle

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
