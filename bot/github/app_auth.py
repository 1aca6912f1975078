"""GitHub App authentication for the PyGithub port: the App JWT mints installation tokens, cached until near expiry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from github import Auth, GithubIntegration

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

DEFAULT_API_URL = "https://api.github.com"


def utcnow() -> datetime:
    return datetime.now(UTC)


def split_repo(repo: str) -> tuple[str, str]:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"repository must be 'owner/name', got {repo!r}")
    return owner, name


def repo_path(repo: str) -> str:
    owner, name = split_repo(repo)
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


@dataclass(frozen=True)
class _CachedToken:
    token: str
    expires_at: datetime


class AppTokenProvider:
    """Mints installation access tokens from the App's JWT and caches each one until `refresh_margin` before expiry.

    Thread-safe: it is called from the executor threads, inside PyGithub's request path.
    """

    def __init__(self, app_id: int | str, private_key: str, *, base_url: str = DEFAULT_API_URL,
                 clock: Clock = utcnow, refresh_margin: timedelta = timedelta(minutes=5),
                 timeout: int = 15) -> None:
        if not str(app_id).strip():
            raise ValueError("GitHub App id is empty")
        if "PRIVATE KEY" not in private_key:
            raise ValueError("GitHub App private key is not a PEM private key (expected '-----BEGIN ... PRIVATE KEY')")
        self.app_id = app_id
        self.clock = clock
        self.refresh_margin = refresh_margin
        self._integration = GithubIntegration(auth=Auth.AppAuth(app_id, private_key), base_url=base_url,
                                              timeout=timeout, retry=None, seconds_between_requests=None,
                                              seconds_between_writes=None)
        self._tokens: dict[int, _CachedToken] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def token(self, installation_id: int) -> str:
        with self._guard:
            lock = self._locks.setdefault(installation_id, threading.Lock())
        with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and self.clock() < cached.expires_at - self.refresh_margin:
                return cached.token
            auth = self._integration.get_access_token(installation_id)
            expires = auth.expires_at
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            self._tokens[installation_id] = _CachedToken(auth.token, expires)
            log.info("minted installation token for %s (expires %s)", installation_id, expires.isoformat())
            return auth.token

    def invalidate(self, installation_id: int) -> None:
        with self._guard:
            self._tokens.pop(installation_id, None)

    def installation_for(self, repo: str) -> int:
        owner, name = split_repo(repo)
        return int(self._integration.get_repo_installation(owner, name).id)

    def slug(self) -> str:
        """The App's slug (`GET /app` with the JWT): its comments are signed `<slug>[bot]`."""
        return str(self._integration.get_app().slug)

    def close(self) -> None:
        self._integration.close()


class InstallationAuth(Auth.Auth):
    """PyGithub auth that asks the provider for a (cached, refreshed) installation token on every request."""

    def __init__(self, provider: AppTokenProvider, installation_id: int) -> None:
        self._provider = provider
        self._installation_id = installation_id

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        return self._provider.token(self._installation_id)


