"""A fake GitHub REST API on 127.0.0.1 that keeps repos, PRs, comments, runs and check runs in memory.

Responses are shaped from the examples in tests/fixtures/github/rest_subset.json (GitHub's own OpenAPI
description), request bodies are validated against each operation's requestBody schema (422 like GitHub), and
every request is recorded for assertions. Faults (5xx, secondary rate limits) can be injected per route.

    async with FakeGitHub() as gh:
        repo = gh.add_repo("octo/demo")
        repo.add_pull(7, head_sha="abc123", author="alice")
        port = PyGithubPort.with_token(gh.url, gh.token)
"""

from __future__ import annotations

import asyncio
import base64
import copy
import fnmatch
import hashlib
import html
import io
import itertools
import json
import re
import secrets
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlencode, urlsplit

import jsonschema  # type: ignore[import-untyped]
import jwt
from aiohttp import web

from tests.fakes.deliveries import DeliveryResult, deliver, load_payload
from tests.fakes.loopback import LoopbackServer
from tests.paths import FIXTURES

_BLOBS = "/_blobs/artifacts"  # where artifact downloads redirect to (signed, unauthenticated)
REST_SUBSET = FIXTURES / "github" / "rest_subset.json"
BOT_LOGIN = "tunebot[bot]"
DEFAULT_TOKEN = "ghs_faketoken000000000000000000000000000"
DOCS = "https://docs.github.com/rest"

Clock = Callable[[], datetime]
DispatchHook = Callable[["FakeRun", dict[str, Any]], Awaitable[None]]


@cache
def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    ops = json.loads(REST_SUBSET.read_text(encoding="utf-8"))["operations"]
    return {(op["method"], op["path"]): op for op in ops.values()}


def _example(method: str, path: str, status: str, name: str | None = None) -> dict[str, Any]:
    """A deep copy of the documented example response of an operation."""
    op = _operations()[(method, path)]
    examples = op["responses"][status]["content"]["application/json"]["examples"]
    chosen = examples[name] if name else next(iter(examples.values()))
    return copy.deepcopy(chosen["value"])


def _request_schema(method: str, path: str) -> dict[str, Any] | None:
    op = _operations().get((method, path))
    if not op or not op.get("requestBody"):
        return None
    schema: dict[str, Any] = op["requestBody"]["content"]["application/json"]["schema"]
    return schema


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def git_blob_sha(raw: bytes) -> str:
    """Git's object id of a file's bytes (what the contents API calls the file's `sha`)."""
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def generate_app_key() -> str:
    """A fresh RSA private key (PEM) for a test GitHub App."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_of(private_key_pem: str) -> str:
    """The PEM public key matching a private key (what GitHub keeps for an App)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass
class Identity:
    """Who a token acts as."""

    login: str
    type: str = "Bot"
    installation_id: int | None = None
    expires_at: datetime | None = None


@dataclass
class FakePull:
    number: int
    head_sha: str
    head_ref: str
    head_repo: str | None
    base_ref: str
    author: str
    state: str = "open"
    title: str = "A pull request"
    draft: bool = False
    merged: bool = False
    files: list[str] = field(default_factory=list)


@dataclass
class FakeComment:
    id: int
    repo: str
    issue_number: int
    body: str
    login: str
    user_type: str
    created_at: datetime
    updated_at: datetime
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (content, login)
    edits: int = 0


@dataclass
class FakeRun:
    id: int
    repo: str
    workflow_file: str
    name: str
    display_title: str
    head_branch: str
    head_sha: str
    inputs: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    status: str = "queued"
    conclusion: str | None = None
    event: str = "workflow_dispatch"
    run_number: int = 1
    run_attempt: int = 1
    cancel_requested: bool = False


def zipped(files: dict[str, bytes]) -> bytes:
    """An artifact as `actions/upload-artifact` leaves it: the files, zipped."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return buf.getvalue()


@dataclass
class FakeArtifact:
    id: int
    repo: str
    run_id: int
    name: str
    zip: bytes
    created_at: datetime
    expired: bool = False


@dataclass
class FakeCheckRun:
    id: int
    repo: str
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    output: dict[str, Any] | None
    details_url: str | None
    external_id: str | None
    started_at: str | None
    completed_at: str | None
    history: list[dict[str, Any]] = field(default_factory=list)  # every request body applied, in order


@dataclass
class FakeRepo:
    """One repository; mutate freely from tests."""

    full_name: str
    id: int
    default_branch: str = "main"
    private: bool = False
    installation_id: int = 1
    default_permission: tuple[str, str] = ("read", "read")
    branches: dict[str, str] = field(default_factory=dict)  # name -> head sha
    tags: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    files: dict[str, dict[str, str | bytes]] = field(default_factory=dict)  # ref (branch or sha) -> path -> content
    permissions: dict[str, tuple[str, str]] = field(default_factory=dict)  # login -> (permission, role_name)
    pulls: dict[int, FakePull] = field(default_factory=dict)
    issues: set[int] = field(default_factory=set)
    workflows: dict[str, str] = field(default_factory=dict)  # file -> workflow name
    workflow_inputs: dict[str, set[str]] = field(default_factory=dict)  # file -> declared inputs (optional)
    history: dict[str, list[str]] = field(default_factory=dict)  # branch -> its commits, oldest first
    messages: dict[str, str] = field(default_factory=dict)  # sha -> commit message

    def __post_init__(self) -> None:
        self.branches.setdefault(self.default_branch, _sha(f"{self.full_name}@{self.default_branch}"))

    def set_permission(self, login: str, permission: str, role_name: str | None = None) -> None:
        self.permissions[login] = (permission, role_name or permission)

    def add_pull(self, number: int, *, head_sha: str | None = None, head_ref: str = "feature",
                 head_repo: str | None = None, base_ref: str | None = None, author: str = "octocat",
                 files: list[str] | None = None, **kw: Any) -> FakePull:
        pull = FakePull(number=number, head_sha=head_sha or _sha(f"{self.full_name}#{number}"), head_ref=head_ref,
                        head_repo=head_repo if head_repo is not None else self.full_name,
                        base_ref=base_ref or self.default_branch, author=author, files=list(files or []), **kw)
        self.pulls[number] = pull
        self.issues.add(number)
        return pull

    def add_file(self, path: str, text: str | bytes, ref: str | None = None) -> None:
        self.files.setdefault(ref or self.default_branch, {})[path] = text

    def add_commit(self, sha: str, files: dict[str, str | bytes], *, branch: str | None = None,
                   tags: tuple[str, ...] = (), message: str | None = None) -> str:
        """A commit with these files (the whole tree this fake knows of), optionally the head of a branch (appended
        to its history, which `GET /repos/{o}/{r}/commits?sha=<branch>` lists) or tagged."""
        self.files[sha] = dict(files)
        self.messages[sha] = message or f"commit {sha[:7]}"
        if branch is not None:
            self.branches[branch] = sha
            self.history.setdefault(branch, []).append(sha)
        for tag in tags:
            self.tags[tag] = sha
        return sha

    def commit_shas(self) -> set[str]:
        shas = set(self.branches.values()) | set(self.tags.values()) | {p.head_sha for p in self.pulls.values()}
        return shas | {k for k in self.files if re.fullmatch(r"[0-9a-f]{40}", k)}

    def resolve(self, ref: str) -> str | None:
        """What `GET /repos/{o}/{r}/commits/{ref}` resolves: a branch, a tag, a full or unique short SHA."""
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.tags:
            return self.tags[ref]
        if re.fullmatch(r"[0-9a-f]{4,40}", ref.lower()):
            found = [s for s in self.commit_shas() if s.startswith(ref.lower())]
            if len(found) == 1:
                return found[0]
        return None

    def files_at(self, ref: str) -> dict[str, str | bytes]:
        if ref in self.files:
            return self.files[ref]
        sha = self.resolve(ref)
        if sha is None:
            return {}
        if sha in self.files:
            return self.files[sha]
        for name, head in self.branches.items():  # files added to a branch by name are its head commit's
            if head == sha and name in self.files:
                return self.files[name]
        return {}

    def add_workflow(self, file: str, name: str | None = None, inputs: set[str] | None = None) -> None:
        self.workflows[file] = name or file.rsplit(".", 1)[0]
        if inputs is not None:
            self.workflow_inputs[file] = set(inputs)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the API prefix, e.g. /repos/o/r/issues/1/comments
    query: dict[str, str]
    json: Any
    authorization: str | None
    route: str  # the route template, e.g. /repos/{owner}/{repo}/issues/{issue_number}/comments


@dataclass
class _Fault:
    method: str
    pattern: str
    remaining: int
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    after_apply: bool = False  # apply the request, then answer the error (a 502 that hides a success)


_JSON: web.RequestKey[Any] = web.RequestKey("json", dict)
_IDENTITY = web.RequestKey("identity", Identity)
_ROUTE = web.RequestKey("route", str)


class FakeGitHub(LoopbackServer):
    """The fake GitHub server. Use as `async with FakeGitHub() as gh:`; `gh.url` is the API base URL."""

    def __init__(self, *, api_prefix: str = "", dispatch_mode: str = "details", clock: Clock | None = None,
                 token: str = DEFAULT_TOKEN, token_login: str = BOT_LOGIN, app_id: int = 29310,
                 app_slug: str = "tunebot", app_public_key: str | None = None,
                 token_ttl: timedelta = timedelta(hours=1), on_dispatch: DispatchHook | None = None,
                 on_cancel: Callable[[FakeRun], Awaitable[None]] | None = None,
                 webhook_url: str | None = None, webhook_secret: str | bytes | None = None,
                 run_name_input: str = "run_id", run_name_template: str = "tunebot {run_id}") -> None:
        if dispatch_mode not in ("details", "no_content"):
            raise ValueError("dispatch_mode is 'details' (200 with return_run_details) or 'no_content' (GHES 204)")
        super().__init__()
        self.api_prefix = api_prefix.rstrip("/")
        self.dispatch_mode = dispatch_mode
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.token = token
        self.app_id = app_id
        self.app_slug = app_slug
        self.app_public_key = app_public_key
        self.token_ttl = token_ttl
        self.on_dispatch = on_dispatch
        self.on_cancel = on_cancel
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.run_name_input = run_name_input
        self.run_name_template = run_name_template  # the workflow's `run-name:` (deploy/github/tunebot-run.yml)
        self.tokens: dict[str, Identity] = {token: Identity(token_login, "Bot" if token_login.endswith("[bot]")
                                                            else "User")}
        self.repos: dict[str, FakeRepo] = {}
        self.comments: dict[int, FakeComment] = {}
        self.runs: dict[int, FakeRun] = {}
        self.check_runs: dict[int, FakeCheckRun] = {}
        self.artifacts: dict[int, FakeArtifact] = {}
        self.statuses: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.issued_tokens: list[tuple[int, str, datetime]] = []  # (installation id, token, expires_at)
        self.deliveries: list[DeliveryResult] = []
        self.hook_errors: list[BaseException] = []
        self.oauth_apps: dict[str, tuple[str, str]] = {}  # client id -> (client secret, callback URL)
        self.oauth_codes: dict[str, tuple[str, str, str, datetime]] = {}  # code -> (client, login, redirect, expiry)
        self.user_tokens: list[tuple[str, str]] = []  # (login, token) issued by the web flow
        self._faults: list[_Fault] = []
        # GitHub's secondary limit on content-creating requests, when set: (at most N, per window in seconds);
        # one more answers 403 "secondary rate limit" like GitHub (bench/command_burst.py checks it never does).
        self.secondary_limit: tuple[int, float] | None = None
        self._writes: list[float] = []
        self.secondary_403s = 0
        self._ids = itertools.count(1000)
        self._run_numbers: dict[tuple[str, str], itertools.count[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """The API base URL to give a client (`http://127.0.0.1:<port>[/api/v3]`)."""
        return f"http://127.0.0.1:{self.port}{self.api_prefix}"

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        return app

    async def close(self) -> None:
        await self.drain()
        await super().close()

    async def drain(self) -> None:
        """Wait for the on_dispatch / on_cancel hooks still running; re-raise the first hook error."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.hook_errors:
            err = self.hook_errors[0]
            self.hook_errors = []
            raise err

    # ---------------------------------------------------------------- test helpers
    def add_repo(self, full_name: str, **kw: Any) -> FakeRepo:
        if full_name.count("/") != 1:
            raise ValueError(f"repo must be owner/name, got {full_name!r}")
        repo = FakeRepo(full_name=full_name, id=next(self._ids), **kw)
        self.repos[full_name.lower()] = repo
        return repo

    def add_bot_repo(self, full_name: str, *, workflow: str = "tunebot-run.yml", owner: str = "Codertocat") -> FakeRepo:
        """A repository set up as the bot expects one: its run workflow with the inputs the bot dispatches
        (deploy/github/tunebot-run.yml), `owner` as admin, and PR #1 opened by `owner`."""
        repo = self.add_repo(full_name)
        repo.add_workflow(workflow, "tunebot run", inputs={"run_id", "job", "job_sig", "sha", "callback_url"})
        repo.set_permission(owner, "admin")
        repo.add_pull(1, author=owner)
        return repo

    def add_token(self, token: str, login: str, user_type: str = "User") -> None:
        self.tokens[token] = Identity(login, user_type)

    def add_comment(self, repo: str, number: int, body: str, login: str = "octocat", user_type: str = "User") -> int:
        """A comment somebody else wrote (returns its id)."""
        r = self._repo_or_raise(repo)
        r.issues.add(number)
        now = self.clock()
        cid = next(self._ids)
        self.comments[cid] = FakeComment(cid, r.full_name, number, body, login, user_type, now, now)
        return cid

    def fail_next(self, method: str, pattern: str, times: int = 1, status: int = 502, *,
                  after_apply: bool = False) -> None:
        """The next `times` requests matching method and path pattern (fnmatch on the path without prefix, or the
        route template) answer `status` with GitHub's error body. With after_apply the request is carried out
        first, like a gateway timeout on a POST that GitHub did process."""
        body = {"message": "Server Error"} if status >= 500 else {"message": "Error"}
        self._faults.append(_Fault(method.upper(), pattern, times, status, {}, body, after_apply))

    def rate_limit_next(self, method: str, pattern: str, times: int = 1, *, retry_after: int | None = 1,
                        status: int = 403, primary_reset_in: int | None = None) -> None:
        """Secondary rate limit (403/429 + Retry-After) or, with primary_reset_in, a primary one
        (x-ratelimit-remaining: 0 and x-ratelimit-reset = now + primary_reset_in)."""
        headers: dict[str, str] = {}
        if primary_reset_in is not None:
            reset = int(self.clock().timestamp()) + primary_reset_in
            headers.update({"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                            "x-ratelimit-used": "5000", "x-ratelimit-reset": str(reset)})
            message = "API rate limit exceeded for installation ID 1."
        else:
            message = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                       "If you reach out to GitHub Support for help, please include the request ID ABCD:1234.")
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = {"message": message, "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
                "status": str(status)}
        self._faults.append(_Fault(method.upper(), pattern, times, status, headers, body))

    def requests_to(self, method: str, pattern: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and self._matches(pattern, r.path, r.route)]

    def comments_on(self, repo: str, number: int) -> list[FakeComment]:
        return [c for c in self.comments.values() if c.repo.lower() == repo.lower() and c.issue_number == number]

    def set_run_status(self, run_id: int, status: str, conclusion: str | None = None) -> FakeRun:
        run = self.runs[run_id]
        run.status = status
        run.conclusion = conclusion
        run.updated_at = self.clock()
        return run

    async def emit_workflow_run(self, run_id: int, action: str | None = None) -> DeliveryResult:
        """Deliver a signed `workflow_run` webhook for the run's current state to webhook_url."""
        run = self.runs[run_id]
        action = action or {"queued": "requested", "in_progress": "in_progress"}.get(run.status, "completed")
        payload = load_payload("workflow_run.completed")
        payload["action"] = action
        payload["workflow_run"].update(self._run_json(run))
        payload["repository"] = self._repo_json(self._repo_or_raise(run.repo))
        payload["installation"] = {"id": self._repo_or_raise(run.repo).installation_id,
                                   "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
        return await self._deliver("workflow_run", payload)

    async def emit_workflow_job(self, run_id: int, action: str, *, job_id: int | None = None,
                                job_name: str = "train") -> DeliveryResult:
        """Deliver a signed `workflow_job` webhook (queued / in_progress / completed) for one job of the run."""
        run = self.runs[run_id]
        payload = load_payload("workflow_job.completed.success.with-organization")
        payload["action"] = action
        job = payload["workflow_job"]
        job.update({"id": job_id or run.id * 10 + 1, "run_id": run.id, "name": job_name, "head_sha": run.head_sha,
                    "run_attempt": run.run_attempt, "workflow_name": run.name, "head_branch": run.head_branch,
                    "status": action if action != "completed" else "completed",
                    "conclusion": run.conclusion if action == "completed" else None,
                    "html_url": f"https://github.com/{run.repo}/actions/runs/{run.id}/job/{job_id or run.id * 10 + 1}",
                    "run_url": f"{self.url}/repos/{run.repo}/actions/runs/{run.id}"})
        payload["repository"] = self._repo_json(self._repo_or_raise(run.repo))
        payload["installation"] = {"id": self._repo_or_raise(run.repo).installation_id,
                                   "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
        return await self._deliver("workflow_job", payload)

    async def _deliver(self, event: str, payload: dict[str, Any]) -> DeliveryResult:
        if not self.webhook_url:
            raise RuntimeError("FakeGitHub.webhook_url is not set")
        result = await deliver(self.webhook_url, event, payload, self.webhook_secret)
        self.deliveries.append(result)
        return result

    # ---------------------------------------------------------------- plumbing
    @staticmethod
    def _matches(pattern: str, path: str, route: str) -> bool:
        return pattern == route or fnmatch.fnmatchcase(path, pattern)

    def _repo_or_raise(self, full_name: str) -> FakeRepo:
        repo = self.repos.get(full_name.lower())
        if repo is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "Not Found", "documentation_url": DOCS}),
                                   content_type="application/json")
        return repo

    @staticmethod
    def _error(status: int, message: str, **extra: Any) -> web.Response:
        body = {"message": message, "documentation_url": DOCS, "status": str(status), **extra}
        return web.json_response(body, status=status)

    def _not_found(self) -> web.Response:
        return self._error(404, "Not Found")

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        path = request.path
        if path.startswith("/login/oauth/"):  # the browser's side of the web flow: forms, no API token
            self.requests.append(RecordedRequest(request.method, path, dict(request.query), None,
                                                 request.headers.get("Authorization"), path))
            return await handler(request)
        if self.api_prefix and path.startswith(self.api_prefix):
            path = path[len(self.api_prefix):]
        route = ""
        info = request.match_info.route.resource
        if info is not None:
            route = info.canonical[len(self.api_prefix):] if self.api_prefix else info.canonical
        payload: Any = None
        raw = await request.read()
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                self.requests.append(RecordedRequest(request.method, path, dict(request.query), raw.decode(
                    errors="replace"), request.headers.get("Authorization"), route))
                return self._error(400, "Problems parsing JSON")
        self.requests.append(RecordedRequest(request.method, path, dict(request.query), payload,
                                             request.headers.get("Authorization"), route))
        if self.secondary_limit is not None and request.method in ("POST", "PATCH", "PUT", "DELETE") \
                and not route.startswith("/app"):
            most, window = self.secondary_limit
            now_s = asyncio.get_running_loop().time()
            self._writes = [w for w in self._writes if w > now_s - window]
            if len(self._writes) >= most:
                self.secondary_403s += 1
                return web.json_response({"message": "You have exceeded a secondary rate limit. Please wait a few "
                                                     "minutes before you try again.",
                                          "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"},
                                         status=403, headers={"Retry-After": str(int(window))})
            self._writes.append(now_s)
        late: _Fault | None = None
        for fault in self._faults:
            if fault.remaining > 0 and fault.method == request.method and self._matches(fault.pattern, path, route):
                fault.remaining -= 1
                if not fault.after_apply:
                    return web.json_response(fault.body, status=fault.status, headers=fault.headers)
                late = fault
                break
        request[_ROUTE] = route
        if route.startswith(_BLOBS):  # the storage URL an artifact download redirects to: signed, no token
            if request.query.get("sig") != self._blob_sig(request.match_info["artifact_id"]):
                return self._error(403, "Signature not valid")
            request[_JSON] = payload
            return await handler(request)
        if not (route.startswith("/app") or route == "/repos/{owner}/{repo}/installation"):  # JWT routes
            auth = self._identity(request)
            if auth is None:
                return self._error(401, "Bad credentials")
            request[_IDENTITY] = auth
        schema = _request_schema(request.method, route)
        if schema is not None:
            if payload is None:
                payload = {}
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(payload), key=lambda e: list(e.path))
            if errors:
                return self._error(422, "Invalid request.\n\n" + "\n".join(self._describe(e) for e in errors))
        request[_JSON] = payload
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.text and exc.content_type == "application/json":
                return web.Response(status=exc.status, text=exc.text, content_type="application/json")
            raise
        if late is not None:
            return web.json_response(late.body, status=late.status, headers=late.headers)
        return response

    @staticmethod
    def _describe(err: jsonschema.ValidationError) -> str:
        # GitHub's wording: `"body" wasn't supplied.` / `For 'properties/content', "smile" is not a member of [...]`
        if err.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", err.message)
            return f"\"{missing[0] if missing else err.message}\" wasn't supplied."
        where = "/".join(f"properties/{p}" if isinstance(p, str) else str(p) for p in err.absolute_path)
        return f"For '{where or 'body'}', {err.message}."

    def _identity(self, request: web.Request) -> Identity | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token:
            return None
        ident = self.tokens.get(token.strip())
        if ident is None:
            return None
        if ident.expires_at is not None and ident.expires_at <= self.clock():
            return None
        return ident

    def _verify_jwt(self, request: web.Request) -> dict[str, Any] | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return self._error(401, "A JSON web token could not be decoded")
        if self.app_public_key is None:
            return self._error(401, "No GitHub App is registered with this fake (app_public_key is None)")
        try:
            claims: dict[str, Any] = jwt.decode(token, self.app_public_key, algorithms=["RS256"],
                                                options={"require": ["iat", "exp", "iss"], "verify_iat": False},
                                                leeway=60)
        except jwt.ExpiredSignatureError:
            return self._error(401, "'Expiration time' claim ('exp') must be a numeric value representing the "
                                    "future time at which the assertion expires")
        except jwt.PyJWTError as exc:
            return self._error(401, f"A JSON web token could not be decoded ({exc})")
        if str(claims["iss"]) != str(self.app_id):
            return self._error(401, "'Issuer' claim ('iss') must match the app id")
        if int(claims["exp"]) - int(claims["iat"]) > 600:
            return self._error(401, "'Expiration time' claim ('exp') is too far in the future")
        return claims

    def _user(self, login: str, user_type: str = "User") -> dict[str, Any]:
        uid = int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
        return {"login": login, "id": uid, "node_id": f"U_{uid}", "avatar_url": "", "gravatar_id": "",
                "url": f"{self.url}/users/{login}", "html_url": f"https://github.com/{login}",
                "type": user_type, "site_admin": False}

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        base: dict[str, Any] = _example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "200")["base"]["repo"]
        owner, name = repo.full_name.split("/")
        base.update({"id": repo.id, "node_id": f"R_{repo.id}", "name": name, "full_name": repo.full_name,
                     "owner": self._user(owner, "Organization"), "private": repo.private,
                     "html_url": f"https://github.com/{repo.full_name}", "url": f"{self.url}/repos/{repo.full_name}",
                     "default_branch": repo.default_branch, "fork": False})
        return base

    # ---------------------------------------------------------------- routes
    def _add_routes(self, app: web.Application) -> None:
        p = self.api_prefix
        r = app.router
        r.add_post(p + "/app/installations/{installation_id}/access_tokens", self._h_access_token)
        r.add_get(p + "/app", self._h_app)
        r.add_get(p + "/rate_limit", self._h_rate_limit)
        r.add_get(p + "/user", self._h_user)
        r.add_get(p + "/repos/{owner}/{repo}/installation", self._h_repo_installation)
        r.add_get(p + "/repos/{owner}/{repo}", self._h_repo)
        r.add_get(p + "/repos/{owner}/{repo}/collaborators/{username}/permission", self._h_permission)
        r.add_get(p + "/repos/{owner}/{repo}/pulls/{pull_number}", self._h_pull)
        r.add_get(p + "/repos/{owner}/{repo}/pulls/{pull_number}/files", self._h_pull_files)
        r.add_get(p + "/repos/{owner}/{repo}/issues/{issue_number}/comments", self._h_list_comments)
        r.add_post(p + "/repos/{owner}/{repo}/issues/{issue_number}/comments", self._h_create_comment)
        r.add_get(p + "/repos/{owner}/{repo}/issues/comments/{comment_id}", self._h_get_comment)
        r.add_patch(p + "/repos/{owner}/{repo}/issues/comments/{comment_id}", self._h_update_comment)
        r.add_post(p + "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", self._h_reaction)
        r.add_post(p + "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", self._h_dispatch)
        r.add_get(p + "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs", self._h_list_runs)
        r.add_get(p + "/repos/{owner}/{repo}/actions/runs", self._h_list_runs)
        r.add_get(p + "/repos/{owner}/{repo}/actions/runs/{run_id}", self._h_get_run)
        r.add_post(p + "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", self._h_cancel_run)
        r.add_get(p + "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", self._h_list_artifacts)
        r.add_get(p + "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}", self._h_artifact_zip)
        r.add_get(p + _BLOBS + "/{artifact_id}", self._h_artifact_blob)
        r.add_post(p + "/repos/{owner}/{repo}/check-runs", self._h_create_check)
        r.add_patch(p + "/repos/{owner}/{repo}/check-runs/{check_run_id}", self._h_update_check)
        r.add_get(p + "/repos/{owner}/{repo}/contents/{path:.+}", self._h_contents)
        r.add_get(p + "/repos/{owner}/{repo}/commits", self._h_list_commits)
        r.add_get(p + "/repos/{owner}/{repo}/commits/{ref}", self._h_commit)
        # The OAuth web flow lives on the web host (github.com), not under the API prefix.
        r.add_get("/login/oauth/authorize", self._h_oauth_authorize)
        r.add_post("/login/oauth/authorize", self._h_oauth_approve)
        r.add_post("/login/oauth/access_token", self._h_oauth_token)
        r.add_post(p + "/repos/{owner}/{repo}/statuses/{sha}", self._h_status)

    @staticmethod
    def _repo_name(request: web.Request) -> str:
        return f"{request.match_info['owner']}/{request.match_info['repo']}"

    def _paginate(self, request: web.Request, items: list[Any], wrap: str | None = None) -> web.Response:
        try:
            per_page = max(1, min(100, int(request.query.get("per_page", "30"))))
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            return self._error(422, "Invalid pagination parameter")
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []
        base = f"http://127.0.0.1:{self.port}{request.path}"

        def link(n: int, rel: str) -> str:
            q = dict(request.query)
            q.update(page=str(n), per_page=str(per_page))
            return f'<{base}?{urlencode(q)}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        headers = {"Link": ", ".join(links)} if links else {}
        body: Any = {"total_count": len(items), wrap: chunk} if wrap else chunk
        return web.json_response(body, headers=headers)

    async def _h_access_token(self, request: web.Request) -> web.Response:
        claims = self._verify_jwt(request)
        if isinstance(claims, web.Response):
            return claims
        inst = int(request.match_info["installation_id"])
        known = {repo.installation_id for repo in self.repos.values()} | {1}
        if inst not in known:
            return self._not_found()
        token = "ghs_" + secrets.token_hex(18)
        expires = self.clock().replace(microsecond=0) + self.token_ttl
        self.tokens[token] = Identity(f"{self.app_slug}[bot]", "Bot", inst, expires)
        self.issued_tokens.append((inst, token, expires))
        body = _example("POST", "/app/installations/{installation_id}/access_tokens", "201")
        body.update({"token": token, "expires_at": _iso(expires), "repository_selection": "all"})
        body.pop("repositories", None)
        return web.json_response(body, status=201)

    async def _h_app(self, request: web.Request) -> web.Response:
        """`GET /app`: the authenticated App (JWT), as `tunebot serve --check` asks for it."""
        claims = self._verify_jwt(request)
        if isinstance(claims, web.Response):
            return claims
        return web.json_response({"id": self.app_id, "slug": self.app_slug, "name": self.app_slug})

    async def _h_user(self, request: web.Request) -> web.Response:
        """`GET /user`: the token's user. An installation token is not a user: GitHub answers 403 (as here)."""
        ident = self._identity(request)
        if ident is None:
            return self._error(401, "Requires authentication")
        if ident.installation_id is not None:
            return self._error(403, "Resource not accessible by integration")
        return web.json_response(self._user(ident.login, ident.type))

    async def _h_rate_limit(self, request: web.Request) -> web.Response:
        """`GET /rate_limit`: any valid token may ask (the middleware already refused a bad one)."""
        reset = int(self.clock().timestamp()) + 3600
        core = {"limit": 5000, "remaining": 4999, "reset": reset, "used": 1}
        return web.json_response({"resources": {"core": core}, "rate": core})

    async def _h_repo_installation(self, request: web.Request) -> web.Response:
        claims = self._verify_jwt(request)
        if isinstance(claims, web.Response):
            return claims
        repo = self._repo_or_raise(self._repo_name(request))
        body = _example("GET", "/repos/{owner}/{repo}/installation", "200")
        body.update({"id": repo.installation_id, "app_id": self.app_id, "app_slug": self.app_slug,
                     "access_tokens_url": f"{self.url}/app/installations/{repo.installation_id}/access_tokens"})
        return web.json_response(body)

    async def _h_repo(self, request: web.Request) -> web.Response:
        return web.json_response(self._repo_json(self._repo_or_raise(self._repo_name(request))))

    async def _h_permission(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        login = request.match_info["username"]
        # Outsiders read a public repository; a private one's outsiders have no permission at all.
        perm, role = repo.permissions.get(login, ("none", "none") if repo.private else repo.default_permission)
        body = _example("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", "200")
        body.update({"permission": perm, "role_name": role, "user": self._user(login)})
        return web.json_response(body)

    def _pull_or_404(self, request: web.Request) -> tuple[FakeRepo, FakePull] | None:
        repo = self._repo_or_raise(self._repo_name(request))
        pull = repo.pulls.get(int(request.match_info["pull_number"]))
        return None if pull is None else (repo, pull)

    async def _h_pull(self, request: web.Request) -> web.Response:
        found = self._pull_or_404(request)
        if found is None:
            return self._not_found()
        repo, pull = found
        body = _example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "200")
        html = f"https://github.com/{repo.full_name}/pull/{pull.number}"
        body.update({"url": f"{self.url}/repos/{repo.full_name}/pulls/{pull.number}", "number": pull.number,
                     "id": repo.id * 1000 + pull.number, "html_url": html, "state": pull.state, "title": pull.title,
                     "user": self._user(pull.author), "draft": pull.draft, "merged": pull.merged})
        repo_json = self._repo_json(repo)
        body["base"].update({"ref": pull.base_ref, "sha": repo.branches.get(pull.base_ref, _sha(pull.base_ref)),
                             "repo": repo_json, "label": f"{repo.full_name.split('/')[0]}:{pull.base_ref}"})
        if pull.head_repo is None:
            head_repo: dict[str, Any] | None = None
        elif pull.head_repo.lower() == repo.full_name.lower():
            head_repo = repo_json
        else:
            head_repo = copy.deepcopy(repo_json)
            owner, name = pull.head_repo.split("/")
            head_repo.update({"id": repo.id + 7, "full_name": pull.head_repo, "name": name, "fork": True,
                              "owner": self._user(owner), "url": f"{self.url}/repos/{pull.head_repo}"})
        body["head"].update({"ref": pull.head_ref, "sha": pull.head_sha, "repo": head_repo,
                             "label": f"{(pull.head_repo or 'unknown/x').split('/')[0]}:{pull.head_ref}",
                             "user": self._user((pull.head_repo or pull.author).split("/")[0])})
        return web.json_response(body)

    async def _h_pull_files(self, request: web.Request) -> web.Response:
        found = self._pull_or_404(request)
        if found is None:
            return self._not_found()
        repo, pull = found
        items = [{"sha": _sha(f), "filename": f, "status": "modified", "additions": 1, "deletions": 0, "changes": 1,
                  "blob_url": f"https://github.com/{repo.full_name}/blob/{pull.head_sha}/{f}",
                  "raw_url": f"https://github.com/{repo.full_name}/raw/{pull.head_sha}/{f}",
                  "contents_url": f"{self.url}/repos/{repo.full_name}/contents/{f}?ref={pull.head_sha}",
                  "patch": "@@ -0,0 +1 @@\n+x"} for f in pull.files]
        return self._paginate(request, items)

    def _comment_json(self, c: FakeComment) -> dict[str, Any]:
        body = _example("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "201")
        kind = "pull" if c.issue_number in self.repos[c.repo.lower()].pulls else "issues"
        body.update({"id": c.id, "node_id": f"IC_{c.id}", "body": c.body,
                     "url": f"{self.url}/repos/{c.repo}/issues/comments/{c.id}",
                     "html_url": f"https://github.com/{c.repo}/{kind}/{c.issue_number}#issuecomment-{c.id}",
                     "issue_url": f"{self.url}/repos/{c.repo}/issues/{c.issue_number}",
                     "user": self._user(c.login, c.user_type), "created_at": _iso(c.created_at),
                     "updated_at": _iso(c.updated_at),
                     "author_association": "NONE" if c.user_type == "Bot" else "CONTRIBUTOR"})
        return body

    async def _h_list_comments(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        number = int(request.match_info["issue_number"])
        if number not in repo.issues:
            return self._not_found()
        items = [self._comment_json(c) for c in sorted(self.comments_on(repo.full_name, number), key=lambda c: c.id)]
        return self._paginate(request, items)

    async def _h_create_comment(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        number = int(request.match_info["issue_number"])
        if number not in repo.issues:
            return self._not_found()
        body = request[_JSON]["body"]
        if len(body) > 65536:
            return self._error(422, "Validation Failed", errors=[
                {"resource": "IssueComment", "code": "unprocessable", "field": "data",
                 "message": "Body is too long (maximum is 65536 characters)"}])
        ident: Identity = request[_IDENTITY]
        now = self.clock()
        cid = next(self._ids)
        comment = FakeComment(cid, repo.full_name, number, body, ident.login, ident.type, now, now)
        self.comments[cid] = comment
        out = self._comment_json(comment)
        return web.json_response(out, status=201, headers={"Location": out["url"]})

    def _comment_or_none(self, request: web.Request) -> FakeComment | None:
        repo = self._repo_or_raise(self._repo_name(request))
        c = self.comments.get(int(request.match_info["comment_id"]))
        return c if c is not None and c.repo.lower() == repo.full_name.lower() else None

    async def _h_get_comment(self, request: web.Request) -> web.Response:
        c = self._comment_or_none(request)
        return self._not_found() if c is None else web.json_response(self._comment_json(c))

    async def _h_update_comment(self, request: web.Request) -> web.Response:
        c = self._comment_or_none(request)
        if c is None:
            return self._not_found()
        ident: Identity = request[_IDENTITY]
        if ident.login != c.login:
            # An App may only edit its own comments unless it has admin-level access; the bot never should.
            return self._error(403, "Resource not accessible by integration")
        body = request[_JSON]["body"]
        if len(body) > 65536:
            return self._error(422, "Validation Failed", errors=[
                {"resource": "IssueComment", "code": "unprocessable", "field": "data",
                 "message": "Body is too long (maximum is 65536 characters)"}])
        c.body = body
        c.edits += 1
        c.updated_at = self.clock()
        return web.json_response(self._comment_json(c))

    async def _h_reaction(self, request: web.Request) -> web.Response:
        c = self._comment_or_none(request)
        if c is None:
            return self._not_found()
        ident: Identity = request[_IDENTITY]
        content = request[_JSON]["content"]
        existed = (content, ident.login) in c.reactions
        if not existed:
            c.reactions.append((content, ident.login))
        body = _example("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", "201")
        body.update({"id": abs(hash((c.id, content, ident.login))) % 10**9, "content": content,
                     "user": self._user(ident.login, ident.type), "created_at": _iso(self.clock())})
        return web.json_response(body, status=200 if existed else 201)

    async def _h_dispatch(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        wf = request.match_info["workflow_id"]
        if wf not in repo.workflows:
            return self._not_found()
        body = request[_JSON]
        ref = body["ref"]
        inputs: dict[str, Any] = dict(body.get("inputs") or {})
        ref_name = ref.removeprefix("refs/heads/")
        if ref_name in repo.branches:
            head_sha = repo.branches[ref_name]
        elif re.fullmatch(r"[0-9a-f]{40}", ref):
            head_sha = ref
        else:
            return self._error(422, f"No ref found for: {ref}")
        declared = repo.workflow_inputs.get(wf)
        if declared is not None:
            unexpected = sorted(set(inputs) - declared)
            if unexpected:
                return self._error(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        if len(json.dumps(inputs)) > 65535:
            return self._error(422, "inputs are too large.")
        now = self.clock()
        counter = self._run_numbers.setdefault((repo.full_name, wf), itertools.count(1))
        token = inputs.get(self.run_name_input)
        name = repo.workflows[wf]
        run = FakeRun(id=next(self._ids) * 1000 + 7, repo=repo.full_name, workflow_file=wf, name=name,
                      display_title=self.run_name_template.format(run_id=token) if token else name,
                      head_branch=ref_name, head_sha=head_sha,
                      inputs=inputs, created_at=now, updated_at=now, run_number=next(counter))
        self.runs[run.id] = run
        if self.on_dispatch is not None:
            self._spawn(self.on_dispatch(run, inputs))
        if self.dispatch_mode == "details" and body.get("return_run_details") is True:
            return web.json_response({"workflow_run_id": run.id,
                                      "run_url": f"{self.url}/repos/{repo.full_name}/actions/runs/{run.id}",
                                      "html_url": f"https://github.com/{repo.full_name}/actions/runs/{run.id}"})
        return web.Response(status=204)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # surfaced by drain(): a failing hook must fail the test
                self.hook_errors.append(exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _run_json(self, run: FakeRun) -> dict[str, Any]:
        body = _example("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", "200")
        api = f"{self.url}/repos/{run.repo}/actions/runs/{run.id}"
        body.update({"id": run.id, "node_id": f"WFR_{run.id}", "name": run.name, "display_title": run.display_title,
                     "head_branch": run.head_branch, "head_sha": run.head_sha, "event": run.event,
                     "path": f".github/workflows/{run.workflow_file}",
                     "status": run.status, "conclusion": run.conclusion, "run_number": run.run_number,
                     "run_attempt": run.run_attempt, "url": api,
                     "html_url": f"https://github.com/{run.repo}/actions/runs/{run.id}",
                     "created_at": _iso(run.created_at), "updated_at": _iso(run.updated_at),
                     "run_started_at": _iso(run.created_at), "jobs_url": f"{api}/jobs", "logs_url": f"{api}/logs",
                     "cancel_url": f"{api}/cancel", "rerun_url": f"{api}/rerun",
                     "artifacts_url": f"{api}/artifacts", "check_suite_url": f"{api}/check-suite",
                     "workflow_url": f"{self.url}/repos/{run.repo}/actions/workflows/{run.workflow_file}"})
        repo = self.repos[run.repo.lower()]
        body["repository"] = self._repo_json(repo)
        body["head_repository"] = self._repo_json(repo)
        return body

    @staticmethod
    def _created_filter(expr: str) -> Callable[[datetime], bool]:
        # GitHub's search date syntax; we support ">=T", ">T", "<=T", "<T" and "A..B".
        def parse(s: str) -> datetime:
            return datetime.fromisoformat(s.replace("Z", "+00:00"))

        m = re.fullmatch(r"(>=|<=|>|<)(.+)", expr)
        if m:
            op, when = m.group(1), parse(m.group(2))
            return {">=": lambda t: t >= when, ">": lambda t: t > when,
                    "<=": lambda t: t <= when, "<": lambda t: t < when}[op]
        if ".." in expr:
            lo, hi = expr.split("..", 1)
            return lambda t: (lo == "*" or t >= parse(lo)) and (hi == "*" or t <= parse(hi))
        day = parse(expr)
        return lambda t: t.date() == day.date()

    async def _h_list_runs(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        wf = request.match_info.get("workflow_id")
        if wf is not None and wf not in repo.workflows:
            return self._not_found()
        runs = [r for r in self.runs.values() if r.repo == repo.full_name and (wf is None or r.workflow_file == wf)]
        q = request.query
        if "event" in q:
            runs = [r for r in runs if r.event == q["event"]]
        if "branch" in q:
            runs = [r for r in runs if r.head_branch == q["branch"]]
        if "head_sha" in q:
            runs = [r for r in runs if r.head_sha == q["head_sha"]]
        if "status" in q:
            runs = [r for r in runs if q["status"] in (r.status, r.conclusion)]
        if "created" in q:
            try:
                keep = self._created_filter(q["created"])
            except ValueError:
                return self._error(422, f"Invalid created filter: {q['created']}")
            runs = [r for r in runs if keep(r.created_at)]
        runs.sort(key=lambda r: r.created_at, reverse=True)  # newest first, like GitHub
        return self._paginate(request, [self._run_json(r) for r in runs], wrap="workflow_runs")

    def _run_or_none(self, request: web.Request) -> FakeRun | None:
        repo = self._repo_or_raise(self._repo_name(request))
        run = self.runs.get(int(request.match_info["run_id"]))
        return run if run is not None and run.repo == repo.full_name else None

    async def _h_get_run(self, request: web.Request) -> web.Response:
        run = self._run_or_none(request)
        return self._not_found() if run is None else web.json_response(self._run_json(run))

    async def _h_cancel_run(self, request: web.Request) -> web.Response:
        run = self._run_or_none(request)
        if run is None:
            return self._not_found()
        if run.status == "completed":
            return self._error(409, "Cannot cancel a workflow run that is completed.")
        run.cancel_requested = True
        run.status, run.conclusion, run.updated_at = "completed", "cancelled", self.clock()
        if self.on_cancel is not None:
            self._spawn(self.on_cancel(run))
        return web.json_response({}, status=202)

    def _check_json(self, c: FakeCheckRun) -> dict[str, Any]:
        body = _example("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "200")
        output = dict(c.output or {"title": None, "summary": None, "text": None})
        output.update({"annotations_count": 0, "annotations_url": f"{self.url}/repos/{c.repo}/check-runs/{c.id}/"
                                                                   "annotations"})
        body.update({"id": c.id, "node_id": f"CR_{c.id}", "name": c.name, "head_sha": c.head_sha,
                     "status": c.status, "conclusion": c.conclusion, "details_url": c.details_url,
                     "external_id": c.external_id or "", "started_at": c.started_at, "completed_at": c.completed_at,
                     "url": f"{self.url}/repos/{c.repo}/check-runs/{c.id}",
                     "html_url": f"https://github.com/{c.repo}/runs/{c.id}", "output": output})
        return body

    @staticmethod
    def _check_state(body: dict[str, Any], status: str | None, conclusion: str | None) -> tuple[str, str | None] | str:
        status = body.get("status", status)
        conclusion = body.get("conclusion", conclusion)
        if "conclusion" in body:
            status = "completed"  # GitHub: "Providing conclusion will automatically set the status to completed"
        if (status == "completed" or "completed_at" in body) and not conclusion:
            return "conclusion is required when status is completed or completed_at is given"
        assert status is not None
        return status, conclusion

    async def _h_create_check(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        ident: Identity = request[_IDENTITY]
        if ident.installation_id is None and ident.type != "Bot":
            return self._error(403, "You must authenticate via a GitHub App.")
        body = request[_JSON]
        state = self._check_state(body, "queued", None)
        if isinstance(state, str):
            return self._error(422, "Invalid request.\n\n" + state)
        cid = next(self._ids)
        check = FakeCheckRun(cid, repo.full_name, body["name"], body["head_sha"], state[0], state[1],
                             body.get("output"), body.get("details_url"), body.get("external_id"),
                             body.get("started_at") or _iso(self.clock()), body.get("completed_at"))
        if check.status == "completed" and not check.completed_at:
            check.completed_at = _iso(self.clock())
        check.history.append(body)
        self.check_runs[cid] = check
        return web.json_response(self._check_json(check), status=201)

    async def _h_update_check(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        check = self.check_runs.get(int(request.match_info["check_run_id"]))
        if check is None or check.repo != repo.full_name:
            return self._not_found()
        body = request[_JSON]
        state = self._check_state(body, check.status, check.conclusion)
        if isinstance(state, str):
            return self._error(422, "Invalid request.\n\n" + state)
        check.status, check.conclusion = state
        for key in ("name", "details_url", "external_id", "started_at", "completed_at", "output"):
            if key in body:
                setattr(check, key, body[key])
        if check.status == "completed" and not check.completed_at:
            check.completed_at = _iso(self.clock())
        check.history.append(body)
        return web.json_response(self._check_json(check))

    async def _h_contents(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        path = request.match_info["path"].strip("/")
        ref = request.query.get("ref", repo.default_branch)
        files = repo.files_at(ref)
        content = files.get(path)
        if content is None:
            # A folder: GitHub answers a list of its direct entries (files with their blob `sha`, and sub-folders).
            entries: dict[str, dict[str, Any]] = {}
            for name, data in sorted(files.items()):
                if not name.startswith(path + "/"):
                    continue
                rest = name[len(path) + 1:]
                if "/" in rest:
                    sub = rest.split("/", 1)[0]
                    entries.setdefault(sub, {"type": "dir", "name": sub, "path": f"{path}/{sub}", "sha": _sha(sub)})
                else:
                    raw_entry = data.encode() if isinstance(data, str) else data
                    entries[rest] = {"type": "file", "name": rest, "path": name, "sha": git_blob_sha(raw_entry),
                                     "size": len(raw_entry)}
            if not entries:
                return self._not_found()
            return web.json_response(list(entries.values()))
        raw = content.encode() if isinstance(content, str) else content
        blob = git_blob_sha(raw)
        # GitHub wraps the base64 at 60 columns with "\n"; clients must tolerate that.
        b64 = base64.b64encode(raw).decode()
        wrapped = "\n".join(b64[i:i + 60] for i in range(0, len(b64), 60)) + "\n"
        api = f"{self.url}/repos/{repo.full_name}/contents/{path}?ref={ref}"
        html = f"https://github.com/{repo.full_name}/blob/{ref}/{path}"
        git = f"{self.url}/repos/{repo.full_name}/git/blobs/{blob}"
        return web.json_response({
            "type": "file", "encoding": "base64", "size": len(raw), "name": path.rsplit("/", 1)[-1],
            "path": path, "content": wrapped, "sha": blob, "url": api, "git_url": git,
            "html_url": html,
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}",
            "_links": {"self": api, "git": git, "html": html}})

    def _commit_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        when = _iso(self.clock())
        person = {"name": "Octo Cat", "email": "octocat@github.com", "date": when}
        return {"sha": sha, "node_id": "C_" + sha[:16], "url": f"{self.url}/repos/{repo.full_name}/commits/{sha}",
                "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
                "commit": {"message": repo.messages.get(sha, f"commit {sha[:7]}"), "author": person,
                           "committer": person, "tree": {"sha": _sha(f"tree {sha}")}},
                "parents": []}

    async def _h_list_commits(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/commits?sha=<branch or sha>`: the branch's history, newest first (paginated).
        A branch this fake has no history for lists its head alone."""
        repo = self._repo_or_raise(self._repo_name(request))
        ref = request.query.get("sha") or repo.default_branch
        if ref in repo.history:
            shas = list(reversed(repo.history[ref]))
        else:
            head = repo.resolve(ref)
            if head is None:
                return self._error(404, "Not Found")
            shas = [head]
        return self._paginate(request, [self._commit_json(repo, sha) for sha in shas])

    async def _h_commit(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/commits/{ref}`: the commit a branch, tag or (short) SHA names; GitHub answers
        422 "No commit found for SHA: <ref>" for a ref that names nothing."""
        repo = self._repo_or_raise(self._repo_name(request))
        ref = request.match_info["ref"]
        sha = repo.resolve(ref)
        if sha is None:
            return self._error(422, f"No commit found for SHA: {ref}")
        return web.json_response({
            "sha": sha, "node_id": "C_" + sha[:16], "url": f"{self.url}/repos/{repo.full_name}/commits/{sha}",
            "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
            "commit": {"message": f"commit {sha[:7]}", "tree": {"sha": _sha(f"tree {sha}")}}, "parents": []})

    # ---------------------------------------------------------------- OAuth web flow
    # GitHub's documented flow for a GitHub App's user access tokens: GET /login/oauth/authorize (the user approves),
    # a redirect to the callback with ?code&state, POST /login/oauth/access_token (code -> token; errors come as
    # HTTP 200 with `error`), then the API with `Authorization: Bearer <token>`.
    @property
    def web_url(self) -> str:
        """The web host (github.com's part: /login/oauth/...), which is never under the API prefix."""
        return f"http://127.0.0.1:{self.port}"

    def add_oauth_app(self, client_id: str, client_secret: str, callback_url: str) -> None:
        self.oauth_apps[client_id] = (client_secret, callback_url)

    @staticmethod
    def _redirect_ok(registered: str, given: str) -> bool:
        # GitHub: host and port must match the callback URL exactly; the path must be the same or below it.
        a, b = urlsplit(registered), urlsplit(given)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc) and (b.path + "/").startswith(a.path.rstrip("/") + "/")

    async def _h_oauth_authorize(self, request: web.Request) -> web.Response:
        """The page where the user (signed in to GitHub, here: typing a login) approves the App."""
        q = request.query
        app = self.oauth_apps.get(q.get("client_id", ""))
        if app is None:
            return web.Response(status=404, text="<h1>404 — not found</h1>", content_type="text/html")
        redirect_uri = q.get("redirect_uri") or app[1]
        if not self._redirect_ok(app[1], redirect_uri):
            target = app[1] + "?" + urlencode({
                "error": "redirect_uri_mismatch", "state": q.get("state", ""),
                "error_description": "The redirect_uri MUST match the registered callback URL for this application.",
                "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-"
                             "errors/#redirect-uri-mismatch"})
            raise web.HTTPFound(target)
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
                         for k, v in (("client_id", q["client_id"]), ("redirect_uri", redirect_uri),
                                      ("state", q.get("state", ""))))
        page = ("<!doctype html><title>Authorize application</title><h1>Sign in to GitHub to continue</h1>"
                f'<form method="post" action="/login/oauth/authorize">{hidden}'
                '<label>Username <input id="login_field" name="login" autofocus></label> '
                '<button id="authorize" type="submit">Authorize</button></form>')
        return web.Response(text=page, content_type="text/html")

    async def _h_oauth_approve(self, request: web.Request) -> web.Response:
        form = await request.post()
        login, client_id = str(form.get("login", "")).strip(), str(form.get("client_id", ""))
        app = self.oauth_apps.get(client_id)
        if app is None or not login:
            return web.Response(status=422, text="unknown application or no user", content_type="text/html")
        code = secrets.token_hex(10)
        redirect_uri = str(form.get("redirect_uri") or app[1])
        self.oauth_codes[code] = (client_id, login, redirect_uri, self.clock() + timedelta(minutes=10))
        raise web.HTTPFound(redirect_uri + ("&" if "?" in redirect_uri else "?") +
                            urlencode({"code": code, "state": str(form.get("state", ""))}))

    async def _h_oauth_token(self, request: web.Request) -> web.Response:
        """Exchange a code for a user-to-server token (`ghu_`, expiring in 8 hours, with a refresh token)."""
        params: dict[str, str] = dict(request.query)
        if request.content_type == "application/json":
            params.update({k: str(v) for k, v in (await request.json()).items()})
        else:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        as_json = "application/json" in request.headers.get("Accept", "")

        def answer(body: dict[str, Any]) -> web.Response:
            if as_json:
                return web.json_response(body)
            return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")

        def error(code: str, description: str) -> web.Response:
            return answer({"error": code, "error_description": description,
                           "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-"
                                        f"access-token-request-errors/#{code.replace('_', '-')}"})

        app = self.oauth_apps.get(params.get("client_id", ""))
        if app is None or not secrets.compare_digest(app[0], params.get("client_secret", "")):
            return error("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
        grant = self.oauth_codes.pop(params.get("code", ""), None)  # a code works once
        if grant is None or grant[0] != params["client_id"] or grant[3] <= self.clock():
            return error("bad_verification_code", "The code passed is incorrect or expired.")
        if params.get("redirect_uri") and params["redirect_uri"] != grant[2]:
            return error("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this "
                                                  "application.")
        token = "ghu_" + secrets.token_hex(18)
        self.tokens[token] = Identity(grant[1], "User", None, self.clock() + timedelta(hours=8))
        self.user_tokens.append((grant[1], token))
        return answer({"access_token": token, "expires_in": 28800, "refresh_token": "ghr_" + secrets.token_hex(30),
                       "refresh_token_expires_in": 15897600, "scope": "", "token_type": "bearer"})

    # ---------------------------------------------------------------- artifacts
    def add_artifact(self, run_id: int, name: str, files: dict[str, bytes]) -> FakeArtifact:
        """What `actions/upload-artifact` leaves: the files of one artifact of a workflow run, zipped."""
        run = self.runs[run_id]
        art = FakeArtifact(next(self._ids), run.repo, run_id, name, zipped(files), self.clock())
        self.artifacts[art.id] = art
        return art

    def _artifact_json(self, a: FakeArtifact) -> dict[str, Any]:
        api = f"{self.url}/repos/{a.repo}/actions/artifacts/{a.id}"
        return {"id": a.id, "node_id": f"MDg6QXJ0aWZhY3Q{a.id}", "name": a.name, "size_in_bytes": len(a.zip),
                "url": api, "archive_download_url": f"{api}/zip", "expired": a.expired,
                "created_at": _iso(a.created_at), "updated_at": _iso(a.created_at),
                "expires_at": _iso(a.created_at + timedelta(days=14)),
                "digest": "sha256:" + hashlib.sha256(a.zip).hexdigest(),
                "workflow_run": {"id": a.run_id, "repository_id": self._repo_or_raise(a.repo).id}}

    async def _h_list_artifacts(self, request: web.Request) -> web.Response:
        run = self._run_or_none(request)
        if run is None:
            return self._not_found()
        name = request.query.get("name")
        items = [self._artifact_json(a) for a in self.artifacts.values()
                 if a.run_id == run.id and (name is None or a.name == name)]
        return self._paginate(request, items, wrap="artifacts")

    def _blob_sig(self, artifact_id: str) -> str:
        return hashlib.sha256(f"{self.token}:{artifact_id}".encode()).hexdigest()[:20]

    async def _h_artifact_zip(self, request: web.Request) -> web.Response:
        art = self.artifacts.get(int(request.match_info["artifact_id"]))
        if art is None or art.repo.lower() != self._repo_name(request).lower():
            return self._not_found()
        if request.match_info["archive_format"] != "zip":
            return self._error(422, "archive_format must be zip")
        if art.expired:
            return self._error(410, "Artifact has expired")
        # Like GitHub: a short-lived, signed storage URL; the client must not send its token there.
        location = f"{self.url}{_BLOBS}/{art.id}?sig={self._blob_sig(str(art.id))}"
        return web.Response(status=302, headers={"Location": location})

    async def _h_artifact_blob(self, request: web.Request) -> web.Response:
        art = self.artifacts.get(int(request.match_info["artifact_id"]))
        if art is None:
            return self._not_found()
        return web.Response(body=art.zip, content_type="application/zip")

    async def _h_status(self, request: web.Request) -> web.Response:
        repo = self._repo_or_raise(self._repo_name(request))
        body = dict(request[_JSON])
        body.update({"repo": repo.full_name, "sha": request.match_info["sha"]})
        self.statuses.append(body)
        out = _example("POST", "/repos/{owner}/{repo}/statuses/{sha}", "201")
        out.update({k: v for k, v in body.items() if k in ("state", "target_url", "description", "context")})
        return web.json_response(out, status=201)
