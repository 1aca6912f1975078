"""Who may run what: facts about the actor, the PR and quota use in; Allowed, Denied(reason) or NeedsApproval(how).

Every refusal says what to do next. Approvals of untrusted (fork) PRs are bound to the head SHA they were given
for: a new push voids them (Prow's `/ok-to-test` persisted across pushes and was abused for crypto-mining).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from .decision import Command
from .policy import PERMISSIONS, Policy, permission_rank
from .verbs import get_spec
from .verbs.base import Gate


@dataclass(frozen=True)
class Grant:
    """A maintainer's `/ok-to-train` for one head commit of one PR."""

    sha: str
    granted_by: str
    granted_at: datetime


@dataclass(frozen=True)
class ActorFacts:
    """What the caller found out about the comment's author and the PR (GitHub's permission API, the store)."""

    login: str
    permission: str  # admin | maintain | write | triage | read | none (the collaborator permission API)
    is_bot: bool = False
    author_association: str = "NONE"  # a hint only (OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, …), never authority
    pr_from_fork: bool = False
    head_sha: str = ""
    grants: tuple[Grant, ...] = ()  # approvals recorded on this PR (any SHA; only the head's count)
    runs_today: int = 0  # runs this user started in the current UTC day
    gpu_hours_today: float = 0.0  # GPU hours this repository used in the current UTC day
    run_owner: str | None = None  # /cancel, /retry: who started the run the command is about
    run_trains: bool = False  # /retry: whether that run trains (then training permission is needed)
    run_sha: str | None = None  # /retry: the commit that run was for (the other facts are of that run's PR)


@dataclass(frozen=True)
class Allowed:
    note: str = ""  # for the log / the acknowledgement (e.g. which approval let it through)


@dataclass(frozen=True)
class Denied:
    reason: str


@dataclass(frozen=True)
class NeedsApproval:
    how: str


Authorization: TypeAlias = Allowed | Denied | NeedsApproval

_WHAT = {"train": "training", "eval": "evaluation", "approve": "approving untrusted PRs", "read": "this command"}
_TRUSTED_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")


def required_level(gate: Gate, policy: Policy) -> str:
    return {
        "train": policy.min_permission_train,
        "eval": policy.min_permission_eval,
        "approve": policy.min_permission_approve,
        "read": "read",
    }[gate]


def _gate(command: Command, facts: ActorFacts) -> Gate:
    spec = get_spec(command.verb)
    assert spec is not None
    if command.verb == "retry" and facts.run_trains:
        return "train"
    return spec.gate


def _dispatches(command: Command) -> bool:
    spec = get_spec(command.verb)
    return spec is not None and spec.dispatches


def short(sha: str) -> str:
    return sha[:7] if sha else "(unknown)"


def grant_valid(grant: Grant, head_sha: str, policy: Policy, now: datetime) -> bool:
    """A grant counts only for the exact head commit it was given on, and only for the policy's TTL."""
    if not head_sha or grant.sha.lower() != head_sha.lower():
        return False
    age = _aware(now) - _aware(grant.granted_at)
    return timedelta(0) <= age <= timedelta(hours=policy.approval_ttl_hours)


def authorize(command: Command, facts: ActorFacts, policy: Policy, now: datetime) -> Authorization:
    """Decide whether `facts.login` may run `command` now. Pure: the caller gathers the facts."""
    if facts.is_bot:
        return Denied(f"@{facts.login} is a bot; tunebot takes commands from people only")
    if get_spec(command.verb) is None:
        return Denied(f"unknown command `/{command.verb[:40]}`")  # the parser never produces one; refuse if it did
    gate = _gate(command, facts)
    need = required_level(gate, policy)
    have = facts.permission if facts.permission in PERMISSIONS else "none"
    owner = facts.run_owner is not None and facts.run_owner.lower() == facts.login.lower()
    if command.verb == "cancel" and owner and permission_rank(have) >= permission_rank("read"):
        return Allowed("cancelling a run you started")
    if permission_rank(have) < permission_rank(need):
        return Denied(_permission_reason(facts, have, need, gate))
    if command.verb == "ok-to-train":
        return _approve(command, facts)
    if not _dispatches(command):
        return Allowed()
    note = ""
    if facts.pr_from_fork:
        if policy.fork_policy == "deny":
            return Denied("this PR comes from a fork, and this repository does not run jobs for fork PRs "
                          "(`forks: deny` in .tunebot.yml); push the branch to this repository instead")
        if policy.fork_policy == "approval":
            if command.verb in ("retry", "resume") and facts.run_sha \
                    and facts.run_sha.lower() != facts.head_sha.lower():
                return Denied(f"that run was for commit {short(facts.run_sha)}, but this fork PR's head is now "
                              f"{short(facts.head_sha)}: an approval covers only the head commit. Comment the "
                              "command again once the new head is approved with `/ok-to-train`")
            valid = [g for g in facts.grants if grant_valid(g, facts.head_sha, policy, now)]
            if not valid:
                return NeedsApproval(_approval_how(facts, policy, now))
            note = f"approved by @{valid[-1].granted_by} at {short(facts.head_sha)}"
    quota = _quota(facts, policy, now)
    if quota is not None:
        return quota
    return Allowed(note)


def _permission_reason(facts: ActorFacts, have: str, need: str, gate: Gate) -> str:
    reason = f"you have `{have}` permission; {_WHAT[gate]} needs `{need}`."
    if have in ("none", "read"):
        # slash-command-dispatch #120: access granted only through a nested team is invisible to the permission API.
        who = (f" GitHub lists you as {facts.author_association.lower()}, but members"
               if facts.author_association in _TRUSTED_ASSOCIATIONS else " Members")
        reason += (f"{who} who get access only through a nested team can read as `{have}` — ask an admin to add "
                   "you (or your team) to the repository directly.")
    else:
        reason += " Ask a maintainer to run it, or to raise your permission."
    return reason


def _approval_how(facts: ActorFacts, policy: Policy, now: datetime) -> str:
    level = policy.min_permission_approve
    stale = [g for g in facts.grants if g.sha.lower() != facts.head_sha.lower()]
    expired = [g for g in facts.grants if g.sha.lower() == facts.head_sha.lower()
               and not grant_valid(g, facts.head_sha, policy, now)]
    how = (f"this PR comes from a fork; someone with `{level}` permission must review it and comment "
           f"`/ok-to-train` on head {short(facts.head_sha)}")
    if expired:
        how += f" (the approval for this commit is older than {policy.approval_ttl_hours:g} h)"
    elif stale:
        how += f" (the earlier approval was for {short(stale[-1].sha)}; a new push needs a new approval)"
    return how


def _approve(command: Command, facts: ActorFacts) -> Authorization:
    named = command.args.get("sha")
    if isinstance(named, str) and facts.head_sha.lower() != named.lower():
        return Denied(f"the PR's head is now {short(facts.head_sha)}, not {named[:7]}: new commits arrived; review "
                      f"them and approve again")
    if not facts.pr_from_fork:
        return Allowed("this PR is not from a fork; no approval is needed")
    return Allowed(f"approves head {short(facts.head_sha)}")


def make_grant(command: Command, facts: ActorFacts, policy: Policy, now: datetime) -> Grant | Denied:
    """The grant an authorized `/ok-to-train` records: bound to the current head SHA."""
    decision = authorize(command, facts, policy, now)
    if isinstance(decision, Denied):
        return decision
    if not facts.head_sha:
        return Denied("cannot approve: the PR's head commit is unknown")
    return Grant(sha=facts.head_sha.lower(), granted_by=facts.login, granted_at=now)


def _quota(facts: ActorFacts, policy: Policy, now: datetime) -> Denied | None:
    q = policy.quotas
    reset = _until_reset(now)
    if q.runs_per_user_per_day is not None and facts.runs_today >= q.runs_per_user_per_day:
        return Denied(f"you have started {facts.runs_today} runs today; the limit is {q.runs_per_user_per_day} per "
                      f"person per day (resets at 00:00 UTC, in {reset})")
    if q.gpu_hours_per_day is not None and facts.gpu_hours_today >= q.gpu_hours_per_day:
        return Denied(f"this repository has used {facts.gpu_hours_today:.1f} of its {q.gpu_hours_per_day:g} GPU "
                      f"hours today (resets at 00:00 UTC, in {reset})")
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _until_reset(now: datetime) -> str:
    utc = _aware(now).astimezone(UTC)
    midnight = (utc + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = int((midnight - utc).total_seconds() // 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours} h {mins:02d} min" if hours else f"{mins} min"
