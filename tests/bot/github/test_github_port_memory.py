"""InMemoryGitHub is a faithful stand-in for PyGithubPort on the loopback FakeGitHub: every port method, the same
answers and typed errors for the same state, and a record of exactly the requests the real port sends."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from bot.github.port import (
    CheckOutput,
    Conflict,
    Forbidden,
    GitHubError,
    GitHubPort,
    NotFound,
    RetryPolicy,
    ServerError,
    ValidationFailed,
)
from bot.github.pygithub_impl import PyGithubPort
from tests.fakes.github import BOT_LOGIN, FakeGitHub, _sha, git_blob_sha
from tests.fakes.github_port import Call, InMemoryGitHub

REPO = "octo/demo"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PORT_METHODS = {n for n, _ in inspect.getmembers(GitHubPort, inspect.isfunction) if not n.startswith("_")}


def test_every_port_method_is_covered_with_the_ports_signature() -> None:
    gh = InMemoryGitHub()
    assert isinstance(gh, GitHubPort)
    for name in PORT_METHODS:
        theirs = inspect.signature(getattr(GitHubPort, name))
        ours = inspect.signature(getattr(InMemoryGitHub, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        assert [p.kind for p in ours.parameters.values()] == [p.kind for p in theirs.parameters.values()], name
        assert [p.default for p in ours.parameters.values()] == [p.default for p in theirs.parameters.values()], name
        assert inspect.iscoroutinefunction(getattr(InMemoryGitHub, name)), name


def _setup(gh: FakeGitHub | InMemoryGitHub) -> dict[str, Any]:
    repo = gh.add_repo(REPO)
    repo.add_workflow("tunebot.yml", "tunebot", inputs={"job", "run_id", "head_sha"})
    repo.add_pull(7, head_sha="a" * 40, author="alice", files=["configs/train.yaml", "data/x.jsonl"])
    repo.add_pull(8, head_sha="b" * 40, head_repo="mallory/demo", author="mallory")
    repo.add_pull(9, head_sha="c" * 40, author="ghost")
    repo.pulls[9].head_repo = None  # the fork was deleted
    repo.set_permission("alice", "write", "maintain")
    repo.add_file(".tunebot.yml", "allow:\n  - alice\n")
    repo.add_file("weights.bin", b"\xff\xfe not text")
    tagged = repo.add_commit(_sha("v1"), {"data/x.jsonl": "{}\n"}, tags=("v1",))
    for i in range(3):
        repo.add_commit(_sha(f"main-{i}"), {"data/x.jsonl": f"{i}\n"}, branch="main", message=f"Step {i}\n\nwhy")
    gh.add_repo("octo/private", private=True)
    return {"others": gh.add_comment(REPO, 7, "/train tiny", login="alice"), "tagged": tagged}


async def _scenario(port: Any, gh: FakeGitHub | InMemoryGitHub, ids: dict[str, Any]) -> list[Any]:
    """Every port method, the happy path and the refusals; each answer or (error type, status) in order."""
    out: list[Any] = []

    async def step(call: Callable[[], Any]) -> None:
        try:
            out.append(await call())
        except GitHubError as exc:
            out.append((type(exc).__name__, exc.status))
        except ValueError as exc:
            out.append(("ValueError", str(exc)[:30]))

    await step(lambda: port.whoami())
    for user in ("alice", "stranger"):
        await step(lambda u=user: port.get_permission(REPO, u))
    for number in (7, 8, 9, 99):
        await step(lambda n=number: port.get_pull(REPO, n))
    await step(lambda: port.get_permission("octo/missing", "alice"))
    await step(lambda: port.get_permission("octo/private", "stranger"))
    await step(lambda: port.create_comment(REPO, 7, "hello"))
    mine = out[-1].id
    await step(lambda: port.create_comment(REPO, 123, "nobody is there"))
    await step(lambda: port.create_comment(REPO, 7, "x" * 70000))
    await step(lambda: port.edit_comment(REPO, mine, "hello, edited"))
    await step(lambda: port.edit_comment(REPO, ids["others"], "not mine"))
    await step(lambda: port.edit_comment(REPO, 424242, "gone"))
    await step(lambda: port.get_comment(REPO, mine))
    await step(lambda: port.get_comment(REPO, 424242))
    await step(lambda: port.list_comments(REPO, 7))
    await step(lambda: port.list_comments(REPO, 123))
    await step(lambda: port.add_reaction(REPO, ids["others"], "eyes"))
    await step(lambda: port.add_reaction(REPO, ids["others"], "eyes"))
    await step(lambda: port.add_reaction(REPO, ids["others"], "smile"))
    await step(lambda: port.add_reaction(REPO, 424242, "eyes"))
    inputs = {"job": "{}", "run_id": "tb-0123456789ab", "head_sha": "a" * 40}
    await step(lambda: port.dispatch_workflow(REPO, "tunebot.yml", "main", inputs))
    run_id = out[-1].workflow_run_id
    await step(lambda: port.dispatch_workflow(REPO, "other.yml", "main", inputs))
    await step(lambda: port.dispatch_workflow(REPO, "tunebot.yml", "no-such-branch", inputs))
    await step(lambda: port.dispatch_workflow(REPO, "tunebot.yml", "main", {**inputs, "extra": "1"}))
    await step(lambda: port.dispatch_workflow(REPO, "tunebot.yml", "main", {"job": 1}))
    await step(lambda: port.find_run_by_name(REPO, "tunebot.yml", "tb-0123456789ab", NOW - timedelta(minutes=5)))
    await step(lambda: port.find_run_by_name(REPO, "tunebot.yml", "tb-000000000000", NOW - timedelta(minutes=5)))
    await step(lambda: port.find_run_by_name(REPO, "tunebot.yml", "tb-0123456789ab", NOW + timedelta(hours=1)))
    await step(lambda: port.get_workflow_run(REPO, run_id))
    await step(lambda: port.get_workflow_run(REPO, 31337))
    gh.add_artifact(run_id, "tunebot-events", {"events.jsonl": b"{}\n" * 100})
    await step(lambda: port.download_artifact(REPO, run_id, "tunebot-events", max_bytes=1 << 20))
    await step(lambda: port.download_artifact(REPO, run_id, "no-such-artifact", max_bytes=1 << 20))
    await step(lambda: port.download_artifact(REPO, run_id, "tunebot-events", max_bytes=10))
    await step(lambda: port.download_artifact(REPO, 31337, "tunebot-events", max_bytes=1 << 20))
    await step(lambda: port.cancel_workflow_run(REPO, run_id))
    await step(lambda: port.cancel_workflow_run(REPO, run_id))
    await step(lambda: port.cancel_workflow_run(REPO, 31337))
    await step(lambda: port.create_check_run(REPO, "tunebot / train", "a" * 40, external_id="tb-0123456789ab",
                                             started_at=NOW))
    check = out[-1].id
    await step(lambda: port.update_check_run(REPO, check, status="in_progress", details_url="https://x.test/r"))
    await step(lambda: port.update_check_run(REPO, check, conclusion="success", completed_at=NOW,
                                             output=CheckOutput("done", "all good", "details")))
    await step(lambda: port.update_check_run(REPO, 31337, status="in_progress"))
    await step(lambda: port.create_check_run(REPO, "tunebot / eval", "a" * 40, "completed"))
    await step(lambda: port.get_file(REPO, ".tunebot.yml"))
    await step(lambda: port.get_file(REPO, "/.tunebot.yml", ref="main"))
    await step(lambda: port.get_file(REPO, "data/x.jsonl", ref="v1"))
    await step(lambda: port.get_file(REPO, "missing.txt"))
    await step(lambda: port.get_file(REPO, "weights.bin"))
    await step(lambda: port.get_file("octo/missing", ".tunebot.yml"))
    await step(lambda: port.list_pull_files(REPO, 7))
    await step(lambda: port.list_pull_files(REPO, 99))
    for ref in ("main", "v1", ids["tagged"][:8], ids["tagged"], "no-such-ref"):
        await step(lambda r=ref: port.resolve_commit(REPO, r))
    await step(lambda: port.blob_shas(REPO, ["data/x.jsonl", "README.md"], "v1"))
    await step(lambda: port.default_branch(REPO))
    await step(lambda: port.default_branch(REPO))  # cached: no second request
    await step(lambda: port.default_branch("octo/missing"))
    for name in (REPO, "octo/private", "octo/missing"):
        await step(lambda r=name: port.repo_info(r))
    await step(lambda: port.branch_commits(REPO, "main"))
    await step(lambda: port.branch_commits(REPO, "main", limit=2))
    await step(lambda: port.branch_commits(REPO, "v1"))
    await step(lambda: port.branch_commits(REPO, "no-such-branch"))
    return out


def _normalise(value: Any, base_url: str) -> Any:
    return str(value).replace(base_url, "")


async def test_the_same_answers_and_errors_as_pygithub_on_the_loopback_fake_and_the_same_requests() -> None:
    memory = InMemoryGitHub(login=BOT_LOGIN, app=False, clock=lambda: NOW)
    ids = _setup(memory)
    ours = await _scenario(memory, memory, ids)
    assert {op for op in memory.ops} == PORT_METHODS, "the scenario must exercise every port method"

    async with FakeGitHub(clock=lambda: NOW) as loopback:
        assert _setup(loopback) == ids
        port = PyGithubPort.with_token(loopback.url, loopback.token, writes_per_minute=0, writes_per_hour=0,
                                       retry=RetryPolicy(max_attempts=1))
        try:
            theirs = await _scenario(port, loopback, ids)
        finally:
            await port.close()
        sent = list(loopback.requests)

    assert [_normalise(v, loopback.url) for v in ours] == [_normalise(v, loopback.url) for v in theirs]
    assert ours[0] == BOT_LOGIN and ("NotFound", 404) in ours and ("Forbidden", 403) in ours
    # Each recorded call is a request the real port sent, in the same order, with the same query and body; what the
    # real port sends besides (PyGithub looking up the repository or the issue first, the artifact's storage URL
    # after the redirect) is only ever a read.
    unmatched = []
    i = 0
    for call in memory.calls:
        url = urlsplit(call.url)
        if call.method == "GET" and url.path.endswith("/runs") and "/actions/workflows/" in url.path \
                and any(r.path == url.path for r in sent):
            # Run lookups: the real port answers repeated ones from its last listing (or lists only the newest
            # runs), so it may send fewer or shorter listings than one per call; the answers are compared above.
            continue
        while i < len(sent):
            req = sent[i]
            i += 1
            if (req.method, req.path) == (call.method, url.path) and dict(parse_qsl(url.query)).items() \
                    <= req.query.items() and (call.body is None or req.json == call.body):
                break
            unmatched.append(req)
        else:
            pytest.fail(f"{call} was never sent by PyGithubPort")
    unmatched += sent[i:]
    assert {r.method for r in unmatched} <= {"GET"}, [(r.method, r.path) for r in unmatched]


async def test_calls_are_recorded_as_rest_requests() -> None:
    gh = InMemoryGitHub()
    gh.add_bot_repo("octo/demo")
    ref = await gh.create_comment("octo/demo", 1, "hi")
    await gh.edit_comment("octo/demo", ref.id, "hi again")
    await gh.add_reaction("octo/demo", ref.id, "rocket")
    assert await gh.get_file("octo/demo", "docs/a b.md", ref="main") is None
    assert gh.calls == [
        ("POST", "/repos/octo/demo/issues/1/comments", {"body": "hi"}),
        ("PATCH", f"/repos/octo/demo/issues/comments/{ref.id}", {"body": "hi again"}),
        ("POST", f"/repos/octo/demo/issues/comments/{ref.id}/reactions", {"content": "rocket"}),
        ("GET", "/repos/octo/demo/contents/docs/a%20b.md?ref=main", None),
    ]
    assert gh.calls_to("POST") == [gh.calls[0], gh.calls[2]] and gh.calls_to("PATCH", "*/comments/*") == [gh.calls[1]]
    assert gh.ops == ["create_comment", "edit_comment", "add_reaction", "get_file"]
    assert isinstance(gh.calls[0], Call) and gh.calls[0].body == {"body": "hi"}


async def test_injected_faults_fail_the_next_calls_and_then_stop() -> None:
    gh = InMemoryGitHub()
    gh.add_bot_repo("octo/demo")
    gh.fail_next("create_comment", times=2)
    for _ in range(2):
        with pytest.raises(ServerError) as err:
            await gh.create_comment("octo/demo", 1, "hi")
        assert err.value.status == 502
    assert gh.comments_on("octo/demo", 1) == [] and len(gh.calls) == 2  # refused, yet the requests were sent
    await gh.create_comment("octo/demo", 1, "hi")
    assert [c.body for c in gh.comments_on("octo/demo", 1)] == ["hi"]

    # A POST that GitHub carried out although its answer was an error.
    gh.fail_next("create_comment", ServerError(504, "Gateway Timeout"), after_apply=True)
    with pytest.raises(ServerError):
        await gh.create_comment("octo/demo", 1, "landed")
    assert [c.body for c in gh.comments_on("octo/demo", 1)] == ["hi", "landed"]

    # A typed error, and the answers the real port makes of some: a 409 on cancel is False, a 404 file is None.
    gh.fail_next("get_permission", Forbidden(403, "Resource not accessible by integration"))
    with pytest.raises(Forbidden):
        await gh.get_permission("octo/demo", "Codertocat")
    assert (await gh.get_permission("octo/demo", "Codertocat")).permission == "admin"
    result = await gh.dispatch_workflow("octo/demo", "tunebot-run.yml", "main", {"run_id": "tb-1"})
    assert result.workflow_run_id is not None
    gh.fail_next("cancel_workflow_run", Conflict(409, "Cannot cancel a workflow run that is completed."))
    assert await gh.cancel_workflow_run("octo/demo", result.workflow_run_id) is False
    assert gh.runs[result.workflow_run_id].status == "queued"
    gh.fail_next("get_file", NotFound(404, "Not Found"))
    assert await gh.get_file("octo/demo", ".tunebot.yml") is None
    gh.fail_next("resolve_commit", ValidationFailed(422, "No commit found for SHA: main"))
    assert await gh.resolve_commit("octo/demo", "main") is None
    assert await gh.resolve_commit("octo/demo", "main") == gh.repos["octo/demo"].branches["main"]
    with pytest.raises(ValueError, match="not a GitHubPort method"):
        gh.fail_next("create_issue")


async def test_dispatch_answers_like_ghes_without_run_details_and_the_run_is_found_by_name() -> None:
    gh = InMemoryGitHub(dispatch_mode="no_content")
    gh.add_bot_repo("octo/demo")
    started = datetime.now(UTC)
    result = await gh.dispatch_workflow("octo/demo", "tunebot-run.yml", "main", {"run_id": "tb-abc"})
    assert (result.workflow_run_id, result.html_url, result.run_url) == (None, None, None)
    run = await gh.find_run_by_name("octo/demo", "tunebot-run.yml", "tb-abc", started)
    assert run is not None and run.display_title == "tunebot tb-abc" and run.status == "queued"
    assert gh.calls[-1].url.startswith("/repos/octo/demo/actions/workflows/tunebot-run.yml/runs?"
                                       "event=workflow_dispatch&created=%3E%3D")


async def test_blob_shas_are_gits_object_ids() -> None:
    gh = InMemoryGitHub()
    repo = gh.add_bot_repo("octo/demo")
    repo.add_file("data/train.jsonl", "{}\n")
    assert await gh.blob_shas("octo/demo", ["data/train.jsonl", "nope"], "main") == {
        "data/train.jsonl": git_blob_sha(b"{}\n"), "nope": None}
