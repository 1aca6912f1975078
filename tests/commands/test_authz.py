"""Authorization from facts: permission levels, fork approvals bound to the head SHA, quotas, helpful refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commands import Command
from commands.authz import ActorFacts, Allowed, Denied, Grant, NeedsApproval, authorize, grant_valid, make_grant
from commands.policy import Policy, Quotas, parse_policy

NOW = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)
HEAD = "abc1234def5678abc1234def5678abc1234def56"
TRAIN = Command("train", {"model": "tiny"})
EVAL = Command("eval", {"benchmarks": ("cmmlu",), "model": "tiny"})
STATUS = Command("status")
OK = Command("ok-to-train")


def facts(**kw: object) -> ActorFacts:
    base: dict[str, object] = {"login": "alice", "permission": "write", "head_sha": HEAD}
    base.update(kw)
    return ActorFacts(**base)  # type: ignore[arg-type]


def policy(text: str | None = None) -> Policy:
    result = parse_policy(text)
    assert isinstance(result, Policy)
    return result


LEVELS = [
    (TRAIN, "admin", Allowed), (TRAIN, "maintain", Allowed), (TRAIN, "write", Allowed),
    (TRAIN, "triage", Denied), (TRAIN, "read", Denied), (TRAIN, "none", Denied), (TRAIN, "bogus", Denied),
    (EVAL, "write", Allowed), (EVAL, "read", Denied),
    (STATUS, "read", Allowed), (STATUS, "none", Denied),
    (Command("help"), "read", Allowed), (Command("leaderboard"), "read", Allowed),
    (OK, "maintain", Allowed), (OK, "write", Denied),
    (Command("mystery"), "admin", Denied),
]


@pytest.mark.parametrize(("command", "level", "outcome"), LEVELS)
def test_permission_levels(command: Command, level: str, outcome: type) -> None:
    assert isinstance(authorize(command, facts(permission=level), policy(), NOW), outcome)


def test_refusals_say_what_is_needed_and_what_to_do() -> None:
    result = authorize(TRAIN, facts(permission="read"), policy(), NOW)
    assert result == Denied("you have `read` permission; training needs `write`. Members who get access "
                            "only through a nested team can read as `read` — ask an admin to add you (or your team) "
                            "to the repository directly.")
    triage = authorize(TRAIN, facts(permission="triage"), policy(), NOW)
    assert triage == Denied("you have `triage` permission; training needs `write`. Ask a maintainer to run it, or "
                            "to raise your permission.")


def test_nested_team_members_are_told_why_they_read_as_none() -> None:
    member = authorize(TRAIN, facts(permission="none", author_association="MEMBER"), policy(), NOW)
    assert isinstance(member, Denied)
    assert "GitHub lists you as member, but members who get access only through a nested team can read as `none`" \
        in member.reason
    stranger = authorize(EVAL, facts(permission="none"), policy(), NOW)
    assert isinstance(stranger, Denied) and stranger.reason.startswith("you have `none` permission; evaluation needs")
    assert "can read as `none` — ask an admin to add you" in stranger.reason


def test_policy_levels_apply() -> None:
    strict = policy("permissions: {train: maintain, eval: triage, approve: admin}\n")
    assert isinstance(authorize(TRAIN, facts(permission="write"), strict, NOW), Denied)
    assert isinstance(authorize(EVAL, facts(permission="triage"), strict, NOW), Allowed)
    denied = authorize(OK, facts(permission="maintain", pr_from_fork=True), strict, NOW)
    assert isinstance(denied, Denied) and "approving untrusted PRs needs `admin`" in denied.reason
    open_ = policy("permissions: {eval: none}\n")
    assert isinstance(authorize(EVAL, facts(permission="none"), open_, NOW), Allowed)


def test_bots_are_refused() -> None:
    result = authorize(STATUS, facts(login="dependabot[bot]", is_bot=True, permission="admin"), policy(), NOW)
    assert result == Denied("@dependabot[bot] is a bot; tunebot takes commands from people only")


def test_fork_pr_needs_an_approval_at_the_head_sha() -> None:
    result = authorize(TRAIN, facts(pr_from_fork=True), policy(), NOW)
    assert result == NeedsApproval("this PR comes from a fork; someone with `maintain` permission must review it "
                                   "and comment `/ok-to-train` on head abc1234")
    granted = facts(pr_from_fork=True, grants=(Grant(HEAD, "maria", NOW - timedelta(hours=1)),))
    allowed = authorize(TRAIN, granted, policy(), NOW)
    assert allowed == Allowed("approved by @maria at abc1234")
    assert isinstance(authorize(STATUS, facts(pr_from_fork=True, permission="read"), policy(), NOW), Allowed)


def test_a_new_push_voids_the_approval() -> None:
    old = Grant("0" * 40, "maria", NOW - timedelta(hours=1))
    result = authorize(EVAL, facts(pr_from_fork=True, grants=(old,)), policy(), NOW)
    assert isinstance(result, NeedsApproval)
    assert "the earlier approval was for 0000000; a new push needs a new approval" in result.how


def test_approvals_expire() -> None:
    stale = Grant(HEAD, "maria", NOW - timedelta(hours=73))
    result = authorize(TRAIN, facts(pr_from_fork=True, grants=(stale,)), policy(), NOW)
    assert isinstance(result, NeedsApproval) and "older than 72 h" in result.how
    future = Grant(HEAD, "maria", NOW + timedelta(hours=1))  # clock skew or forgery: never valid
    assert not grant_valid(future, HEAD, policy(), NOW)
    naive = Grant(HEAD, "maria", datetime(2026, 3, 10, 21, 0))  # naive datetimes are read as UTC
    assert grant_valid(naive, HEAD.upper(), policy(), NOW)
    assert not grant_valid(naive, "", policy(), NOW)


def test_fork_policies() -> None:
    deny = authorize(TRAIN, facts(pr_from_fork=True), policy("forks: deny\n"), NOW)
    assert isinstance(deny, Denied) and "`forks: deny`" in deny.reason
    assert authorize(TRAIN, facts(pr_from_fork=True), policy("forks: allow\n"), NOW) == Allowed()


def test_ok_to_train_checks_the_named_sha_and_records_a_grant() -> None:
    maint = facts(login="maria", permission="maintain", pr_from_fork=True)
    assert authorize(OK, maint, policy(), NOW) == Allowed("approves head abc1234")
    assert isinstance(authorize(Command("ok-to-train", {"sha": HEAD}), maint, policy(), NOW), Allowed)
    moved = authorize(Command("ok-to-train", {"sha": "f" * 40}), maint, policy(), NOW)
    assert isinstance(moved, Denied) and "head is now abc1234, not fffffff" in moved.reason
    # A commit that merely shares the head's first digits is another commit (finding 7 of issue 11).
    lookalike = authorize(Command("ok-to-train", {"sha": HEAD[:7] + "0" * 33}), maint, policy(), NOW)
    assert isinstance(lookalike, Denied)
    grant = make_grant(OK, maint, policy(), NOW)
    assert grant == Grant(HEAD, "maria", NOW)
    assert isinstance(make_grant(OK, facts(permission="write", pr_from_fork=True), policy(), NOW), Denied)
    assert isinstance(make_grant(OK, facts(login="maria", permission="admin", head_sha=""), policy(), NOW), Denied)
    same_repo = authorize(OK, facts(login="maria", permission="maintain"), policy(), NOW)
    assert same_repo == Allowed("this PR is not from a fork; no approval is needed")


def test_quotas() -> None:
    pol = policy()
    tired = authorize(TRAIN, facts(runs_today=10), pol, NOW)
    assert tired == Denied("you have started 10 runs today; the limit is 10 per person per day (resets at 00:00 UTC, "
                           "in 2 h 30 min)")
    assert isinstance(authorize(TRAIN, facts(runs_today=9), pol, NOW), Allowed)
    busy = authorize(EVAL, facts(gpu_hours_today=24.0), pol, NOW.replace(hour=23, minute=50))
    assert isinstance(busy, Denied) and "used 24.0 of its 24 GPU hours today" in busy.reason
    assert "in 10 min" in busy.reason
    unlimited = Policy(quotas=Quotas(runs_per_user_per_day=None, gpu_hours_per_day=None))
    assert isinstance(authorize(TRAIN, facts(runs_today=10_000, gpu_hours_today=1e6), unlimited, NOW), Allowed)
    assert isinstance(authorize(STATUS, facts(runs_today=10_000), pol, NOW), Allowed)  # reading costs nothing


def test_cancel_and_retry() -> None:
    cancel = Command("cancel", {"run": "r-1"})
    assert authorize(cancel, facts(permission="read", run_owner="Alice"), policy(), NOW) == Allowed(
        "cancelling a run you started")
    assert isinstance(authorize(cancel, facts(permission="read", run_owner="bob"), policy(), NOW), Denied)
    assert isinstance(authorize(cancel, facts(permission="write", run_owner="bob"), policy(), NOW), Allowed)
    retry = Command("retry", {"run": "r-1"})
    strict = policy("permissions: {train: maintain}\n")
    assert isinstance(authorize(retry, facts(permission="write"), strict, NOW), Allowed)
    denied = authorize(retry, facts(permission="write", run_trains=True), strict, NOW)
    assert isinstance(denied, Denied) and "training needs `maintain`" in denied.reason
    assert isinstance(authorize(retry, facts(runs_today=10), policy(), NOW), Denied)  # a retry is a new run
