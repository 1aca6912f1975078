"""Pull request events: a push voids approvals, and a change to a training config file under the policy's
`auto_train.paths` trains exactly what that file declares."""

from __future__ import annotations

import logging

from bot.comments import Comments
from bot.core import Conversation
from bot.github.sansio import PullRequestEvent
from bot.handlers import Parts
from bot.handlers.start import held_for_approval
from commands import authz
from commands.configfile import plan_config_file
from commands.decision import Command
from commands.plan import PlanError, auto_train_matches
from commands.policy import Policy

log = logging.getLogger(__name__)


class AutoTrain:
    def __init__(self, parts: Parts, comments: Comments) -> None:
        self.parts = parts
        self.core = parts.core
        self.comments = comments

    async def on_pull_request(self, ev: PullRequestEvent) -> None:
        core = self.core
        if ev.action == "synchronize":
            # A grant is bound to the head SHA it approved; a new push voids it (platform-facts: trust).
            await core.store.revoke_grants(ev.repo, ev.number, now=core.now())
        if ev.action not in ("opened", "synchronize", "reopened"):
            return
        policy = await core.policy_for(ev.repo)
        if not isinstance(policy, Policy) or not policy.auto_train:
            return
        files = [f for f in await core.github.list_pull_files(ev.repo, ev.number) if auto_train_matches(f, policy)]
        if not files:
            return
        pull = await core.github.get_pull(ev.repo, ev.number)
        # Keyed by what the training is about, not by the delivery id (which the webhook's HMAC does not cover):
        # a replayed or re-sent event for the same commit finds the runs it already started.
        conv = Conversation(ev.repo, ev.number, True, ev.author or ev.sender, "NONE",
                            f"autotrain:{ev.repo}#{ev.number}@{ev.head_sha}", policy)
        jobs = self.parts.jobs
        for path in files[: policy.quotas.max_dispatches_per_comment]:
            text = await core.github.get_file(ev.repo, path, ev.head_sha)
            if text is None:
                continue
            pr = await jobs.pr_facts(ev.repo, ev.number, pull)
            try:
                planned = plan_config_file(text, path, pr, policy, core.catalog, iter(core.new_run_id, None))
            except PlanError as exc:
                await core.reply(conv, path, conv.say("reply.autotrain.config_error", error=exc))
                continue
            if not planned:
                continue  # ordinary YAML (no `tunebot: train` marker): not ours
            facts = await self.comments.actor_facts(conv, pull, None)
            decision = authz.authorize(Command("train", {"model": planned[0].job.model.name}), facts, policy,
                                       core.now())
            if isinstance(decision, (authz.Denied, authz.NeedsApproval)):
                reason = decision.reason if isinstance(decision, authz.Denied) else decision.how
                await core.reply(conv, path, conv.say("reply.autotrain.refused", path=path, reason=reason))
                continue
            cmd = Command("train", {}, line=f"(auto-train: {path})")
            if await held_for_approval(self.parts, conv, pull, planned, cmd.line, cmd.line, path):
                continue
            for j, pj in enumerate(planned):
                await jobs.launch(conv, pull, cmd, pj, f"{path}:{j}")
