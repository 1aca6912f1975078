"""The GitHub port implemented with PyGithub: each `GitHubPort` call as PyGithub (or raw REST) requests.

Threads, clients, retries and typed errors live in `bot.github.transport`; App authentication in
`bot.github.app_auth`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import github
import requests
from github import GithubException

from bot.github.app_auth import DEFAULT_API_URL, AppTokenProvider, Clock, repo_path, utcnow
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
    GitHubError,
    NotFound,
    Permission,
    PullInfo,
    RepoInfo,
    RetryPolicy,
    ValidationFailed,
    WorkflowRun,
    run_name,
)
from bot.github.transport import Sleep, Transport
from bot.github.transport import raw as raw_request

log = logging.getLogger(__name__)

# GitHub's clock and ours drift; a run created "before" our dispatch by a few seconds is still ours.
CLOCK_SKEW = timedelta(seconds=60)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return _aware(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


def _run_from(raw: dict[str, Any]) -> WorkflowRun:
    return WorkflowRun(id=int(raw["id"]), name=str(raw.get("name") or ""),
                       display_title=str(raw.get("display_title") or raw.get("name") or ""),
                       status=str(raw.get("status") or ""), conclusion=raw.get("conclusion"),
                       html_url=str(raw.get("html_url") or ""), head_sha=str(raw.get("head_sha") or ""),
                       event=str(raw.get("event") or ""), run_attempt=int(raw.get("run_attempt") or 1),
                       created_at=_parse_time(raw.get("created_at")), updated_at=_parse_time(raw.get("updated_at")))


class PyGithubPort:
    """`GitHubPort` over PyGithub. Build it with `with_token(...)` or `with_app(...)`; `await close()` at shutdown."""

    def __init__(self, *, base_url: str = DEFAULT_API_URL, token: str | None = None,
                 app: AppTokenProvider | None = None, retry: RetryPolicy | None = None,
                 sleep: Sleep = asyncio.sleep, clock: Clock = utcnow, max_workers: int = 8,
                 timeout: int = 15, writes_per_minute: float = 80, writes_per_hour: float = 500, per_page: int = 100,
                 default_branch_ttl: timedelta = timedelta(minutes=10)) -> None:
        self._t = Transport(base_url=base_url, token=token, app=app, retry=retry or RetryPolicy(), sleep=sleep,
                            max_workers=max_workers, timeout=timeout, writes_per_minute=writes_per_minute,
                            writes_per_hour=writes_per_hour, per_page=per_page)
        self.base_url = self._t.base_url
        self._call = self._t.call
        self._raw = raw_request
        self._clock = clock
        self._per_page = per_page
        self._default_branch_ttl = default_branch_ttl
        self._default_branches: dict[str, tuple[str, datetime]] = {}

    @classmethod
    def with_token(cls, base_url: str, token: str, **kw: Any) -> PyGithubPort:
        """Simple mode: one token (GITHUB_TOKEN / a PAT) for every repository."""
        if not token:
            raise ValueError("GitHub token is empty")
        return cls(base_url=base_url, token=token, **kw)

    @classmethod
    def with_app(cls, base_url: str, app_id: int | str, private_key: str, *, clock: Clock = utcnow,
                 refresh_margin: timedelta = timedelta(minutes=5), **kw: Any) -> PyGithubPort:
        """GitHub App mode: JWT from app id + private key, one cached installation token per installation."""
        provider = AppTokenProvider(app_id, private_key, base_url=base_url, clock=clock,
                                    refresh_margin=refresh_margin)
        return cls(base_url=base_url, app=provider, clock=clock, **kw)

    @property
    def app(self) -> AppTokenProvider | None:
        return self._t.app

    @property
    def retry(self) -> RetryPolicy:
        return self._t.retry

    @property
    def waits(self) -> list[float]:
        """Every retry wait, in order (for logs and tests)."""
        return self._t.waits

    def remember_installation(self, repo: str, installation_id: int) -> None:
        """Seed the repo -> installation map from a webhook's `installation.id` (saves a lookup)."""
        self._t.remember_installation(repo, installation_id)

    async def close(self) -> None:
        await self._t.close()

    # ------------------------------------------------------------------ the GitHubPort API
    async def get_permission(self, repo: str, user: str) -> Permission:
        url = f"{repo_path(repo)}/collaborators/{quote(user, safe='')}/permission"

        def go(g: github.Github) -> Permission:
            _, data = self._raw(g, "GET", url)
            permission = str(data.get("permission") or "none")
            return Permission(permission, str(data.get("role_name") or permission))

        return await self._call(repo, go)

    async def get_pull(self, repo: str, number: int) -> PullInfo:
        def go(g: github.Github) -> PullInfo:
            pr = g.get_repo(repo).get_pull(number)
            head_repo = pr.head.repo.full_name if pr.head.repo is not None else None
            base_repo = pr.base.repo.full_name
            return PullInfo(number=pr.number, head_sha=pr.head.sha, head_ref=pr.head.ref, head_repo=head_repo,
                            base_ref=pr.base.ref, base_repo=base_repo,
                            # A deleted fork (head.repo null) is as untrusted as a live one.
                            is_fork=head_repo is None or head_repo.lower() != base_repo.lower(),
                            author=pr.user.login, state=pr.state, merged=bool(pr.merged), draft=bool(pr.draft),
                            title=pr.title or "", html_url=pr.html_url or "")

        return await self._call(repo, go)

    async def create_comment(self, repo: str, number: int, body: str) -> CommentRef:
        started = self._clock()

        def go(g: github.Github) -> CommentRef:
            c = g.get_repo(repo).get_issue(number).create_comment(body)
            return CommentRef(c.id, c.html_url)

        async def landed() -> CommentRef | None:
            # GitHub often applies a POST that then answers 502: look for our identical comment before re-posting.
            for c in reversed(await self.list_comments(repo, number)):
                if c.body == body and c.created_at is not None and c.created_at >= started - CLOCK_SKEW:
                    return CommentRef(c.id, c.html_url)
            return None

        return await self._call(repo, go, idempotent=False, write=True, landed=landed)

    async def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        url = f"{repo_path(repo)}/issues/comments/{int(comment_id)}"
        await self._call(repo, lambda g: self._raw(g, "PATCH", url, input={"body": body}), write=True)

    async def get_comment(self, repo: str, comment_id: int) -> CommentBody:
        url = f"{repo_path(repo)}/issues/comments/{int(comment_id)}"

        def go(g: github.Github) -> CommentBody:
            _, data = self._raw(g, "GET", url)
            return CommentBody(str(data.get("body") or ""), str((data.get("user") or {}).get("login") or ""))

        return await self._call(repo, go)

    async def list_comments(self, repo: str, number: int) -> list[Comment]:
        def go(g: github.Github) -> list[Comment]:
            out = []
            for c in g.get_repo(repo).get_issue(number).get_comments():
                out.append(Comment(id=c.id, body=c.body or "", author_login=c.user.login if c.user else "",
                                   author_type=c.user.type if c.user else "", html_url=c.html_url or "",
                                   created_at=_aware(c.created_at), updated_at=_aware(c.updated_at)))
            return out

        return await self._call(repo, go)

    async def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        if content not in REACTIONS:
            raise ValueError(f"unknown reaction {content!r}; GitHub accepts {sorted(REACTIONS)}")
        url = f"{repo_path(repo)}/issues/comments/{int(comment_id)}/reactions"
        # Idempotent on GitHub's side: re-adding the same reaction answers 200 instead of 201.
        await self._call(repo, lambda g: self._raw(g, "POST", url, input={"content": content}), write=True)

    async def dispatch_workflow(self, repo: str, workflow_file: str, ref: str,
                                inputs: dict[str, str]) -> DispatchResult:
        bad = {k: type(v).__name__ for k, v in inputs.items() if not isinstance(v, str)}
        if bad:
            raise ValueError(f"workflow inputs must be strings; got {bad}")
        started = self._clock()
        url = f"{repo_path(repo)}/actions/workflows/{quote(workflow_file, safe='')}/dispatches"
        body: dict[str, Any] = {"ref": ref, "inputs": inputs, "return_run_details": True}

        def go(g: github.Github) -> DispatchResult:
            # requestJsonAndCheck rather than Workflow.create_dispatch: we need to tell 200-with-body from 204.
            _, data = self._raw(g, "POST", url, input=body)
            if isinstance(data, dict) and data.get("workflow_run_id") is not None:
                return DispatchResult(int(data["workflow_run_id"]), data.get("html_url"), data.get("run_url"))
            return DispatchResult(None, None, None)

        token = inputs.get(RUN_NAME_INPUT)

        async def landed() -> DispatchResult | None:
            # A 5xx may hide a dispatch that happened: only the run-name token can tell, so without one we
            # refuse to risk a second GPU run and surface the error.
            if not token:
                return None
            run = await self.find_run_by_name(repo, workflow_file, token, started)
            return None if run is None else DispatchResult(run.id, run.html_url, None)

        return await self._call(repo, go, idempotent=False, write=True, landed=landed if token else None)

    async def find_run_by_name(self, repo: str, workflow_file: str, run_name_token: str,
                               created_after: datetime, *, max_runs: int = 300) -> WorkflowRun | None:
        """The dispatched run named exactly `run_name(run_name_token)`, among this workflow's dispatches created
        since `created_after` (one listing request per 100 runs: the listing's JSON already holds the names)."""
        if not run_name_token:
            raise ValueError("run_name_token is empty")
        since = _iso((_aware(created_after) or created_after) - CLOCK_SKEW)
        url = f"{repo_path(repo)}/actions/workflows/{quote(workflow_file, safe='')}/runs"
        wanted = run_name(run_name_token)

        def go(g: github.Github) -> WorkflowRun | None:
            for page in range(1, max_runs // self._per_page + 2):
                _, data = self._raw(g, "GET", url, parameters={"event": "workflow_dispatch", "created": f">={since}",
                                                               "per_page": self._per_page, "page": page})
                runs = data.get("workflow_runs") or []
                for raw in runs:
                    if raw.get("display_title") == wanted:
                        return _run_from(raw)
                if len(runs) < self._per_page:
                    break
            return None

        return await self._call(repo, go)

    async def get_workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        url = f"{repo_path(repo)}/actions/runs/{int(run_id)}"

        def go(g: github.Github) -> WorkflowRun:
            _, data = self._raw(g, "GET", url)
            return _run_from(data)

        return await self._call(repo, go)

    async def download_artifact(self, repo: str, run_id: int, name: str, *, max_bytes: int) -> bytes | None:
        listing = f"{repo_path(repo)}/actions/runs/{int(run_id)}/artifacts"

        def go(g: github.Github) -> bytes | None:
            _, data = self._raw(g, "GET", listing, parameters={"name": name})
            found = [a for a in data.get("artifacts", []) if a.get("name") == name and not a.get("expired")]
            if not found:
                return None
            art = found[0]
            if int(art.get("size_in_bytes") or 0) > max_bytes:
                raise ValidationFailed(413, f"artifact {name} is {art['size_in_bytes']} bytes; at most {max_bytes} "
                                            "are read")
            # GitHub answers 302 to a short-lived storage URL; PyGithub follows it without our token.
            body = bytearray()
            try:
                _, _, chunks = g.requester.getStream(art["archive_download_url"], chunk_size=1 << 16)
                for chunk in chunks:
                    body += chunk
                    if len(body) > max_bytes:
                        raise ValidationFailed(413, f"artifact {name} is larger than {max_bytes} bytes")
            except requests.HTTPError as exc:  # the storage host's answer, not the API's
                status = exc.response.status_code if exc.response is not None else 0
                raise (NotFound if status in (404, 410) else GitHubError)(status, f"artifact download: {exc}") \
                    from exc
            return bytes(body)

        try:
            return await self._call(repo, go)
        except NotFound:
            return None
        except GitHubError as exc:
            if exc.status == 410:  # expired between the listing and the download
                return None
            raise

    async def cancel_workflow_run(self, repo: str, run_id: int) -> bool:
        """True when GitHub accepted the cancel (202); False when the run had already completed (409)."""
        url = f"{repo_path(repo)}/actions/runs/{int(run_id)}/cancel"
        try:
            await self._call(repo, lambda g: self._raw(g, "POST", url), write=True)
        except Conflict:
            return False
        return True

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
        url = f"{repo_path(repo)}/check-runs"

        def go(g: github.Github) -> CheckRunRef:
            _, data = self._raw(g, "POST", url, input=body)
            return CheckRunRef(int(data["id"]), str(data.get("html_url") or ""))

        # A duplicate check run is harmless (GitHub shows the latest one per name), so retrying is fine.
        return await self._call(repo, go, write=True)

    async def update_check_run(self, repo: str, check_run_id: int, *, status: str | None = None,
                               conclusion: str | None = None, output: CheckOutput | None = None,
                               details_url: str | None = None, completed_at: datetime | None = None) -> None:
        body: dict[str, Any] = self._check_fields(conclusion, output, details_url, completed_at)
        if status is not None:
            body["status"] = status
        url = f"{repo_path(repo)}/check-runs/{int(check_run_id)}"
        await self._call(repo, lambda g: self._raw(g, "PATCH", url, input=body), write=True)

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

    async def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        """The UTF-8 text of a file at `ref` (default branch when None), or None when it does not exist."""
        url = f"{repo_path(repo)}/contents/{quote(path.lstrip('/'), safe='/')}"

        def go(g: github.Github) -> str | None:
            try:
                _, data = self._raw(g, "GET", url, parameters={"ref": ref} if ref else None)
            except GithubException as exc:
                if exc.status == 404:
                    return None
                raise
            if isinstance(data, list) or data.get("type") != "file":
                kind = "directory" if isinstance(data, list) else data.get("type")
                raise GitHubError(0, f"{repo}:{path} is not a file (it is a {kind})")
            if data.get("encoding") != "base64":
                raise GitHubError(0, f"{repo}:{path} is too large for the contents API ({data.get('size')} bytes)")
            try:
                content = base64.b64decode(str(data.get("content") or ""))
                return content.decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise GitHubError(0, f"{repo}:{path} is not UTF-8 text: {exc}") from exc

        return await self._call(repo, go)

    async def resolve_commit(self, repo: str, ref: str) -> str | None:
        """`GET /repos/{o}/{r}/commits/{ref}` takes a branch, a tag or a (short) SHA; an unknown ref is 404 or 422."""
        url = f"{repo_path(repo)}/commits/{quote(ref, safe='')}"

        def go(g: github.Github) -> str | None:
            try:
                _, data = self._raw(g, "GET", url)
            except GithubException as exc:
                if exc.status in (404, 422):
                    return None
                raise
            return str(data["sha"]) if isinstance(data, dict) and data.get("sha") else None

        return await self._call(repo, go)

    async def blob_shas(self, repo: str, paths: list[str], ref: str) -> dict[str, str | None]:
        """The contents API answers a file's blob `sha` for files of any size (content is omitted above 1 MB)."""
        out: dict[str, str | None] = {}
        for path in paths:
            url = f"{repo_path(repo)}/contents/{quote(path.lstrip('/'), safe='/')}"

            def go(g: github.Github, url: str = url) -> str | None:
                try:
                    _, data = self._raw(g, "GET", url, parameters={"ref": ref})
                except GithubException as exc:
                    if exc.status == 404:
                        return None
                    raise
                if not isinstance(data, dict) or data.get("type") != "file":
                    return None
                return str(data["sha"])

            out[path] = await self._call(repo, go)
        return out

    async def folder_blobs(self, repo: str, folder: str, ref: str) -> dict[str, str] | None:
        """The contents API lists a folder's entries, each with its blob `sha` (up to 1,000 entries)."""
        url = f"{repo_path(repo)}/contents/{quote(folder.strip('/'), safe='/')}"

        def go(g: github.Github) -> dict[str, str] | None:
            try:
                _, data = self._raw(g, "GET", url, parameters={"ref": ref})
            except GithubException as exc:
                if exc.status == 404:
                    return None
                raise
            if not isinstance(data, list):
                return None
            return {str(e["path"]): str(e["sha"]) for e in data if isinstance(e, dict) and e.get("type") == "file"}

        return await self._call(repo, go)

    async def list_pull_files(self, repo: str, number: int) -> list[str]:
        return await self._call(repo, lambda g: [f.filename for f in g.get_repo(repo).get_pull(number).get_files()])

    async def whoami(self) -> str:
        # Asked once at start-up, outside any repository (so not through `_call`, which needs an installation).
        app = self._t.app
        if app is not None:
            return f"{await self._t.outside_repo(app.slug)}[bot]"
        # The client is taken in the worker thread that uses it (clients are per thread).
        data = await self._t.outside_repo(lambda: raw_request(self._t.client(None), "GET", "/user")[1])
        return str(data["login"])

    async def default_branch(self, repo: str) -> str:
        key = repo.lower()
        cached = self._default_branches.get(key)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]

        def go(g: github.Github) -> str:
            _, data = self._raw(g, "GET", repo_path(repo))
            return str(data["default_branch"])

        branch = await self._call(repo, go)
        self._default_branches[key] = (branch, self._clock() + self._default_branch_ttl)
        return branch

    async def repo_info(self, repo: str) -> RepoInfo:
        def go(g: github.Github) -> RepoInfo:
            _, data = self._raw(g, "GET", repo_path(repo))
            return RepoInfo(private=bool(data.get("private", True)), default_branch=str(data["default_branch"]))

        return await self._call(repo, go)

    async def branch_commits(self, repo: str, branch: str, limit: int = 100) -> list[CommitInfo]:
        url = f"{repo_path(repo)}/commits"

        def go(g: github.Github) -> list[CommitInfo]:
            _, data = self._raw(g, "GET", url, parameters={"sha": branch, "per_page": max(1, min(100, limit))})
            out = []
            for c in data if isinstance(data, list) else []:
                commit = c.get("commit") or {}
                date = ((commit.get("committer") or {}).get("date")) or ""
                out.append(CommitInfo(sha=str(c["sha"]), title=str(commit.get("message") or "").split("\n", 1)[0],
                                      date=str(date)))
            return out

        return await self._call(repo, go)
