"""The GitHub port implemented with PyGithub: each `GitHubPort` call as PyGithub (or raw REST) requests.

Threads, clients, retries and typed errors live in `bot.github.transport`; App authentication in
`bot.github.app_auth`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import github
from github import GithubException

from bot.github.actions_calls import CLOCK_SKEW, ActionsCalls, _RunIndex, aware, iso
from bot.github.app_auth import DEFAULT_API_URL, AppTokenProvider, Clock, repo_path, utcnow
from bot.github.port import (
    REACTIONS,
    CheckOutput,
    CheckRunRef,
    Comment,
    CommentBody,
    CommentRef,
    CommitInfo,
    GitHubError,
    Permission,
    PullInfo,
    RepoInfo,
    RetryPolicy,
)
from bot.github.transport import Sleep, Transport
from bot.github.transport import raw as raw_request

log = logging.getLogger(__name__)

class PyGithubPort(ActionsCalls):
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
        self._run_index: dict[tuple[str, str], _RunIndex] = {}
        self._run_locks: dict[tuple[str, str], asyncio.Lock] = {}

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
                                   created_at=aware(c.created_at), updated_at=aware(c.updated_at)))
            return out

        return await self._call(repo, go)

    async def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        if content not in REACTIONS:
            raise ValueError(f"unknown reaction {content!r}; GitHub accepts {sorted(REACTIONS)}")
        url = f"{repo_path(repo)}/issues/comments/{int(comment_id)}/reactions"
        # Idempotent on GitHub's side: re-adding the same reaction answers 200 instead of 201.
        await self._call(repo, lambda g: self._raw(g, "POST", url, input={"content": content}), write=True)

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
            body["started_at"] = iso(started_at)
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
            body["completed_at"] = iso(completed_at)
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
