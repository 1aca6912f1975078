"""Decides who may see a repository's pages: anyone for a public repository; for a private one a GitHub user, logged in
through the App's OAuth web flow, whose read permission the API confirms (answers cached briefly)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp_session import AbstractStorage, Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from bot.config import Config
from bot.github.port import GitHubError, GitHubPort, NotFound, RepoInfo

log = logging.getLogger(__name__)

COOKIE = "tunebot_session"
SESSION_MAX_AGE_S = 8 * 3600  # GitHub App user tokens expire after 8 hours as well
READ_PERMISSIONS = ("admin", "write", "read")


def session_storage(config: Config) -> EncryptedCookieStorage:
    """Encrypted and authenticated (Fernet: AES + HMAC-SHA256) cookies: `HttpOnly`, `SameSite=Lax`, and `Secure`
    when the service is reached over TLS (its public URL is https)."""
    secret = (config.web_session_key or config.webhook_secret).get().encode("utf-8")
    if not secret:
        secret = secrets.token_bytes(32)  # no key configured: sessions last as long as this process
    # A dedicated key, so the webhook secret itself never encrypts anything.
    key = hmac.new(secret, b"tunebot web session v1", hashlib.sha256).digest()
    return EncryptedCookieStorage(Fernet(base64.urlsafe_b64encode(key)), cookie_name=COOKIE, max_age=SESSION_MAX_AGE_S,
                                  path="/ui", httponly=True, samesite="Lax",
                                  secure=config.public_url.startswith("https://"))


# aiohttp-session's storage does what matters (Fernet encryption, the cookie's attributes); its middleware and
# get_session keep the session on the request under plain string keys, which aiohttp >= 3.14 warns about
# (NotAppKeyWarning: https://docs.aiohttp.org/en/stable/web_advanced.html#request-s-storage) up to its latest release,
# 2.12.1. The per-request bookkeeping below is the same, under typed keys.
_STORAGE: web.RequestKey[AbstractStorage] = web.RequestKey("tunebot_session_storage", AbstractStorage)
_SESSION: web.RequestKey[Session] = web.RequestKey("tunebot_session", Session)


def session_middleware(storage: AbstractStorage) -> Middleware:
    """Makes the session available to handlers (get_session/new_session) and writes its cookie when it changed."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[_STORAGE] = storage
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects (login, logout) carry the cookie too
            await _save(request, exc, storage)
            raise
        await _save(request, response, storage)
        return response

    return middleware


async def _save(request: web.Request, response: web.StreamResponse, storage: AbstractStorage) -> None:
    session = request.get(_SESSION)
    if session is None or not session._changed:  # its own middleware reads it so
        return
    if isinstance(response, web.Response | web.HTTPException) and not response.prepared:
        await storage.save_session(request, response, session)


def _storage(request: web.Request) -> AbstractStorage:
    if _STORAGE not in request:
        raise RuntimeError("the web view's session middleware is not installed")
    return request[_STORAGE]


async def get_session(request: web.Request) -> Session:
    """The request's session, read from its cookie once (a missing, stale or forged cookie reads as empty)."""
    session = request.get(_SESSION)
    if session is None:
        session = await _storage(request).load_session(request)
        request[_SESSION] = session
    return session


async def new_session(request: web.Request) -> Session:
    """A fresh session (new identity) in place of the request's: used at login."""
    session = await _storage(request).new_session()
    request[_SESSION] = session
    return session


@dataclass
class _Cached:
    value: object
    until: float


class Access:
    """Repository visibility and a viewer's read permission, asked through the App's installation (the same port
    every other call uses) and remembered for `ttl_s`: a revoked permission stops showing pages within that time."""

    def __init__(self, github: GitHubPort, *, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 10_000) -> None:
        self.github = github
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._cache: dict[tuple[str, ...], _Cached] = {}

    def _get(self, key: tuple[str, ...]) -> tuple[bool, object]:
        hit = self._cache.get(key)
        if hit is not None and hit.until > self.clock():
            return True, hit.value
        return False, None

    def _put(self, key: tuple[str, ...], value: object) -> None:
        if len(self._cache) >= self.max_entries:
            now = self.clock()
            self._cache = {k: v for k, v in self._cache.items() if v.until > now}
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
        self._cache[key] = _Cached(value, self.clock() + self.ttl_s)

    async def repo(self, repo: str) -> RepoInfo | None:
        """The repository as the App sees it; None when it does not exist or the App is not installed there."""
        key = ("repo", repo.lower())
        found, value = self._get(key)
        if found:
            return value if isinstance(value, RepoInfo) else None
        try:
            info: RepoInfo | None = await self.github.repo_info(repo)
        except NotFound:
            info = None
        self._put(key, info)
        return info

    async def can_read(self, repo: str, login: str) -> bool:
        key = ("perm", repo.lower(), login.lower())
        found, value = self._get(key)
        if found:
            return bool(value)
        try:
            perm = await self.github.get_permission(repo, login)
            ok = perm.permission in READ_PERMISSIONS
        except NotFound:  # not a collaborator at all
            ok = False
        self._put(key, ok)
        return ok


class OAuth:
    """The GitHub App's web flow (docs: "Generating a user access token for a GitHub App"): authorize on github.com,
    exchange the code for a user-to-server token, ask `GET /user` who it is. The token is used for that one call and
    then dropped: the session keeps only the login."""

    def __init__(self, config_of: Callable[[], Config], http: Callable[[], aiohttp.ClientSession]) -> None:
        self._config = config_of
        self._http = http

    @property
    def enabled(self) -> bool:
        config = self._config()
        return bool(config.github_client_id and config.github_client_secret)

    def redirect_uri(self) -> str:
        return f"{self._config().public_url.rstrip('/')}/ui/oauth/callback"

    async def start(self, request: web.Request) -> web.Response:
        config = self._config()
        nxt = request.query.get("next", "/ui/")
        if not nxt.startswith("/ui/") or nxt.startswith("//"):  # never an open redirect
            nxt = "/ui/"
        session = await get_session(request)
        state = secrets.token_urlsafe(24)
        session["oauth_state"] = state
        session["next"] = nxt
        query = urlencode({"client_id": config.github_client_id, "redirect_uri": self.redirect_uri(),
                           "state": state, "allow_signup": "false"})
        raise web.HTTPFound(f"{config.github_web_url.rstrip('/')}/login/oauth/authorize?{query}")

    async def finish(self, request: web.Request) -> tuple[str, str]:
        """Check the callback's state, exchange the code and learn the login; returns (login, where to go next).
        Raises web.HTTPBadRequest with a message a person can act on."""
        config = self._config()
        session = await get_session(request)
        expected = session.pop("oauth_state", None)
        nxt = str(session.pop("next", "/ui/"))
        if request.query.get("error"):
            why = request.query.get("error_description") or request.query["error"]
            raise web.HTTPBadRequest(text=f"GitHub did not sign you in: {why}")
        state, code = request.query.get("state", ""), request.query.get("code", "")
        if not expected or not hmac.compare_digest(str(expected), state):
            raise web.HTTPBadRequest(text="This sign-in link is stale or was not started here; sign in again.")
        if not code:
            raise web.HTTPBadRequest(text="GitHub sent no authorization code; sign in again.")
        http = self._http()
        try:
            async with http.post(f"{config.github_web_url.rstrip('/')}/login/oauth/access_token",
                                 json={"client_id": config.github_client_id,
                                       "client_secret": config.github_client_secret.get(),
                                       "code": code, "redirect_uri": self.redirect_uri()},
                                 headers={"Accept": "application/json"}) as resp:
                data = await resp.json(content_type=None)
            # Errors come as HTTP 200 with `error` (bad_verification_code, incorrect_client_credentials, ...).
            if not isinstance(data, dict) or "access_token" not in data:
                why = data.get("error_description") or data.get("error") if isinstance(data, dict) else None
                raise web.HTTPBadRequest(text=f"GitHub refused the sign-in: {why or 'no token'}; sign in again.")
            token = str(data["access_token"])
            async with http.get(f"{config.github_api_url.rstrip('/')}/user",
                                headers={"Authorization": f"Bearer {token}",
                                         "Accept": "application/vnd.github+json"}) as resp:
                if resp.status != 200:
                    raise web.HTTPBadGateway(text=f"GitHub did not say who signed in (HTTP {resp.status})")
                user = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("OAuth exchange with GitHub failed: %s", exc)
            raise web.HTTPBadGateway(text="GitHub could not be reached to finish the sign-in; try again.") from None
        login = str(user["login"])
        fresh = await new_session(request)  # a new session id at login: a planted cookie gains nothing
        fresh["login"] = login
        return login, nxt


async def viewer(request: web.Request) -> str | None:
    session = await get_session(request)
    login = session.get("login")
    return str(login) if login else None


__all__ = ["COOKIE", "Access", "GitHubError", "OAuth", "get_session", "new_session", "session_middleware",
           "session_storage", "viewer"]
