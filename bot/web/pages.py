"""Owns the web view's routes: who may open a page (bot/web/auth.py), what it shows (bot/web/data.py) and how it is
rendered (Jinja2 templates, charts drawn by the vendored uPlot from JSON embedded in the page)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jinja2
from aiohttp import web

from bot.github.port import CommitInfo, GitHubError, RepoInfo
from bot.service import Service
from commands.render.github import TRACKER_NAMES

from .auth import Access, OAuth, get_session, session_middleware, session_storage, viewer
from .data import WebData

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_NAME = r"[A-Za-z0-9_.-]{1,100}"
_RUN_ID = r"[A-Za-z0-9_.-]{1,64}"
HISTORY_COMMITS = 100
# The pages load only what this service serves: no CDN, no inline script (chart data travels as JSON).
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

SERVICE: web.AppKey[Service] = web.AppKey("web_service", Service)
ACCESS: web.AppKey[Access] = web.AppKey("web_access", Access)
OAUTH: web.AppKey[OAuth] = web.AppKey("web_oauth", OAuth)
DATA: web.AppKey[WebData] = web.AppKey("web_data", WebData)
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("web_http", aiohttp.ClientSession)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("web_templates", jinja2.Environment)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("bot.web", "templates"),
                             autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["short"] = lambda sha: (sha or "")[:7]
    env.filters["pts"] = lambda v: "" if v is None else f"{v:.1f}"
    env.filters["signed"] = lambda v: "" if v is None else f"{v:+.1f}"
    env.globals["tracker_names"] = TRACKER_NAMES
    return env


def _render(request: web.Request, template: str, *, status: int = 200, private: bool = False,
            **ctx: Any) -> web.Response:
    env = request.app[TEMPLATES]
    html = env.get_template(template).render(**ctx)
    headers = dict(_HEADERS)
    # A private repository's page must never sit in a shared cache; public ones are cheap to re-render anyway.
    headers["Cache-Control"] = "private, no-store" if private else "no-cache"
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=headers)


def _not_found(request: web.Request, login: str | None) -> web.Response:
    # One answer for "no such repository", "no such run" and "not yours to see": existence is not disclosed.
    return _render(request, "not_found.html", status=404, private=True, viewer=login, repo=None, tab=None)


Handler = Callable[[web.Request, str, RepoInfo, str | None], Awaitable[web.StreamResponse]]


def _repo_page(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a repository page with the access rule: public → anyone; private → a logged-in reader, or a redirect to
    the login for an anonymous visitor; everyone else gets the same 404 as for a repository that does not exist."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        login = await viewer(request)
        access = request.app[ACCESS]
        try:
            info = await access.repo(repo)
            if info is None:
                return _not_found(request, login)
            if info.private:
                if login is None:
                    if not request.app[OAUTH].enabled:
                        log.warning("private repository %s asked for, but no OAuth app is configured "
                                    "(GITHUB_CLIENT_ID / GITHUB_CLIENT_SECRET)", repo)
                        return _not_found(request, login)
                    raise web.HTTPFound("/ui/login?" + urlencode({"next": request.path_qs}))
                if not await access.can_read(repo, login):
                    return _not_found(request, login)
        except GitHubError as exc:
            log.warning("web view: GitHub did not answer for %s: %s", repo, exc)
            return _render(request, "error.html", status=502, private=True, viewer=login, repo=None, tab=None,
                           message="GitHub did not answer; try again in a minute.")
        response = await handler(request, repo, info, login)
        if info.private:
            response.headers["Cache-Control"] = "private, no-store"
        return response

    return wrapped


async def _runs(request: web.Request, repo: str, info: RepoInfo, login: str | None) -> web.StreamResponse:
    rows = await request.app[DATA].runs(repo)
    benchmarks = sorted({b for row in rows for b in row.scores})
    return _render(request, "runs.html", private=info.private, viewer=login, repo=repo, tab="runs", rows=rows,
                   benchmarks=benchmarks)


async def _run(request: web.Request, repo: str, info: RepoInfo, login: str | None) -> web.StreamResponse:
    page = await request.app[DATA].run_page(repo, request.match_info["run_id"])
    if page is None:
        return _not_found(request, login)
    loss = {"title": "training loss", "x": "step",
            "series": [{"label": page.run.run_id, "points": [[s, v] for s, v in page.view.loss]}]}
    if page.baseline_loss:
        loss["series"].append({"label": f"baseline {page.baseline_run}",
                               "points": [[s, v] for s, v in page.baseline_loss]})
    return _render(request, "run.html", private=info.private, viewer=login, repo=repo, tab="runs", page=page,
                   loss_chart=loss if page.view.loss else None, job_spec=page.run.job_spec or {})


async def _history(request: web.Request, repo: str, info: RepoInfo, login: str | None) -> web.StreamResponse:
    service = request.app[SERVICE]
    branch = info.default_branch
    try:
        commits: list[CommitInfo] = await service.github.branch_commits(repo, branch, HISTORY_COMMITS)
    except GitHubError as exc:
        log.warning("web view: commits of %s@%s: %s", repo, branch, exc)
        commits = []
    history = await request.app[DATA].history(repo, branch, commits)
    charts = []
    for i, series in enumerate(history.series):
        charts.append({
            "id": f"history-{i}", "benchmark": series.benchmark, "label": series.label,
            "commits": [{"sha": c.sha[:7], "title": c.title} for c in history.commits],
            "points": [{"x": p.index, "y": round(p.score, 3), "low": round(p.low, 3), "high": round(p.high, 3),
                        "n": p.n, "sha": p.sha[:7], "title": p.title,
                        "url": f"/ui/{repo}/runs/{p.run_id}", "run": p.run_id} for p in series.points],
        })
    return _render(request, "history.html", private=info.private, viewer=login, repo=repo, tab="history",
                   history=history, charts=charts)


async def _leaderboard(request: web.Request, repo: str, info: RepoInfo, login: str | None) -> web.StreamResponse:
    boards = await request.app[DATA].leaderboard(repo)
    return _render(request, "leaderboard.html", private=info.private, viewer=login, repo=repo, tab="leaderboard",
                   boards=boards)


async def _index(request: web.Request) -> web.Response:
    return _render(request, "index.html", private=True, viewer=await viewer(request), repo=None, tab=None)


async def _login(request: web.Request) -> web.Response:
    oauth = request.app[OAUTH]
    if not oauth.enabled:
        return _render(request, "error.html", status=404, private=True, viewer=None, repo=None, tab=None,
                       message="Sign-in is not configured on this tunebot (GITHUB_CLIENT_ID / GITHUB_CLIENT_SECRET).")
    return await oauth.start(request)


async def _callback(request: web.Request) -> web.Response:
    oauth = request.app[OAUTH]
    if not oauth.enabled:
        return _not_found(request, None)
    try:
        _, nxt = await oauth.finish(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _render(request, "error.html", status=exc.status, private=True, viewer=None, repo=None, tab=None,
                           message=exc.text or "sign-in failed")
        raise
    raise web.HTTPFound(nxt)


async def _logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPFound("/ui/")


def build_ui(service: Service) -> web.Application:
    ui = web.Application()
    ui.middlewares.append(session_middleware(session_storage(service.config)))
    ui[SERVICE] = service
    ui[ACCESS] = Access(service.github)
    ui[DATA] = WebData(service)
    ui[TEMPLATES] = _templates()

    def http() -> aiohttp.ClientSession:
        return ui[HTTP]

    ui[OAUTH] = OAuth(lambda: service.config, http)

    async def client(app: web.Application) -> AsyncIterator[None]:
        # The web view's one client session: only the OAuth code exchange and `GET /user` use it.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            app[HTTP] = session
            yield

    ui.cleanup_ctx.append(client)
    repo = f"/{{owner:{_NAME}}}/{{repo:{_NAME}}}"
    ui.router.add_get("/", _index)
    ui.router.add_get("/login", _login)
    ui.router.add_get("/oauth/callback", _callback)
    ui.router.add_post("/logout", _logout)
    ui.router.add_static("/static/", STATIC, append_version=True)
    ui.router.add_get(repo, _repo_page(_runs))
    ui.router.add_get(repo + "/history", _repo_page(_history))
    ui.router.add_get(repo + "/leaderboard", _repo_page(_leaderboard))
    ui.router.add_get(repo + f"/runs/{{run_id:{_RUN_ID}}}", _repo_page(_run))
    return ui
