"""Decides what goes to Slack and DingTalk for a run (one Slack message per run updated in place, milestones in its
thread; DingTalk robot messages at milestones) and performs those writes from the outbox, never in the way."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from bot.config import Config
from bot.notify.dingtalk import DingTalkRobot
from bot.notify.slack import SlackNotifier
from bot.store import Store
from bot.store.models import OutboxItem, Run
from commands.compare import Comparison, Conclusion
from commands.policy import Policy, PolicyError
from commands.render import (
    DingTalkAt,
    RunView,
    dingtalk_comparison_markdown,
    dingtalk_milestone,
    dingtalk_run_markdown,
    slack_comparison_message,
    slack_milestone_text,
    slack_run_message,
)

log = logging.getLogger(__name__)

CHAT_KINDS = ("slack_post", "slack_update", "slack_reply", "dingtalk")
_FINAL = {"succeeded", "failed", "cancelled"}


class ChatService(Protocol):
    """What chat uses of the service (bot.service.Service is one): the store its outbox lives in, repo policies."""

    @property
    def store(self) -> Store: ...

    async def policy_for(self, repo: str) -> Policy | PolicyError: ...


class Chat:
    def __init__(self, *, config: Config, session: aiohttp.ClientSession, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.slack = SlackNotifier(config.slack_token.get(), session=session, base_url=config.slack_api_url) \
            if config.slack_token else None
        self.robots = {r.name: DingTalkRobot(r.webhook, r.secret.get() or None, session, clock=clock)
                       for r in config.dingtalk_robots}
        self.service: ChatService | None = None

    def attach(self, service: ChatService) -> None:
        self.service = service

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def performers(self) -> dict[str, Callable[[Mapping[str, Any], OutboxItem], Awaitable[Any]]]:
        return {"slack_post": self._slack_post, "slack_update": self._slack_update,
                "slack_reply": self._slack_reply, "dingtalk": self._dingtalk}

    async def _policy(self, repo: str) -> Policy | None:
        assert self.service is not None
        policy = await self.service.policy_for(repo)
        return policy if isinstance(policy, Policy) else None

    async def _enqueue(self, key: str, kind: str, payload: Mapping[str, Any], run_id: str, *,
                       replace: bool = False) -> None:
        assert self.service is not None
        # Only queued here: the outbox loop sends chat messages, so Slack or DingTalk being slow or down never
        # holds up a webhook or an agent callback.
        await self.service.store.enqueue(key, kind, dict(payload), self.now(), run_id=run_id, replace=replace)

    def _at(self, login: str) -> DingTalkAt | None:
        user = self.config.dingtalk_user_map.get(login)
        return DingTalkAt(user_ids=(user,)) if user else None

    async def run_changed(self, run: Run, view: RunView, *, final: bool) -> None:
        policy = await self._policy(run.repo)
        if policy is None:
            return
        lang = policy.language
        channel = policy.notify.slack_channel
        if channel and self.slack is not None:
            msg = slack_run_message(view, lang)
            payload = {"channel": channel, "text": msg.get("text", ""), "blocks": msg.get("blocks"),
                       "run_id": run.run_id}
            await self._enqueue(f"slack:{run.run_id}:post", "slack_post", payload, run.run_id)
            await self._enqueue(f"slack:{run.run_id}:update", "slack_update", payload, run.run_id, replace=True)
            if final and run.state in _FINAL:
                await self._enqueue(f"slack:{run.run_id}:{run.state}", "slack_reply",
                                    {"run_id": run.run_id, "text": slack_milestone_text(view, run.state, lang)},
                                    run.run_id)
        if final and run.state in _FINAL:
            await self._to_asking_thread(run.run_id, run.state, slack_milestone_text(view, run.state, lang))
        robot = policy.notify.dingtalk_robot
        if robot and robot in self.robots:
            if final and run.state in _FINAL:
                body = dingtalk_run_markdown(view, lang, at=self._at(run.actor))
                await self._enqueue(f"ding:{run.run_id}:{run.state}", "dingtalk", {"robot": robot, "message": body},
                                    run.run_id)
            elif not final and run.state == "queued":
                body = dingtalk_milestone(view, "queued", lang)
                await self._enqueue(f"ding:{run.run_id}:queued", "dingtalk", {"robot": robot, "message": body},
                                    run.run_id)

    async def milestone(self, run: Run, key: str, text: str) -> None:
        policy = await self._policy(run.repo)
        if policy is None or not policy.notify.slack_channel or self.slack is None:
            return
        await self._enqueue(f"slack:{run.run_id}:{key}", "slack_reply", {"run_id": run.run_id, "text": text},
                            run.run_id)

    async def _to_asking_thread(self, run_id: str, key: str, text: str, blocks: Any = None) -> None:
        """A run started from Slack reports back in the thread it was asked in (besides the policy's channel)."""
        assert self.service is not None
        if self.slack is None:
            return
        thread = await self.service.store.message_for(run_id, "slack_thread")
        if thread is None:
            return
        await self._enqueue(f"slackthread:{run_id}:{key}", "slack_reply",
                            {"run_id": run_id, "text": text, "blocks": blocks, "channel": thread.channel,
                             "thread_ts": thread.message_id}, run_id)

    async def comparison(self, run: Run, comparison: Comparison, conclusion: Conclusion, policy: Policy) -> None:
        lang = policy.language
        msg = slack_comparison_message(comparison, conclusion, lang)
        await self._to_asking_thread(run.run_id, "compare", msg.get("text", ""), msg.get("blocks"))
        if policy.notify.slack_channel and self.slack is not None:
            msg = slack_comparison_message(comparison, conclusion, lang)
            await self._enqueue(f"slack:{run.run_id}:compare", "slack_reply",
                                {"run_id": run.run_id, "text": msg.get("text", ""), "blocks": msg.get("blocks")},
                                run.run_id)
        robot = policy.notify.dingtalk_robot
        if robot and robot in self.robots:
            body = dingtalk_comparison_markdown(comparison, conclusion, lang)
            await self._enqueue(f"ding:{run.run_id}:compare", "dingtalk", {"robot": robot, "message": body},
                                run.run_id)

    # --- performers ---------------------------------------------------------------------------------------------------

    async def _slack_post(self, p: Mapping[str, Any], item: OutboxItem) -> Mapping[str, Any]:
        assert self.slack is not None and self.service is not None
        store = self.service.store
        known = await store.message_for(p["run_id"], "slack")
        if known is not None:
            return {"ts": known.message_id}
        ts = await self.slack.post(p["channel"], p["text"], p.get("blocks"))
        channel = self.slack.channel_id(ts) or p["channel"]
        await store.remember_message(p["run_id"], "slack", ts, now=self.now(), channel=channel)
        return {"ts": ts, "channel": channel}

    async def _slack_update(self, p: Mapping[str, Any], item: OutboxItem) -> None:
        assert self.slack is not None and self.service is not None
        known = await self.service.store.message_for(p["run_id"], "slack")
        if known is None:
            raise RuntimeError("Slack run message not posted yet")
        await self.slack.update(known.channel, known.message_id, p["text"], p.get("blocks"))

    async def _slack_reply(self, p: Mapping[str, Any], item: OutboxItem) -> Mapping[str, Any]:
        assert self.slack is not None and self.service is not None
        if p.get("thread_ts"):
            ts = await self.slack.post(p["channel"], p["text"], p.get("blocks"), thread_ts=p["thread_ts"])
            return {"ts": ts}
        known = await self.service.store.message_for(p["run_id"], "slack")
        if known is None:
            raise RuntimeError("Slack run message not posted yet")
        ts = await self.slack.post(known.channel, p["text"], p.get("blocks"), thread_ts=known.message_id)
        return {"ts": ts}

    async def _dingtalk(self, p: Mapping[str, Any], item: OutboxItem) -> None:
        robot = self.robots.get(p["robot"])
        if robot is None:
            raise LookupError(f"DingTalk robot {p['robot']!r} is not configured (dingtalk: in the service config)")
        await robot.send(dict(p["message"]))
