"""Who may see what on the web view, over HTTP: nothing of one repository on another's pages, private pages need a
login and read permission (checked through the API, cached briefly), and the session cookie's attributes."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.config import Secret, load_config
from bot.github.port import Permission, RepoInfo
from bot.web.auth import Access, session_storage
from tests.bot.service.conftest import SECRET, job_of
from tests.bot.web.conftest import REPO, outcomes, run_to_end
from tests.fakes.deliveries import deliver, pr_comment_payload

# Sessions (login, OAuth state) keep their per-request state under typed keys: a string key is a failure here.
pytestmark = pytest.mark.filterwarnings("error::aiohttp.web_exceptions.NotAppKeyWarning")

OTHER = "acme/secret-model"


async def _get(url: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as s, s.get(url, allow_redirects=False, **kw) as r:
        return r.status, await r.text(), r


async def test_nothing_of_one_repository_appears_on_anothers_pages(web_bot: Any) -> None:
    wb = await web_bot()
    [(_, mine)] = await wb.eval_at_main_commits(1)
    # Another repository, served by the same bot and store, with a run at the very same commit.
    other = wb.github.add_bot_repo(OTHER)
    other.private = True
    sha = wb.bot.repo.history["main"][0]
    other.add_commit(sha, {}, branch="main", message="the other repository's commit")
    other.add_pull(3, head_sha=sha, author="Codertocat")
    other.add_file(".tunebot.yml", "version: 1\nbenchmarks:\n  default: [cmmlu]\n")
    payload = pr_comment_payload("/eval cmmlu model=tiny force=true", number=3, login="Codertocat",
                                 association="OWNER", comment_id=wb.github.add_comment(OTHER, 3, "/eval"))
    payload["repository"]["full_name"] = OTHER
    payload["repository"]["name"] = OTHER.split("/")[1]
    payload["repository"]["owner"]["login"] = OTHER.split("/")[0]
    await deliver(f"{wb.url}/webhook", "issue_comment", payload, SECRET, None, session=wb.bot.session)
    await wb.bot.settle()
    theirs = job_of(wb.bot.dispatches()[-1])
    assert theirs.repo == OTHER
    await run_to_end(wb.bot, theirs.run_id, outcomes(7, 0.95))
    assert (await wb.bot.service.store.get_run(theirs.run_id)).state == "succeeded"  # type: ignore[union-attr]

    for page in ("", "/history", "/leaderboard"):
        status, html, _ = await _get(f"{wb.url}/ui/{REPO}{page}")
        assert status == 200 and mine in html, page
        assert theirs.run_id not in html and OTHER not in html and "the other repository" not in html, page
    # The other repository's run, asked for under this repository's path: not found (run ids are global).
    status, html, _ = await _get(f"{wb.url}/ui/{REPO}/runs/{theirs.run_id}")
    assert status == 404 and theirs.run_id not in html
    # Its own pages are private: anonymous visitors are sent to the login.
    status, _, resp = await _get(f"{wb.url}/ui/{OTHER}/runs/{theirs.run_id}")
    assert status == 302 and resp.headers["Location"].startswith("/ui/login?next=")
    # A repository that does not exist (or without the App) is a plain 404.
    status, _, _ = await _get(f"{wb.url}/ui/nobody/nothing")
    assert status == 404


async def test_private_pages_carry_no_store_and_login_is_not_an_open_redirect(web_bot: Any) -> None:
    wb = await web_bot(private=True)
    status, _, resp = await _get(f"{wb.url}/ui/login?next=https://evil.example/")
    assert status == 302
    location = resp.headers["Location"]
    assert location.startswith(f"{wb.github.web_url}/login/oauth/authorize?")
    assert "redirect_uri=" in location and "state=" in location
    # The callback without the state the login started is refused.
    status, html, _ = await _get(f"{wb.url}/ui/oauth/callback?code=abc&state=forged")
    assert status == 400 and "sign in again" in html


class _CountingPort:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.permission = "read"

    async def repo_info(self, repo: str) -> RepoInfo:
        self.calls.append("repo")
        return RepoInfo(private=True, default_branch="main")

    async def get_permission(self, repo: str, user: str) -> Permission:
        self.calls.append("perm")
        return Permission(self.permission, self.permission)


async def test_permission_answers_are_cached_briefly() -> None:
    port = _CountingPort()
    now = [0.0]
    access = Access(port, ttl_s=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await access.can_read("o/r", "alice") and await access.can_read("o/r", "alice")
    assert port.calls == ["perm"]
    port.permission = "none"  # revoked on GitHub: still cached for up to a minute, then refused
    now[0] = 61.0
    assert not await access.can_read("o/r", "alice")
    assert port.calls == ["perm", "perm"]
    await access.repo("o/r")
    await access.repo("O/R")
    assert port.calls.count("repo") == 1


def test_session_cookie_attributes() -> None:
    plain = session_storage(load_config(environ={}, webhook_secret=Secret("s"), public_url="http://127.0.0.1:3000"))
    tls = session_storage(load_config(environ={}, webhook_secret=Secret("s"), public_url="https://bot.example.com"))
    for storage in (plain, tls):
        assert storage.cookie_params["httponly"] is True and storage.cookie_params["samesite"] == "Lax"
    assert tls.cookie_params["secure"] is True and not plain.cookie_params["secure"]
