"""The comment flow: a comment (or a Slack command speaking for a GitHub user) is parsed, each command is authorized
against the commenter's real permission and the repository's policy, and the verb's handler runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bot.core import Conversation
from bot.github.port import PullInfo
from bot.github.sansio import IssueComment
from bot.handlers import HANDLERS, Invocation, Parts
from bot.handlers.runs import RETRYABLE
from bot.store import Run
from commands import authz
from commands.decision import Command, Ignore, Parsed, Reply
from commands.jobspec import SpecError
from commands.parse import parse_comment
from commands.plan import PlanError
from commands.policy import DEFAULT_POLICY, Policy

log = logging.getLogger(__name__)

_LEVELS = ("admin", "maintain", "write", "triage", "read", "none")
_ABOUT_RUNS = ("cancel", "retry", "status", "resume")


class Comments:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.core = parts.core
        self.core.metrics.describe("commands_total", "counter", "Commands by verb and outcome.")

    async def on_comment(self, ev: IssueComment, trigger: str) -> None:
        if ev.action != "created":
            return  # edits and deletions never run anything: the text someone approved may have changed
        if ev.is_bot or ev.user_login == self.core.bot_login:
            return
        await self.handle_text(ev.repo, ev.issue_number, ev.user_login, ev.body, trigger=trigger,
                               is_pr=ev.is_pull_request, association=ev.author_association,
                               comment_id=ev.comment_id, installation_id=ev.installation_id)

    async def handle_text(self, repo: str, number: int, actor: str, text: str, *, trigger: str,
                          is_pr: bool = True, association: str = "NONE", comment_id: int | None = None,
                          installation_id: int | None = None,
                          echo: Callable[[str], Awaitable[None]] | None = None) -> None:
        """Run command text on behalf of GitHub user `actor` in a PR/issue thread, exactly as a comment would
        (Slack commands come through here too; `echo` also receives every reply)."""
        core = self.core
        command_name = core.config.command_name
        # Most comments hold no command: decide that without a single GitHub call.
        if isinstance(parse_comment(text, catalog=core.catalog, policy=DEFAULT_POLICY, bot_login=command_name),
                      Ignore):
            return
        policy = await core.policy_for(repo)
        conv = Conversation(repo, number, is_pr, actor, association, trigger,
                            policy if isinstance(policy, Policy) else DEFAULT_POLICY, comment_id, installation_id,
                            echo)
        if not isinstance(policy, Policy):
            await core.reply(conv, "policy", conv.say("reply.policy_error", error=policy.render()))
            return
        decision = parse_comment(text, catalog=core.catalog, policy=policy, bot_login=command_name)
        if isinstance(decision, Ignore):
            log.info("%s: %s", trigger, decision.reason)
            return
        if isinstance(decision, Reply):
            await core.reply(conv, "parse", decision.text)
            return
        if comment_id is not None:
            await core.write(f"react:{comment_id}", "reaction", {"repo": repo, "comment_id": comment_id,
                                                                 "content": "eyes"})
        await self.run_commands(conv, decision)

    async def run_commands(self, conv: Conversation, decision: Parsed) -> None:
        pull = await self.core.github.get_pull(conv.repo, conv.number) if conv.is_pr else None
        for i, cmd in enumerate(decision.commands):
            try:
                await self.run_command(conv, pull, cmd, str(i))
            except (PlanError, SpecError) as exc:
                self.core.metrics.inc("commands_total", labels={"verb": cmd.verb, "outcome": "plan_error"})
                await self.core.reply(conv, str(i), conv.say("reply.plan_error", command=cmd.render(), error=exc))

    async def run_command(self, conv: Conversation, pull: PullInfo | None, cmd: Command, key: str) -> None:
        target = await self.target_run(conv, cmd) if cmd.verb in _ABOUT_RUNS else None
        where, where_pull = conv, pull
        if cmd.verb in ("retry", "resume") and target is not None and target.number is not None \
                and target.number != conv.number:
            # A retry is judged on the run's own PR (is it a fork? approved at which commit?), not on the thread
            # it happens to be typed in; under today's policy.
            where = replace(conv, number=target.number)
            where_pull = await self.core.github.get_pull(target.repo, target.number)
        facts = await self.actor_facts(where, where_pull, target)
        decision = authz.authorize(cmd, facts, conv.policy, self.core.now())
        if isinstance(decision, (authz.Denied, authz.NeedsApproval)):
            outcome = "denied" if isinstance(decision, authz.Denied) else "needs_approval"
            self.core.metrics.inc("commands_total", labels={"verb": cmd.verb, "outcome": outcome})
            reason = decision.reason if isinstance(decision, authz.Denied) else decision.how
            await self.core.reply(conv, key, conv.say("reply.refused", actor=conv.actor, command=cmd.render(),
                                                      reason=reason))
            return
        self.core.metrics.inc("commands_total", labels={"verb": cmd.verb, "outcome": "allowed"})
        await HANDLERS[cmd.verb](self.parts, Invocation(conv, pull, cmd, target, facts, key))

    async def actor_facts(self, conv: Conversation, pull: PullInfo | None, target: Run | None) -> authz.ActorFacts:
        store = self.core.store
        perm = await self.core.github.get_permission(conv.repo, conv.actor)
        level = perm.role_name if perm.role_name in _LEVELS else perm.permission
        grants: tuple[authz.Grant, ...] = ()
        if pull is not None:
            g = await store.grant_for(conv.repo, conv.number, pull.head_sha)
            if g is not None:
                grants = (authz.Grant(g.head_sha, g.granted_by, g.created_at),)
        today = self.core.now().date()
        usage = await store.usage(conv.repo, conv.actor, today)  # runs per person
        repo_seconds = await store.repo_gpu_seconds(conv.repo, today)  # GPU hours per repository
        return authz.ActorFacts(
            login=conv.actor, permission=level, is_bot=conv.actor.endswith("[bot]"),
            author_association=conv.association, pr_from_fork=bool(pull and pull.is_fork),
            head_sha=pull.head_sha if pull else "", grants=grants, runs_today=usage.runs,
            gpu_hours_today=repo_seconds / 3600.0,
            run_owner=target.actor if target else None,
            run_trains=bool(target and target.kind in ("train", "train+eval")),
            run_sha=target.head_sha if target else None)

    async def target_run(self, conv: Conversation, cmd: Command) -> Run | None:
        """The run a /status, /cancel or /retry is about: the one it names (in this repository), or else this
        PR's latest run that the verb can act on."""
        store = self.core.store
        wanted = cmd.get("run")
        if isinstance(wanted, str) and wanted:
            run = await store.get_run(wanted)
            return run if run is not None and run.repo == conv.repo else None
        if cmd.verb == "status":
            return None  # the whole PR's list
        runs = await store.runs_for_pr(conv.repo, conv.number)
        if cmd.verb == "cancel":
            runs = [r for r in runs if not r.finished]
        elif cmd.verb == "retry":
            runs = [r for r in runs if r.state in RETRYABLE]
        elif cmd.verb == "resume":
            runs = [r for r in runs if r.state in RETRYABLE and r.kind in ("train", "train+eval")]
        return runs[0] if runs else None
