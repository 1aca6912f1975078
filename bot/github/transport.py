"""How the PyGithub port talks to GitHub: one client per installation and thread, a bounded thread pool, paced
writes, typed errors and retries.

PyGithub is blocking, so every call runs in a small executor; its own urllib3 retry is switched off because it
would blindly re-POST on 5xx (a second comment, a second GPU run). Retries live here instead: 5xx and secondary
rate limits are retried a bounded number of times, waits honour `Retry-After` / `x-ratelimit-reset`, and the
two non-idempotent writes (create comment, dispatch) first look whether the failed attempt landed anyway.
Content-creating requests are paced below GitHub's secondary limits (80 a minute, 500 an hour) instead of finding
them through 403s: https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import github
import requests
from aiolimiter import AsyncLimiter
from github import Auth, GithubException

from bot.github.app_auth import AppTokenProvider, InstallationAuth
from bot.github.port import (
    Conflict,
    Forbidden,
    GitHubError,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    Unauthorized,
    ValidationFailed,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def error_message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        msg = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = "; ".join(str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
                                for e in errors)
            msg = f"{msg} ({details})" if msg else details
        return msg or str(exc.status)
    return str(data) if data else str(exc.status)


def rate_limit_wait(exc: GithubException, now: float, policy: RetryPolicy) -> float | None:
    """Seconds to wait when `exc` is a primary/secondary rate limit, else None (403 for lack of permission)."""
    if exc.status not in (403, 429):
        return None
    headers = exc.headers or {}
    retry_after = _header(headers, "retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _header(headers, "x-ratelimit-reset")
        if reset and reset.isdigit():
            return max(0.0, int(reset) - now) + 1.0  # +1: the reset happens somewhere inside that second
    message = error_message(exc).lower()
    if exc.status == 429 or "secondary rate limit" in message or "rate limit" in message:
        return policy.secondary_default_wait
    return None


def typed_error(exc: GithubException) -> GitHubError:
    status, msg = exc.status, error_message(exc)
    doc = exc.data.get("documentation_url") if isinstance(exc.data, dict) else None
    kinds: dict[int, type[GitHubError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
                                           410: NotFound, 422: ValidationFailed}
    if status >= 500:
        return ServerError(status, msg, documentation_url=doc)
    return kinds.get(status, GitHubError)(status, msg, documentation_url=doc)


class _Retryable(Exception):
    """Internal: the attempt failed in a way worth retrying after `wait` seconds."""

    def __init__(self, error: GitHubError, wait: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def _bucket(per_window: float, window_s: float) -> AsyncLimiter:
    """A leaky bucket that lets at most `per_window` acquisitions through in ANY `window_s` seconds: a small burst
    (a single command's writes go out at once) plus a steady leak, together exactly the limit."""
    burst = max(1.0, min(8.0, per_window // 4))
    return AsyncLimiter(burst, burst * window_s / (per_window - burst))


class WritePacer:
    """GitHub's secondary limits on content-creating requests, per installation (token mode: one for all)."""

    def __init__(self, per_minute: float, per_hour: float) -> None:
        self.per_minute, self.per_hour = per_minute, per_hour
        self._buckets: dict[str | None, list[AsyncLimiter]] = {}

    async def acquire(self, key: str | None) -> None:
        buckets = self._buckets.get(key)
        if buckets is None:
            buckets = self._buckets[key] = [_bucket(n, s) for n, s in ((self.per_minute, 60.0),
                                                                       (self.per_hour, 3600.0)) if n > 0]
        for bucket in buckets:
            await bucket.acquire()


class Transport:
    """Runs blocking PyGithub calls for the port: per-installation clients, executor threads, bounded retries."""

    def __init__(self, *, base_url: str, token: str | None, app: AppTokenProvider | None, retry: RetryPolicy,
                 sleep: Sleep, max_workers: int, timeout: int, writes_per_minute: float, writes_per_hour: float,
                 per_page: int) -> None:
        if (token is None) == (app is None):
            raise ValueError("give exactly one of token (GITHUB_TOKEN mode) or app (GitHub App mode)")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.app = app
        self.retry = retry
        self._sleep = sleep
        self._timeout = timeout
        # Shared by every thread (PyGithub's own `seconds_between_writes` is per client, so per thread here).
        self.pacer = WritePacer(writes_per_minute, writes_per_hour)
        self._per_page = per_page
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="github")
        # PyGithub is not thread-safe: a Requester keeps one connection whose method, URL and body live on a shared
        # object between request() and getresponse(), so two threads on one client swap answers (PyGithub PR
        # #2052, still open). Every worker thread gets its own client per installation; `_all` is for close().
        self._local = threading.local()
        self._all: list[github.Github] = []
        self._clients_lock = threading.Lock()
        self._installations: dict[str, int] = {}
        self.waits: list[float] = []  # every retry wait, in order (for logs and tests)

    def remember_installation(self, repo: str, installation_id: int) -> None:
        self._installations[repo.lower()] = int(installation_id)

    async def close(self) -> None:
        with self._clients_lock:
            clients, self._all = self._all, []
        for client in clients:
            client.close()
        if self.app is not None:
            self.app.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def client(self, installation_id: int | None) -> github.Github:
        """This thread's client for the installation (made on first use; never shared with another thread)."""
        clients: dict[int | None, github.Github] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        client = clients.get(installation_id)
        if client is None:
            auth: Auth.Auth
            if self.app is not None:
                assert installation_id is not None
                auth = InstallationAuth(self.app, installation_id)
            else:
                assert self._token is not None
                auth = Auth.Token(self._token)
            client = github.Github(base_url=self.base_url, auth=auth, timeout=self._timeout, retry=None,
                                   per_page=self._per_page, seconds_between_requests=None,
                                   seconds_between_writes=None, lazy=True)
            clients[installation_id] = client
            with self._clients_lock:
                self._all.append(client)
        return client

    def _installation_sync(self, repo: str) -> int | None:
        if self.app is None:
            return None
        key = repo.lower()
        if key not in self._installations:
            try:
                self._installations[key] = self.app.installation_for(repo)
            except GithubException as exc:
                if exc.status == 404:
                    raise NotFound(404, f"the GitHub App is not installed on {repo}") from exc
                raise
        return self._installations[key]

    def _attempt(self, repo: str, fn: Callable[[github.Github], T]) -> T:
        """One attempt in a worker thread; GitHub failures become typed errors or _Retryable."""
        try:
            return fn(self.client(self._installation_sync(repo)))
        except GithubException as exc:
            wait = rate_limit_wait(exc, time.time(), self.retry)
            if wait is not None:
                raise _Retryable(RateLimited(exc.status, error_message(exc), retry_after=wait), wait) from exc
            err = typed_error(exc)
            if isinstance(err, Unauthorized) and self.app is not None:
                # A revoked/expired installation token: drop it so the next attempt mints a fresh one.
                inst = self._installations.get(repo.lower())
                if inst is not None:
                    self.app.invalidate(inst)
                raise _Retryable(err, 0.0) from exc
            if exc.status in self.retry.statuses:
                raise _Retryable(err, -1.0) from exc
            raise err from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(ServerError(0, f"connection to {self.base_url} failed: {exc}"), -1.0) from exc

    async def call(self, repo: str, fn: Callable[[github.Github], T], *, idempotent: bool = True, write: bool = False,
                   landed: Callable[[], Awaitable[T | None]] | None = None) -> T:
        """Run `fn` with bounded retries. `write`: a content-creating request, paced (every attempt). For
        non-idempotent writes `landed` checks whether a failed attempt was applied anyway (then its result is
        returned instead of writing twice)."""
        loop = asyncio.get_running_loop()
        policy = self.retry
        unauthorized_retried = False
        for attempt in range(1, policy.max_attempts + 1):
            if write:  # waits here, on the event loop, not in a worker thread
                await self.pacer.acquire(repo.split("/", 1)[0].lower() if self.app is not None else None)
            try:
                return await loop.run_in_executor(self._executor, self._attempt, repo, fn)
            except _Retryable as r:
                err = r.error
                if isinstance(err, Unauthorized):
                    if unauthorized_retried:
                        raise err from None
                    unauthorized_retried = True
                    continue
                if isinstance(err, ServerError) and not idempotent:
                    if landed is None:
                        raise err from None
                    found = await landed()
                    if found is not None:
                        log.warning("GitHub answered %s but the write landed; not repeating it", err.status)
                        return found
                if attempt == policy.max_attempts:
                    raise err from None
                backoff = policy.base_delay * 2 ** (attempt - 1) * (1 + random.random() / 4)  # jitter
                wait = r.wait if r.wait >= 0 else min(policy.max_delay, backoff)
                if isinstance(err, RateLimited) and wait > policy.max_delay:
                    raise err from None  # waiting longer would stall the webhook handler; the caller reschedules
                log.warning("GitHub %s (%s); retry %d/%d in %.1fs", err.status, err.message, attempt,
                            policy.max_attempts - 1, wait)
                self.waits.append(wait)
                await self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def outside_repo(self, fn: Callable[[], T]) -> T:
        """One call that belongs to no repository (start-up questions such as "who am I"), without retries."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except GithubException as exc:
            raise typed_error(exc) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServerError(0, f"connection to {self.base_url} failed: {exc}") from exc


def raw(g: github.Github, verb: str, url: str, **kw: Any) -> tuple[dict[str, Any], Any]:
    # PyGithub lacks these calls (role_name, reactions by comment id, ...): use its requester so auth,
    # base URL, timeouts and headers stay the same as everywhere else.
    return g.requester.requestJsonAndCheck(verb, url, **kw)
