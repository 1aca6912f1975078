"""PyGithubPort against FakeGitHub: every port call, dispatch 200/204, faults, retries and GitHub App auth."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import github
import pytest
from github.GithubRetry import GithubRetry

from bot.github.port import (
    CheckOutput,
    Conflict,
    DispatchResult,
    Forbidden,
    GitHubError,
    GitHubPort,
    NotFound,
    Permission,
    RateLimited,
    RetryPolicy,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from bot.github.pygithub_impl import PyGithubPort
from tests.fakes.github import BOT_LOGIN, FakeGitHub, generate_app_key, public_key_of

REPO = "octo/demo"


def _setup(gh: FakeGitHub, **kw: Any) -> None:
    repo = gh.add_repo(REPO, **kw)
    repo.add_workflow("tunebot.yml", "tunebot", inputs={"job", "run_id", "head_sha"})
    repo.add_pull(7, head_sha="a" * 40, author="alice", files=["configs/train.yaml", "data/x.jsonl"])
    repo.add_pull(8, head_sha="b" * 40, head_repo="mallory/demo", author="mallory")
    repo.add_pull(9, head_sha="c" * 40, author="ghost")
    repo.pulls[9].head_repo = None  # the fork was deleted
    repo.set_permission("alice", "write", "maintain")
    repo.set_permission("bob", "read", "triage")
    repo.add_file(".tunebot.yml", "allow:\n  - alice\n")
    repo.add_file(".tunebot.yml", "allow: []\n", ref="a" * 40)


def _port(gh: FakeGitHub, sleeps: list[float], **kw: Any) -> PyGithubPort:
    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    kw.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.01))
    return PyGithubPort.with_token(gh.url, gh.token, writes_per_minute=0, writes_per_hour=0, sleep=fake_sleep, **kw)


def test_the_port_satisfies_the_protocol(github_port: PyGithubPort) -> None:
    assert isinstance(github_port, GitHubPort)


# ----------------------------------------------------------------------------- reads
async def test_permission_reports_role_name(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    assert await github_port.get_permission(REPO, "alice") == Permission("write", "maintain")
    perm, role = await github_port.get_permission(REPO, "bob")
    assert (perm, role) == ("read", "triage")
    assert await github_port.get_permission(REPO, "stranger") == Permission("read", "read")
    assert fake_github.requests[-1].path == f"/repos/{REPO}/collaborators/stranger/permission"


async def test_get_pull_same_repo_fork_and_deleted_fork(fake_github: FakeGitHub,
                                                        github_port: PyGithubPort) -> None:
    _setup(fake_github)
    same = await github_port.get_pull(REPO, 7)
    assert (same.head_sha, same.head_repo, same.base_repo, same.is_fork, same.author, same.state) == (
        "a" * 40, REPO, REPO, False, "alice", "open")
    fork = await github_port.get_pull(REPO, 8)
    assert fork.is_fork and fork.head_repo == "mallory/demo" and fork.base_ref == "main"
    gone = await github_port.get_pull(REPO, 9)
    assert gone.is_fork and gone.head_repo is None
    with pytest.raises(NotFound):
        await github_port.get_pull(REPO, 404)
    with pytest.raises(NotFound):
        await github_port.get_pull("octo/missing", 1)


async def test_contents_default_branch_ref_and_missing(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    fake_github.repos[REPO].add_file("cfg/中文.yaml", "name: 数据\n")
    assert await github_port.get_file(REPO, ".tunebot.yml") == "allow:\n  - alice\n"
    assert await github_port.get_file(REPO, ".tunebot.yml", ref="a" * 40) == "allow: []\n"
    assert await github_port.get_file(REPO, "cfg/中文.yaml") == "name: 数据\n"
    assert await github_port.get_file(REPO, "nope.yml") is None
    assert fake_github.requests_to("GET", "/repos/*/contents/*")[1].query == {"ref": "a" * 40}


async def test_non_utf8_file_is_a_clear_error(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    fake_github.repos[REPO].add_file("latin.txt", b"caf\xe9")
    with pytest.raises(GitHubError, match="not UTF-8"):
        await github_port.get_file(REPO, "latin.txt")


async def test_pull_files_follow_pagination(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    many = [f"data/part-{i:03d}.jsonl" for i in range(130)]
    fake_github.repos[REPO].pulls[7].files = many
    assert await github_port.list_pull_files(REPO, 7) == many
    pages = fake_github.requests_to("GET", "/repos/*/pulls/7/files")
    assert len(pages) == 2 and pages[1].query["page"] == "2"


async def test_default_branch_is_cached(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github, default_branch="trunk")
    assert await github_port.default_branch(REPO) == "trunk"
    assert await github_port.default_branch(REPO) == "trunk"
    assert len(fake_github.requests_to("GET", f"/repos/{REPO}")) == 1


# ----------------------------------------------------------------------------- comments and reactions
async def test_comment_create_edit_get_list(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    other = fake_github.add_comment(REPO, 7, "/train tiny", login="alice")
    ref = await github_port.create_comment(REPO, 7, "<!-- tunebot:run=1 -->\nqueued")
    assert ref.html_url.endswith(f"#issuecomment-{ref.id}")
    await github_port.edit_comment(REPO, ref.id, "<!-- tunebot:run=1 -->\nrunning")
    body, author = await github_port.get_comment(REPO, ref.id)
    assert (body, author) == ("<!-- tunebot:run=1 -->\nrunning", BOT_LOGIN)
    assert await github_port.get_comment(REPO, other) == ("/train tiny", "alice")
    listed = await github_port.list_comments(REPO, 7)
    assert [(c.id, c.author_login, c.author_type) for c in listed] == [(other, "alice", "User"),
                                                                       (ref.id, BOT_LOGIN, "Bot")]
    assert fake_github.comments[ref.id].edits == 1
    with pytest.raises(Forbidden):
        await github_port.edit_comment(REPO, other, "hijack")  # the fake, like GitHub, refuses
    assert fake_github.comments[other].body == "/train tiny"
    with pytest.raises(NotFound):
        await github_port.get_comment(REPO, 999_999)


async def test_comment_too_long_is_validation_failed(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    with pytest.raises(ValidationFailed, match="Body is too long"):
        await github_port.create_comment(REPO, 7, "x" * 65537)
    assert fake_github.comments_on(REPO, 7) == []


async def test_reactions(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    cid = fake_github.add_comment(REPO, 7, "/eval cmmlu", login="alice")
    await github_port.add_reaction(REPO, cid, "eyes")
    await github_port.add_reaction(REPO, cid, "eyes")  # GitHub answers 200 the second time; no error
    await github_port.add_reaction(REPO, cid, "rocket")
    assert fake_github.comments[cid].reactions == [("eyes", BOT_LOGIN), ("rocket", BOT_LOGIN)]
    with pytest.raises(ValueError, match="unknown reaction"):
        await github_port.add_reaction(REPO, cid, "smile")


async def test_fake_validates_bodies_like_github(fake_github: FakeGitHub) -> None:
    _setup(fake_github)
    cid = fake_github.add_comment(REPO, 7, "hi")
    headers = {"Authorization": f"token {fake_github.token}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{fake_github.url}/repos/{REPO}/issues/comments/{cid}/reactions",
                          json={"content": "smile"}, headers=headers) as r:
            assert r.status == 422
            assert "is not one of" in (await r.json())["message"]
        async with s.post(f"{fake_github.url}/repos/{REPO}/issues/7/comments", json={}, headers=headers) as r:
            assert r.status == 422 and '"body" wasn\'t supplied' in (await r.json())["message"]
        async with s.post(f"{fake_github.url}/repos/{REPO}/actions/workflows/tunebot.yml/dispatches",
                          json={"ref": "main", "inputs": {f"k{i}": "v" for i in range(26)}}, headers=headers) as r:
            assert r.status == 422  # maxProperties 25 from the OpenAPI schema
        async with s.get(f"{fake_github.url}/repos/{REPO}/pulls/7", headers={"Authorization": "token nope"}) as r:
            assert r.status == 401 and (await r.json())["message"] == "Bad credentials"


# ----------------------------------------------------------------------------- dispatch and runs
async def test_dispatch_200_returns_run_details(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    seen: list[tuple[int, dict[str, Any]]] = []

    async def hook(run: Any, inputs: dict[str, Any]) -> None:
        seen.append((run.id, inputs))
        fake_github.set_run_status(run.id, "in_progress")

    fake_github.on_dispatch = hook
    inputs = {"job": '{"kind": "train"}', "run_id": "tb-1f2e", "head_sha": "a" * 40}
    result = await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", inputs)
    assert result.workflow_run_id is not None and result.html_url
    sent = fake_github.requests_to("POST", "/repos/*/actions/workflows/tunebot.yml/dispatches")[0].json
    assert sent == {"ref": "main", "inputs": inputs, "return_run_details": True}
    await fake_github.drain()
    assert seen == [(result.workflow_run_id, inputs)]
    run = await github_port.get_workflow_run(REPO, result.workflow_run_id)
    assert (run.display_title, run.status, run.event, run.conclusion) == ("tunebot tb-1f2e", "in_progress",
                                                                           "workflow_dispatch", None)
    assert run.head_sha == fake_github.repos[REPO].branches["main"]


async def test_dispatch_204_falls_back_to_run_name(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    fake_github.dispatch_mode = "no_content"  # GHES / older API: 204, no body
    started = datetime.now(UTC)
    await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {"run_id": "tb-older"})
    result = await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {"run_id": "tb-mine"})
    assert result == DispatchResult(None, None, None)
    found = await github_port.find_run_by_name(REPO, "tunebot.yml", "tb-mine", started)
    assert found is not None and found.display_title == "tunebot tb-mine"
    assert found.id == max(fake_github.runs)
    listed = fake_github.requests_to("GET", "/repos/*/actions/workflows/tunebot.yml/runs")[-1]
    assert listed.query["event"] == "workflow_dispatch" and listed.query["created"].startswith(">=")
    assert await github_port.find_run_by_name(REPO, "tunebot.yml", "tb-absent", started) is None
    later = started + timedelta(hours=2)
    assert await github_port.find_run_by_name(REPO, "tunebot.yml", "tb-mine", later) is None


async def test_dispatch_errors(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    with pytest.raises(NotFound):
        await github_port.dispatch_workflow(REPO, "nope.yml", "main", {})
    with pytest.raises(ValidationFailed, match="Unexpected inputs"):
        await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {"evil": "1"})
    with pytest.raises(ValidationFailed, match="No ref found"):
        await github_port.dispatch_workflow(REPO, "tunebot.yml", "no-such-branch", {})
    with pytest.raises(ValueError, match="must be strings"):
        await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {"job": 3})  # type: ignore[dict-item]
    assert fake_github.runs == {}


async def test_cancel_run(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    res = await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {"run_id": "tb-c"})
    assert res.workflow_run_id is not None
    assert await github_port.cancel_workflow_run(REPO, res.workflow_run_id) is True
    run = await github_port.get_workflow_run(REPO, res.workflow_run_id)
    assert (run.status, run.conclusion) == ("completed", "cancelled")
    assert await github_port.cancel_workflow_run(REPO, res.workflow_run_id) is False  # 409: already completed
    with pytest.raises(NotFound):
        await github_port.cancel_workflow_run(REPO, 12345)


async def test_check_runs(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ref = await github_port.create_check_run(REPO, "tunebot / train", "a" * 40, "in_progress",
                                             output=CheckOutput("Training", "step 0/100"), external_id="job-1",
                                             started_at=t0)
    check = fake_github.check_runs[ref.id]
    assert (check.status, check.output, check.started_at) == ("in_progress", {"title": "Training",
                                                                              "summary": "step 0/100"},
                                                              "2026-05-01T12:00:00Z")
    await github_port.update_check_run(REPO, ref.id, output=CheckOutput("Training", "step 50/100", "loss 1.2"))
    await github_port.update_check_run(REPO, ref.id, conclusion="success",
                                       completed_at=t0 + timedelta(minutes=5))
    assert (check.status, check.conclusion, check.completed_at) == ("completed", "success", "2026-05-01T12:05:00Z")
    assert check.output == {"title": "Training", "summary": "step 50/100", "text": "loss 1.2"}
    with pytest.raises(ValidationFailed, match="conclusion is required"):
        await github_port.create_check_run(REPO, "x", "a" * 40, "completed")
    with pytest.raises(ValidationFailed):
        await github_port.create_check_run(REPO, "x", "a" * 40, "done")  # not in the schema's enum


# ----------------------------------------------------------------------------- retries
async def test_5xx_then_success(fake_github: FakeGitHub, github_port: PyGithubPort,
                                recorded_sleeps: list[float]) -> None:
    _setup(fake_github)
    fake_github.fail_next("GET", "/repos/*/pulls/7", times=2, status=502)
    assert (await github_port.get_pull(REPO, 7)).number == 7
    assert len(fake_github.requests_to("GET", "/repos/*/pulls/7")) == 3
    assert len(recorded_sleeps) == 2 and recorded_sleeps[1] > recorded_sleeps[0] > 0


async def test_5xx_gives_up_after_bounded_attempts(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    fake_github.fail_next("GET", "/repos/*/pulls/7", times=10, status=503)
    with pytest.raises(ServerError) as info:
        await github_port.get_pull(REPO, 7)
    assert info.value.status == 503
    assert len(fake_github.requests_to("GET", "/repos/*/pulls/7")) == 4


async def test_secondary_rate_limit_waits_retry_after(fake_github: FakeGitHub, github_port: PyGithubPort,
                                                     recorded_sleeps: list[float]) -> None:
    _setup(fake_github)
    fake_github.rate_limit_next("POST", "/repos/*/issues/7/comments", retry_after=7)
    ref = await github_port.create_comment(REPO, 7, "hello")
    assert recorded_sleeps == [7.0]
    assert [c.id for c in fake_github.comments_on(REPO, 7)] == [ref.id]


async def test_secondary_rate_limit_real_wait(fake_github: FakeGitHub) -> None:
    """With the real asyncio.sleep: a 429 + Retry-After: 1 delays the retry by at least one second."""
    _setup(fake_github)
    port = PyGithubPort.with_token(fake_github.url, fake_github.token, writes_per_minute=0, writes_per_hour=0)
    fake_github.rate_limit_next("GET", "/repos/*/collaborators/*/permission", retry_after=1, status=429)
    try:
        t0 = time.monotonic()
        assert (await port.get_permission(REPO, "alice")).role_name == "maintain"
        elapsed = time.monotonic() - t0
    finally:
        await port.close()
    assert 1.0 <= elapsed < 3.0
    assert port.waits == [1.0]


async def test_primary_rate_limit_waits_until_reset(fake_github: FakeGitHub, github_port: PyGithubPort,
                                                    recorded_sleeps: list[float]) -> None:
    _setup(fake_github)
    fake_github.rate_limit_next("GET", "/repos/*/pulls/7", retry_after=None, primary_reset_in=20)
    await github_port.get_pull(REPO, 7)
    assert len(recorded_sleeps) == 1 and 19.0 <= recorded_sleeps[0] <= 22.0


async def test_rate_limit_longer_than_max_delay_is_raised(fake_github: FakeGitHub) -> None:
    _setup(fake_github)
    sleeps: list[float] = []
    port = _port(fake_github, sleeps, retry=RetryPolicy(max_attempts=3, max_delay=30))
    fake_github.rate_limit_next("GET", "/repos/*/pulls/7", retry_after=120)
    try:
        with pytest.raises(RateLimited) as info:
            await port.get_pull(REPO, 7)
    finally:
        await port.close()
    assert info.value.retry_after == 120 and sleeps == []


async def test_plain_403_is_not_retried(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    fake_github.fail_next("POST", "/repos/*/check-runs", status=403)
    with pytest.raises(Forbidden):
        await github_port.create_check_run(REPO, "x", "a" * 40)
    assert len(fake_github.requests_to("POST", "/repos/*/check-runs")) == 1


async def test_comment_502_after_apply_is_not_posted_twice(fake_github: FakeGitHub,
                                                           github_port: PyGithubPort) -> None:
    _setup(fake_github)
    fake_github.fail_next("POST", "/repos/*/issues/7/comments", status=502, after_apply=True)
    ref = await github_port.create_comment(REPO, 7, "exactly once")
    assert [c.id for c in fake_github.comments_on(REPO, 7)] == [ref.id]
    fake_github.fail_next("POST", "/repos/*/issues/7/comments", status=502)  # not applied: retried
    await github_port.create_comment(REPO, 7, "second")
    assert [c.body for c in fake_github.comments_on(REPO, 7)] == ["exactly once", "second"]


async def test_dispatch_502_after_apply_never_starts_two_runs(fake_github: FakeGitHub,
                                                              github_port: PyGithubPort) -> None:
    _setup(fake_github)
    fake_github.fail_next("POST", "/repos/*/dispatches", status=502, after_apply=True)
    res = await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {"run_id": "tb-once"})
    assert len(fake_github.runs) == 1 and res.workflow_run_id == next(iter(fake_github.runs))
    # Without a run-name token the port cannot tell, so it refuses to dispatch again and reports the error.
    fake_github.fail_next("POST", "/repos/*/dispatches", status=502, after_apply=True)
    with pytest.raises(ServerError):
        await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {"job": "{}"})
    assert len(fake_github.runs) == 2


def test_pygithub_githubretry_honours_retry_after_but_reposts_on_502() -> None:
    """Why the port does its own retries: PyGithub's GithubRetry waits Retry-After, but re-POSTs blindly."""
    with FakeGitHub() as gh:  # served from its own thread: PyGithub blocks
        _setup(gh)
        client = github.Github(base_url=gh.url, auth=github.Auth.Token(gh.token), retry=GithubRetry(total=3),
                               seconds_between_requests=None, seconds_between_writes=None, lazy=True)
        gh.rate_limit_next("GET", "/repos/*/pulls/7", retry_after=1)
        t0 = time.monotonic()
        assert client.get_repo(REPO).get_pull(7).head.sha == "a" * 40
        assert time.monotonic() - t0 >= 1.0
        gh.fail_next("POST", "/repos/*/issues/7/comments", status=502, after_apply=True)
        client.get_repo(REPO).get_issue(7).create_comment("once?")
        assert [c.body for c in gh.comments_on(REPO, 7)] == ["once?", "once?"]
        client.close()


# ----------------------------------------------------------------------------- GitHub App auth
class _Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def app_key() -> str:
    return generate_app_key()


async def test_app_auth_mints_caches_and_refreshes(app_key: str) -> None:
    clock = _Clock()
    async with FakeGitHub(app_id=4242, app_public_key=public_key_of(app_key)) as gh:
        _setup(gh, installation_id=77)
        port = PyGithubPort.with_app(gh.url, 4242, app_key, clock=clock, writes_per_minute=0, writes_per_hour=0)
        try:
            await port.get_pull(REPO, 7)
            await port.create_comment(REPO, 7, "as the app")
            assert [r.path for r in gh.requests[:3]] == [
                f"/repos/{REPO}/installation", "/app/installations/77/access_tokens", f"/repos/{REPO}/pulls/7"]
            assert len(gh.issued_tokens) == 1
            inst, token, expires = gh.issued_tokens[0]
            assert inst == 77 and gh.requests[2].authorization == f"token {token}"
            assert gh.comments_on(REPO, 7)[0].login == "tunebot[bot]"
            clock.now = expires - timedelta(minutes=6)  # still fresh: cached
            await port.get_pull(REPO, 7)
            assert len(gh.issued_tokens) == 1
            clock.now = expires - timedelta(minutes=4)  # inside the 5-minute margin: refreshed
            await port.get_pull(REPO, 7)
            assert len(gh.issued_tokens) == 2
            assert gh.requests[-1].authorization == f"token {gh.issued_tokens[1][1]}"
            assert len(gh.requests_to("GET", f"/repos/{REPO}/installation")) == 1  # installation id cached
        finally:
            await port.close()


async def test_app_auth_uses_remembered_installation_and_survives_revocation(app_key: str) -> None:
    async with FakeGitHub(app_id=4242, app_public_key=public_key_of(app_key)) as gh:
        _setup(gh, installation_id=5)
        port = PyGithubPort.with_app(gh.url, "4242", app_key, writes_per_minute=0, writes_per_hour=0)
        port.remember_installation(REPO, 5)
        try:
            await port.get_permission(REPO, "alice")
            assert gh.requests_to("GET", f"/repos/{REPO}/installation") == []
            del gh.tokens[gh.issued_tokens[0][1]]  # token revoked server-side
            assert (await port.get_permission(REPO, "alice")).permission == "write"
            assert len(gh.issued_tokens) == 2
        finally:
            await port.close()


async def test_app_auth_errors_are_clear(app_key: str) -> None:
    other_key = generate_app_key()
    async with FakeGitHub(app_id=4242, app_public_key=public_key_of(app_key)) as gh:
        _setup(gh)
        bad = PyGithubPort.with_app(gh.url, 4242, other_key, writes_per_minute=0, writes_per_hour=0)
        wrong_id = PyGithubPort.with_app(gh.url, 1, app_key, writes_per_minute=0, writes_per_hour=0)
        good = PyGithubPort.with_app(gh.url, 4242, app_key, writes_per_minute=0, writes_per_hour=0)
        try:
            with pytest.raises(Unauthorized):
                await bad.get_pull(REPO, 7)
            with pytest.raises(Unauthorized):
                await wrong_id.get_pull(REPO, 7)
            with pytest.raises(NotFound, match="not installed on octo/elsewhere"):
                await good.get_pull("octo/elsewhere", 1)
        finally:
            for p in (bad, wrong_id, good):
                await p.close()
    with pytest.raises(ValueError, match="PEM"):
        PyGithubPort.with_app("http://127.0.0.1:1", 1, "not a key")
    with pytest.raises(ValueError, match="token"):
        PyGithubPort.with_token("http://127.0.0.1:1", "")


async def test_ghes_style_base_url_prefix() -> None:
    async with FakeGitHub(api_prefix="/api/v3", dispatch_mode="no_content") as gh:
        _setup(gh)
        port = _port(gh, [])
        try:
            assert gh.url.endswith("/api/v3")
            assert (await port.get_pull(REPO, 7)).head_sha == "a" * 40
            assert await port.dispatch_workflow(REPO, "tunebot.yml", "main", {"run_id": "x"}) == DispatchResult(
                None, None, None)
            assert (await port.find_run_by_name(REPO, "tunebot.yml", "x", datetime.now(UTC))) is not None
        finally:
            await port.close()


async def test_conflict_is_typed(fake_github: FakeGitHub, github_port: PyGithubPort) -> None:
    _setup(fake_github)
    res = await github_port.dispatch_workflow(REPO, "tunebot.yml", "main", {})
    assert res.workflow_run_id is not None
    fake_github.set_run_status(res.workflow_run_id, "completed", "success")
    with pytest.raises(Conflict):
        await github_port._call(REPO, lambda g: github_port._raw(
            g, "POST", f"/repos/{REPO}/actions/runs/{res.workflow_run_id}/cancel"))
