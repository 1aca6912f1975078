"""An in-memory `GitHubPort` for service tests: the loopback FakeGitHub's repositories, comments, runs and check runs
without HTTP, PyGithub or threads, recording each call as the REST request the real port would send.

Every port call is one `Call(method, url, body)`: the REST operation `PyGithubPort` performs for it (its URL path
relative to the API root, with the query parameters that matter, and the JSON body it sends), so a test asserts
exactly what reached GitHub:

    gh = InMemoryGitHub()
    repo = gh.add_bot_repo("octo/demo")
    await gh.create_comment("octo/demo", 1, "hi")
    assert gh.calls == [("POST", "/repos/octo/demo/issues/1/comments", {"body": "hi"})]

Semantics follow tests/fakes/github.py (which follows GitHub): the same state classes (`FakeRepo`, `FakeComment`,
`FakeRun`...), the same 404/403/409/422 cases, raised as the port's typed errors. What the real port does with an
answer (a 409 on cancel is `False`, a 404 on a file is `None`) is done here too. Pagination, authentication and
retries are the transport's business (tested against the loopback fake) and are not modelled: an injected fault
(`fail_next`) is what the port raises after its own retries. The loopback fake stays for end-to-end tests.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from bot.github.port import (
    REACTIONS,
    RUN_NAME_INPUT,
    CheckOutput,
    CheckRunRef,
    Comment,
    CommentBody,
    CommentRef,
    CommitInfo,
    Conflict,
    DispatchResult,
    Forbidden,
    GitHubError,
    GitHubPort,
    NotFound,
    Permission,
    PullInfo,
    RepoInfo,
    ServerError,
    ValidationFailed,
    WorkflowRun,
    run_name,
)
from tests.fakes.github import (
    BOT_LOGIN,
    FakeArtifact,
    FakeCheckRun,
    FakeComment,
    FakeRepo,
    FakeRun,
    git_blob_sha,
    zipped,
)

Clock = Callable[[], datetime]
DispatchHook = Callable[[FakeRun, dict[str, Any]], Awaitable[None]]

MAX_BODY = 65536  # GitHub refuses longer comment bodies with 422
CLOCK_SKEW = timedelta(seconds=60)  # what PyGithubPort subtracts from `created_after` when it lists runs
DEFAULT_BRANCH_TTL = timedelta(minutes=10)  # PyGithubPort caches a repository's default branch this long


class Call(NamedTuple):
    """One request that reached GitHub: REST method, URL path (with the query that matters) and JSON body."""

    method: str
    url: str
    body: Any


@dataclass
class _Fault:
    op: str
    remaining: int
    error: GitHubError
    after_apply: bool


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _repo_path(repo: str) -> str:
    owner, _, name = repo.partition("/")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def _port_methods() -> frozenset[str]:
    return frozenset(n for n, _ in inspect.getmembers(GitHubPort, inspect.isfunction) if not n.startswith("_"))


class InMemoryGitHub:
    """`GitHubPort` in memory. `login` is who the port acts as (`<slug>[bot]` for an App, a user for a token)."""

    def __init__(self, *, login: str = BOT_LOGIN, app: bool | None = None, dispatch_mode: str = "details",
                 clock: Clock | None = None, on_dispatch: DispatchHook | None = None,
                 on_cancel: Callable[[FakeRun], Awaitable[None]] | None = None,
                 run_name_template: str = run_name("{run_id}")) -> None:
        if dispatch_mode not in ("details", "no_content"):
            raise ValueError("dispatch_mode is 'details' (200 with return_run_details) or 'no_content' (GHES 204)")
        self.login = login
        self.app = login.endswith("[bot]") if app is None else app
        self.dispatch_mode = dispatch_mode
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.on_dispatch = on_dispatch
        self.on_cancel = on_cancel
        self.run_name_template = run_name_template  # the workflow's `run-name:` (deploy/github/tunebot-run.yml)
        self.repos: dict[str, FakeRepo] = {}
        self.comments: dict[int, FakeComment] = {}
        self.runs: dict[int, FakeRun] = {}
        self.check_runs: dict[int, FakeCheckRun] = {}
        self.artifacts: dict[int, FakeArtifact] = {}
        self.calls: list[Call] = []
        self.ops: list[str] = []  # the port method behind each entry of `calls`
        self.installations: dict[str, int] = {}
        self.hook_errors: list[BaseException] = []
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1000)
        self._run_numbers: dict[tuple[str, str], itertools.count[int]] = {}
        self._default_branches: dict[str, tuple[str, datetime]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- test helpers (as on FakeGitHub)
    def add_repo(self, full_name: str, **kw: Any) -> FakeRepo:
        if full_name.count("/") != 1:
            raise ValueError(f"repo must be owner/name, got {full_name!r}")
        repo = FakeRepo(full_name=full_name, id=next(self._ids), **kw)
        self.repos[full_name.lower()] = repo
        return repo

    def add_bot_repo(self, full_name: str, *, workflow: str = "tunebot-run.yml", owner: str = "Codertocat") -> FakeRepo:
        """A repository set up as the bot expects one (as `FakeGitHub.add_bot_repo`): its run workflow with the
        inputs the bot dispatches, `owner` as admin, and PR #1 opened by `owner`."""
        repo = self.add_repo(full_name)
        repo.add_workflow(workflow, "tunebot run", inputs={"run_id", "job", "job_sig", "sha", "callback_url"})
        repo.set_permission(owner, "admin")
        repo.add_pull(1, author=owner)
        return repo

    def add_comment(self, repo: str, number: int, body: str, login: str = "octocat", user_type: str = "User") -> int:
        """A comment somebody else wrote (returns its id); not a call of the port, so not recorded."""
        r = self._repo(repo)
        r.issues.add(number)
        now = self.clock()
        cid = next(self._ids)
        self.comments[cid] = FakeComment(cid, r.full_name, number, body, login, user_type, now, now)
        return cid

    def comments_on(self, repo: str, number: int) -> list[FakeComment]:
        return sorted((c for c in self.comments.values() if c.repo.lower() == repo.lower()
                       and c.issue_number == number), key=lambda c: c.id)

    def set_run_status(self, run_id: int, status: str, conclusion: str | None = None) -> FakeRun:
        run = self.runs[run_id]
        run.status, run.conclusion, run.updated_at = status, conclusion, self.clock()
        return run

    def add_artifact(self, run_id: int, name: str, files: dict[str, bytes]) -> FakeArtifact:
        """What `actions/upload-artifact` leaves: the files of one artifact of a workflow run, zipped."""
        run = self.runs[run_id]
        art = FakeArtifact(next(self._ids), run.repo, run_id, name, zipped(files), self.clock())
        self.artifacts[art.id] = art
        return art

    def fail_next(self, op: str, error: GitHubError | None = None, *, times: int = 1,
                  after_apply: bool = False) -> None:
        """The next `times` calls of port method `op` raise `error` (default: a 502 ServerError, what the port
        raises once its retries are spent). The call is still recorded: the request reached GitHub. With
        after_apply the call takes effect first, like a gateway timeout on a POST that GitHub did process."""
        if op not in _port_methods():
            raise ValueError(f"{op!r} is not a GitHubPort method")
        self._faults.append(_Fault(op, times, error or ServerError(502, "Server Error"), after_apply))

    def calls_to(self, method: str, pattern: str = "*") -> list[Call]:
        """The recorded calls with this REST method whose URL matches `pattern` (fnmatch, e.g. "*/dispatches")."""
        return [c for c in self.calls if c.method == method.upper() and fnmatch.fnmatchcase(c.url, pattern)]

    async def drain(self) -> None:
        """Wait for the on_dispatch / on_cancel hooks still running; re-raise the first hook error."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.hook_errors:
            err, self.hook_errors = self.hook_errors[0], []
            raise err

    async def close(self) -> None:
        await self.drain()

    def remember_installation(self, repo: str, installation_id: int) -> None:
        """What PyGithubPort learns from a webhook's `installation.id` (no request)."""
        self.installations[repo.lower()] = installation_id

    # ---------------------------------------------------------------- plumbing
    def _repo(self, full_name: str) -> FakeRepo:
        repo = self.repos.get(full_name.lower())
        if repo is None:
            raise NotFound(404, "Not Found")
        return repo

    def _record(self, op: str, method: str, url: str, body: Any = None,
                query: dict[str, str] | None = None) -> _Fault | None:
        """Record the request; raise an injected fault now, or return it to raise after the call took effect."""
        self.calls.append(Call(method, url + (f"?{urlencode(query)}" if query else ""), body))
        self.ops.append(op)
        for fault in self._faults:
            if fault.remaining > 0 and fault.op == op:
                fault.remaining -= 1
                if not fault.after_apply:
                    raise fault.error
                return fault
        return None

    @staticmethod
    def _late(fault: _Fault | None) -> None:
        if fault is not None:
            raise fault.error

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # surfaced by drain(): a failing hook must fail the test
                self.hook_errors.append(exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _html(self, c: FakeComment) -> str:
        kind = "pull" if c.issue_number in self.repos[c.repo.lower()].pulls else "issues"
        return f"https://github.com/{c.repo}/{kind}/{c.issue_number}#issuecomment-{c.id}"

    def _comment(self, repo: str, comment_id: int) -> FakeComment:
        r = self._repo(repo)
        c = self.comments.get(int(comment_id))
        if c is None or c.repo.lower() != r.full_name.lower():
            raise NotFound(404, "Not Found")
        return c

    def _run(self, repo: str, run_id: int) -> FakeRun:
        r = self._repo(repo)
        run = self.runs.get(int(run_id))
        if run is None or run.repo != r.full_name:
            raise NotFound(404, "Not Found")
        return run

    @staticmethod
    def _workflow_run(run: FakeRun) -> WorkflowRun:
        return WorkflowRun(id=run.id, name=run.name, display_title=run.display_title, status=run.status,
                           conclusion=run.conclusion, html_url=f"https://github.com/{run.repo}/actions/runs/{run.id}",
                           head_sha=run.head_sha, event=run.event, run_attempt=run.run_attempt,
                           created_at=run.created_at.replace(microsecond=0),
                           updated_at=run.updated_at.replace(microsecond=0))

    @staticmethod
    def _too_long(body: str) -> None:
        if len(body) > MAX_BODY:
            raise ValidationFailed(422, "Validation Failed: Body is too long (maximum is 65536 characters)")

    @staticmethod
    def _check_state(body: dict[str, Any], status: str | None, conclusion: str | None) -> tuple[str, str | None]:
        status = body.get("status", status)
        conclusion = body.get("conclusion", conclusion)
        if "conclusion" in body:
            status = "completed"  # GitHub: "Providing conclusion will automatically set the status to completed"
        if (status == "completed" or "completed_at" in body) and not conclusion:
            raise ValidationFailed(422, "Invalid request.\n\nconclusion is required when status is completed or "
                                        "completed_at is given")
        assert status is not None
        return status, conclusion

    @staticmethod
    def _check_fields(conclusion: str | None, output: CheckOutput | None, details_url: str | None,
                      completed_at: datetime | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if conclusion is not None:
            body["conclusion"] = conclusion
        if output is not None:
            body["output"] = output.to_json()
        if details_url is not None:
            body["details_url"] = details_url
        if completed_at is not None:
            body["completed_at"] = _iso(completed_at)
        return body

    # ---------------------------------------------------------------- the GitHubPort API
    async def get_permission(self, repo: str, user: str) -> Permission:
        self._record("get_permission", "GET", f"{_repo_path(repo)}/collaborators/{quote(user, safe='')}/permission")
        r = self._repo(repo)
        # Outsiders read a public repository; a private one's outsiders have no permission at all.
        perm, role = r.permissions.get(user, ("none", "none") if r.private else r.default_permission)
        return Permission(perm, role)

    async def get_pull(self, repo: str, number: int) -> PullInfo:
        self._record("get_pull", "GET", f"{_repo_path(repo)}/pulls/{int(number)}")
        r = self._repo(repo)
        pull = r.pulls.get(int(number))
        if pull is None:
            raise NotFound(404, "Not Found")
        return PullInfo(number=pull.number, head_sha=pull.head_sha, head_ref=pull.head_ref, head_repo=pull.head_repo,
                        base_ref=pull.base_ref, base_repo=r.full_name,
                        is_fork=pull.head_repo is None or pull.head_repo.lower() != r.full_name.lower(),
                        author=pull.author, state=pull.state, merged=pull.merged, draft=pull.draft, title=pull.title,
                        html_url=f"https://github.com/{r.full_name}/pull/{pull.number}")

    async def create_comment(self, repo: str, number: int, body: str) -> CommentRef:
        late = self._record("create_comment", "POST", f"{_repo_path(repo)}/issues/{int(number)}/comments",
                            {"body": body})
        r = self._repo(repo)
        if int(number) not in r.issues:
            raise NotFound(404, "Not Found")
        self._too_long(body)
        now = self.clock()
        cid = next(self._ids)
        c = FakeComment(cid, r.full_name, int(number), body, self.login, "Bot" if self.login.endswith("[bot]")
                        else "User", now, now)
        self.comments[cid] = c
        self._late(late)
        return CommentRef(cid, self._html(c))

    async def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        late = self._record("edit_comment", "PATCH", f"{_repo_path(repo)}/issues/comments/{int(comment_id)}",
                            {"body": body})
        c = self._comment(repo, comment_id)
        if c.login != self.login:
            # An App may only edit its own comments unless it has admin-level access; the bot never should.
            raise Forbidden(403, "Resource not accessible by integration")
        self._too_long(body)
        c.body, c.edits, c.updated_at = body, c.edits + 1, self.clock()
        self._late(late)

    async def get_comment(self, repo: str, comment_id: int) -> CommentBody:
        self._record("get_comment", "GET", f"{_repo_path(repo)}/issues/comments/{int(comment_id)}")
        c = self._comment(repo, comment_id)
        return CommentBody(c.body, c.login)

    async def list_comments(self, repo: str, number: int) -> list[Comment]:
        self._record("list_comments", "GET", f"{_repo_path(repo)}/issues/{int(number)}/comments")
        r = self._repo(repo)
        if int(number) not in r.issues:
            raise NotFound(404, "Not Found")
        return [Comment(id=c.id, body=c.body, author_login=c.login, author_type=c.user_type, html_url=self._html(c),
                        created_at=c.created_at.replace(microsecond=0), updated_at=c.updated_at.replace(microsecond=0))
                for c in self.comments_on(r.full_name, int(number))]

    async def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        if content not in REACTIONS:  # refused by the port before any request, like PyGithubPort
            raise ValueError(f"unknown reaction {content!r}; GitHub accepts {sorted(REACTIONS)}")
        late = self._record("add_reaction", "POST", f"{_repo_path(repo)}/issues/comments/{int(comment_id)}/reactions",
                            {"content": content})
        c = self._comment(repo, comment_id)
        if (content, self.login) not in c.reactions:  # idempotent: GitHub answers 200 for a repeated reaction
            c.reactions.append((content, self.login))
        self._late(late)

    async def dispatch_workflow(self, repo: str, workflow_file: str, ref: str,
                                inputs: dict[str, str]) -> DispatchResult:
        bad = {k: type(v).__name__ for k, v in inputs.items() if not isinstance(v, str)}
        if bad:
            raise ValueError(f"workflow inputs must be strings; got {bad}")
        body = {"ref": ref, "inputs": dict(inputs), "return_run_details": True}
        late = self._record("dispatch_workflow", "POST",
                            f"{_repo_path(repo)}/actions/workflows/{quote(workflow_file, safe='')}/dispatches", body)
        r = self._repo(repo)
        if workflow_file not in r.workflows:
            raise NotFound(404, "Not Found")
        ref_name = ref.removeprefix("refs/heads/")
        if ref_name in r.branches:
            head_sha = r.branches[ref_name]
        elif re.fullmatch(r"[0-9a-f]{40}", ref):
            head_sha = ref
        else:
            raise ValidationFailed(422, f"No ref found for: {ref}")
        declared = r.workflow_inputs.get(workflow_file)
        unexpected = sorted(set(inputs) - declared) if declared is not None else []
        if unexpected:
            raise ValidationFailed(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        if len(json.dumps(inputs)) > 65535:
            raise ValidationFailed(422, "inputs are too large.")
        now = self.clock()
        counter = self._run_numbers.setdefault((r.full_name, workflow_file), itertools.count(1))
        token = inputs.get(RUN_NAME_INPUT)
        name = r.workflows[workflow_file]
        run = FakeRun(id=next(self._ids) * 1000 + 7, repo=r.full_name, workflow_file=workflow_file, name=name,
                      display_title=self.run_name_template.format(run_id=token) if token else name,
                      head_branch=ref_name, head_sha=head_sha,
                      inputs=dict(inputs), created_at=now, updated_at=now, run_number=next(counter))
        self.runs[run.id] = run
        if self.on_dispatch is not None:
            self._spawn(self.on_dispatch(run, dict(inputs)))
        self._late(late)
        if self.dispatch_mode == "no_content":
            return DispatchResult(None, None, None)
        return DispatchResult(run.id, f"https://github.com/{r.full_name}/actions/runs/{run.id}",
                              f"{_repo_path(r.full_name)}/actions/runs/{run.id}")

    async def find_run_by_name(self, repo: str, workflow_file: str, run_name_token: str,
                               created_after: datetime) -> WorkflowRun | None:
        if not run_name_token:
            raise ValueError("run_name_token is empty")
        aware = created_after if created_after.tzinfo is not None else created_after.replace(tzinfo=UTC)
        since = (aware - CLOCK_SKEW).replace(microsecond=0)
        self._record("find_run_by_name", "GET",
                     f"{_repo_path(repo)}/actions/workflows/{quote(workflow_file, safe='')}/runs",
                     query={"event": "workflow_dispatch", "created": f">={_iso(since)}"})
        r = self._repo(repo)
        if workflow_file not in r.workflows:
            raise NotFound(404, "Not Found")
        wanted = run_name(run_name_token)
        found = sorted((run for run in self.runs.values() if run.repo == r.full_name
                        and run.workflow_file == workflow_file and run.event == "workflow_dispatch"
                        and run.created_at >= since and run.display_title == wanted),
                       key=lambda run: run.created_at, reverse=True)  # newest first, like GitHub
        return self._workflow_run(found[0]) if found else None

    async def get_workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        self._record("get_workflow_run", "GET", f"{_repo_path(repo)}/actions/runs/{int(run_id)}")
        return self._workflow_run(self._run(repo, run_id))

    async def cancel_workflow_run(self, repo: str, run_id: int) -> bool:
        try:
            late = self._record("cancel_workflow_run", "POST",
                                f"{_repo_path(repo)}/actions/runs/{int(run_id)}/cancel")
        except Conflict:
            return False
        run = self._run(repo, run_id)
        if run.status == "completed":
            return False  # GitHub's 409 "Cannot cancel a workflow run that is completed.", as the port answers it
        run.cancel_requested = True
        run.status, run.conclusion, run.updated_at = "completed", "cancelled", self.clock()
        if self.on_cancel is not None:
            self._spawn(self.on_cancel(run))
        self._late(late)
        return True

    async def download_artifact(self, repo: str, run_id: int, name: str, *, max_bytes: int) -> bytes | None:
        try:
            self._record("download_artifact", "GET", f"{_repo_path(repo)}/actions/runs/{int(run_id)}/artifacts",
                         query={"name": name})
            run = self._run(repo, run_id)
        except NotFound:
            return None
        except GitHubError as exc:
            if exc.status == 410:  # expired
                return None
            raise
        found = [a for a in self.artifacts.values() if a.run_id == run.id and a.name == name and not a.expired]
        if not found:
            return None
        art = found[0]
        if len(art.zip) > max_bytes:
            raise ValidationFailed(413, f"artifact {name} is {len(art.zip)} bytes; at most {max_bytes} are read")
        self.calls.append(Call("GET", f"{_repo_path(repo)}/actions/artifacts/{art.id}/zip", None))
        self.ops.append("download_artifact")
        return art.zip

    async def create_check_run(self, repo: str, name: str, head_sha: str, status: str = "queued", *,
                               conclusion: str | None = None, output: CheckOutput | None = None,
                               details_url: str | None = None, external_id: str | None = None,
                               started_at: datetime | None = None,
                               completed_at: datetime | None = None) -> CheckRunRef:
        body: dict[str, Any] = {"name": name, "head_sha": head_sha, "status": status}
        body.update(self._check_fields(conclusion, output, details_url, completed_at))
        if external_id is not None:
            body["external_id"] = external_id
        if started_at is not None:
            body["started_at"] = _iso(started_at)
        late = self._record("create_check_run", "POST", f"{_repo_path(repo)}/check-runs", body)
        r = self._repo(repo)
        if not self.login.endswith("[bot]"):
            raise Forbidden(403, "You must authenticate via a GitHub App.")
        state, concl = self._check_state(body, "queued", None)
        cid = next(self._ids)
        check = FakeCheckRun(cid, r.full_name, name, head_sha, state, concl, body.get("output"),
                             body.get("details_url"), body.get("external_id"),
                             body.get("started_at") or _iso(self.clock()), body.get("completed_at"))
        if check.status == "completed" and not check.completed_at:
            check.completed_at = _iso(self.clock())
        check.history.append(body)
        self.check_runs[cid] = check
        self._late(late)
        return CheckRunRef(cid, f"https://github.com/{r.full_name}/runs/{cid}")

    async def update_check_run(self, repo: str, check_run_id: int, *, status: str | None = None,
                               conclusion: str | None = None, output: CheckOutput | None = None,
                               details_url: str | None = None, completed_at: datetime | None = None) -> None:
        body = self._check_fields(conclusion, output, details_url, completed_at)
        if status is not None:
            body["status"] = status
        late = self._record("update_check_run", "PATCH", f"{_repo_path(repo)}/check-runs/{int(check_run_id)}", body)
        r = self._repo(repo)
        check = self.check_runs.get(int(check_run_id))
        if check is None or check.repo != r.full_name:
            raise NotFound(404, "Not Found")
        check.status, check.conclusion = self._check_state(body, check.status, check.conclusion)
        for key in ("details_url", "completed_at", "output"):
            if key in body:
                setattr(check, key, body[key])
        if check.status == "completed" and not check.completed_at:
            check.completed_at = _iso(self.clock())
        check.history.append(body)
        self._late(late)

    def _content(self, repo: str, path: str, ref: str | None) -> str | bytes | None:
        r = self._repo(repo)
        return r.files_at(ref or r.default_branch).get(path.strip("/"))

    async def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        try:
            self._record("get_file", "GET", f"{_repo_path(repo)}/contents/{quote(path.lstrip('/'), safe='/')}",
                         query={"ref": ref} if ref else None)
            content = self._content(repo, path, ref)
        except NotFound:
            return None  # the real port reads any 404 of the contents API as "no such file"
        if content is None or isinstance(content, str):
            return content
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GitHubError(0, f"{repo}:{path} is not UTF-8 text: {exc}") from exc

    async def list_pull_files(self, repo: str, number: int) -> list[str]:
        self._record("list_pull_files", "GET", f"{_repo_path(repo)}/pulls/{int(number)}/files")
        pull = self._repo(repo).pulls.get(int(number))
        if pull is None:
            raise NotFound(404, "Not Found")
        return list(pull.files)

    async def resolve_commit(self, repo: str, ref: str) -> str | None:
        try:
            self._record("resolve_commit", "GET", f"{_repo_path(repo)}/commits/{quote(ref, safe='')}")
            return self._repo(repo).resolve(ref)
        except (NotFound, ValidationFailed):
            return None  # 404 and 422 ("No commit found for SHA") both mean: names no commit

    async def blob_shas(self, repo: str, paths: list[str], ref: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for path in paths:  # one contents request per path, as PyGithubPort does
            try:
                self._record("blob_shas", "GET", f"{_repo_path(repo)}/contents/{quote(path.lstrip('/'), safe='/')}",
                             query={"ref": ref})
                content = self._content(repo, path, ref)
            except NotFound:
                content = None
            raw = content.encode() if isinstance(content, str) else content
            out[path] = None if raw is None else git_blob_sha(raw)
        return out

    async def folder_blobs(self, repo: str, folder: str, ref: str) -> dict[str, str] | None:
        self._record("folder_blobs", "GET", f"{_repo_path(repo)}/contents/{quote(folder.strip('/'), safe='/')}",
                     query={"ref": ref})
        try:
            files = self._repo(repo).files_at(ref)
        except NotFound:
            return None  # the real port reads any 404 of the contents API as "no such folder"
        prefix = folder.strip("/") + "/"
        found = {path: git_blob_sha(content.encode() if isinstance(content, str) else content)
                 for path, content in files.items()
                 if path.startswith(prefix) and "/" not in path[len(prefix):] and content is not None}
        return found or None

    async def default_branch(self, repo: str) -> str:
        key = repo.lower()
        cached = self._default_branches.get(key)
        if cached is not None and self.clock() < cached[1]:
            return cached[0]  # PyGithubPort caches it: no request
        self._record("default_branch", "GET", _repo_path(repo))
        branch = self._repo(repo).default_branch
        self._default_branches[key] = (branch, self.clock() + DEFAULT_BRANCH_TTL)
        return branch

    async def repo_info(self, repo: str) -> RepoInfo:
        self._record("repo_info", "GET", _repo_path(repo))
        r = self._repo(repo)
        return RepoInfo(private=r.private, default_branch=r.default_branch)

    async def branch_commits(self, repo: str, branch: str, limit: int = 100) -> list[CommitInfo]:
        per_page = max(1, min(100, limit))
        self._record("branch_commits", "GET", f"{_repo_path(repo)}/commits",
                     query={"sha": branch, "per_page": str(per_page)})
        r = self._repo(repo)
        if branch in r.history:
            shas = list(reversed(r.history[branch]))
        else:  # a branch without recorded history lists its head alone (as FakeGitHub)
            head = r.resolve(branch)
            if head is None:
                raise NotFound(404, "Not Found")
            shas = [head]
        when = _iso(self.clock())
        return [CommitInfo(sha=sha, title=r.messages.get(sha, f"commit {sha[:7]}").split("\n", 1)[0], date=when)
                for sha in shas[:per_page]]  # one page, as PyGithubPort reads it

    async def whoami(self) -> str:
        # An App learns its slug from GET /app (JWT); a token's user comes from GET /user.
        self._record("whoami", "GET", "/app" if self.app else "/user")
        return self.login
