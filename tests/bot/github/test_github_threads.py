"""PyGithub is not thread-safe (its connection keeps a request's method, URL and body on a shared object between
`request()` and `getresponse()`; PyGithub PR #2052 is still open), so the port's worker threads must never share
one client: many threads, mixed users with different permissions, and a GIL that switches often must give every
caller its own answer (issue 17, item 1).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bot.github.port import RetryPolicy
from bot.github.pygithub_impl import PyGithubPort
from tests.fakes.github import FakeGitHub

REPO = "octo/demo"
LEVELS = ("admin", "write", "read", "none")


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """A GIL that switches threads every microsecond: a race window of a few bytecodes is hit within seconds."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


async def test_concurrent_calls_never_mix_up_requests(fake_github: FakeGitHub, fast_switching: None) -> None:
    repo = fake_github.add_repo(REPO)
    repo.add_workflow("tunebot.yml", "tunebot", inputs={"run_id", "job"})
    users = [f"user{i:02}" for i in range(40)]
    for i, user in enumerate(users):
        repo.set_permission(user, LEVELS[i % len(LEVELS)])
    port = PyGithubPort.with_token(fake_github.url, fake_github.token, writes_per_minute=0, writes_per_hour=0,
                                   max_workers=8, retry=RetryPolicy(max_attempts=1))
    try:
        # 1,000 permission checks and 200 dispatches (every sixth call), three times: reads and writes share the
        # threads, and one round alone hits the race only most of the time.
        plan = [("dispatch", f"tb-{i:04}") if i % 6 == 0 else ("ask", users[i % len(users)]) for i in range(3600)]
        asks = [who for kind, who in plan if kind == "ask"]
        dispatches = [who for kind, who in plan if kind == "dispatch"]

        async def one(kind: str, who: str) -> Any:
            if kind == "ask":
                return who, (await port.get_permission(REPO, who)).permission
            return await port.dispatch_workflow(REPO, "tunebot.yml", "main", {"run_id": who, "job": who})

        answers = await asyncio.gather(*(one(kind, who) for kind, who in plan), return_exceptions=True)
    finally:
        await port.close()

    errors = [a for a in answers if isinstance(a, BaseException)]
    got = [a for a in answers if isinstance(a, tuple)]
    wrong = [(user, level) for user, level in got if level != LEVELS[users.index(user) % len(LEVELS)]]
    sent = sorted(run.inputs["run_id"] for run in fake_github.runs.values())
    permission_gets = fake_github.requests_to("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")
    asked = sorted(r.path.rsplit("/", 2)[1] for r in permission_gets)
    assert (len(asks), len(dispatches)) == (3000, 600)
    problems = {"failed calls": len(errors), "wrong answers": len(wrong), "answers": 3000 - len(got),
                "dispatches not sent exactly once": len(set(dispatches) ^ set(sent)) + len(sent) - len(set(sent)),
                "permission requests not as asked": asked != sorted(asks)}
    assert not any(problems.values()), f"{problems}; e.g. {errors[:3]} {wrong[:5]}"


async def test_writes_are_paced_below_the_limit_in_every_window(fake_github: FakeGitHub) -> None:
    """Content-creating requests keep to `writes_per_minute` in any 60 s window (here scaled: 240 a minute, so a
    burst of 8 goes out at once and the rest leak at 232 a minute); reads are never held back."""
    repo = fake_github.add_repo(REPO)
    repo.add_pull(7)
    repo.set_permission("alice", "write")
    port = PyGithubPort.with_token(fake_github.url, fake_github.token, writes_per_minute=240, writes_per_hour=0,
                                   retry=RetryPolicy(max_attempts=1))
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await asyncio.gather(*(port.create_comment(REPO, 7, f"c{i}") for i in range(16)),
                             *(port.get_permission(REPO, "alice") for _ in range(16)))
        took = loop.time() - started
    finally:
        await port.close()
    posts = fake_github.requests_to("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
    assert len(posts) == 16 and len(fake_github.comments) == 16
    # 8 at once, then 8 more at 232/min: at least 8 * 60 / 232 = 2.07 s, and no more than the limit allows.
    assert 2.0 <= took < 6.0, took
