"""The GitHub Actions calls of the PyGithub port: dispatch a workflow, find, read and cancel its runs, download their
artifacts. Mixed into `PyGithubPort`, which supplies `_call`, `_raw`, `_clock`, `_per_page` and the run index."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import github
import requests

from bot.github.app_auth import repo_path
from bot.github.port import (
    RUN_NAME_INPUT,
    Conflict,
    DispatchResult,
    GitHubError,
    NotFound,
    ValidationFailed,
    WorkflowRun,
    run_id_from_name,
    run_name,
)

# GitHub's clock and ours drift; a run created "before" our dispatch by a few seconds is still ours.
CLOCK_SKEW = timedelta(seconds=60)
# How long one listing of a workflow's runs answers `find_run_by_name` (see there).
RUN_INDEX_TTL = timedelta(minutes=10)
# A run shows in "list workflow runs" a moment after it is created; a later listing looks back this far.
RUN_LIST_LAG = timedelta(seconds=30)


@dataclass
class _RunIndex:
    """The bot's runs of one workflow as listed: every one created since `since`, as of `listed_at`."""

    since: datetime
    listed_at: datetime
    by_name: dict[str, WorkflowRun] = field(default_factory=dict)
    newest: datetime | None = None  # the latest `created_at` listed (GitHub's clock)


def aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return aware(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


def _run_from(raw: dict[str, Any]) -> WorkflowRun:
    return WorkflowRun(id=int(raw["id"]), name=str(raw.get("name") or ""),
                       display_title=str(raw.get("display_title") or raw.get("name") or ""),
                       status=str(raw.get("status") or ""), conclusion=raw.get("conclusion"),
                       html_url=str(raw.get("html_url") or ""), head_sha=str(raw.get("head_sha") or ""),
                       event=str(raw.get("event") or ""), run_attempt=int(raw.get("run_attempt") or 1),
                       created_at=_parse_time(raw.get("created_at")), updated_at=_parse_time(raw.get("updated_at")))


T = TypeVar("T")


class _Call(Protocol):
    """`Transport.call`: one GitHub call (a function of the PyGithub client) with the port's retries."""

    def __call__(self, repo: str, fn: Callable[[github.Github], T], *, idempotent: bool = ...,
                 landed: Callable[[], Awaitable[T | None]] | None = ..., write: bool = ...) -> Awaitable[T]: ...


class ActionsCalls:
    _call: _Call
    _raw: Callable[..., tuple[dict[str, Any], Any]]
    _clock: Callable[[], datetime]
    _per_page: int
    _run_index: dict[tuple[str, str], _RunIndex]
    _run_locks: dict[tuple[str, str], asyncio.Lock]

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
                               created_after: datetime, *, max_runs: int = 1000) -> WorkflowRun | None:
        """The dispatched run named exactly `run_name(run_name_token)`, among this workflow's dispatches created
        since `created_after`.

        One listing answers many lookups: after a crash the outbox asks this once per dispatch it cannot tell
        landed, so the runs the listing (`event=workflow_dispatch&created>=…`, 100 a page, the JSON already holds
        the names) brought back are kept for `RUN_INDEX_TTL`. A name found there costs no request; one not found
        lists only the runs created since the newest one listed (less `RUN_LIST_LAG`), usually one short page.
        A kept run's status is as of its listing (callers need its id and URL)."""
        if not run_name_token:
            raise ValueError("run_name_token is empty")
        wanted = run_name(run_name_token)
        since = (aware(created_after) or created_after) - CLOCK_SKEW
        key = (repo.lower(), workflow_file)
        lock = self._run_locks.setdefault(key, asyncio.Lock())
        async with lock:  # lookups at the same time share one listing
            now = self._clock()
            index = self._run_index.get(key)
            if index is not None and (now - index.listed_at > RUN_INDEX_TTL or index.since > since):
                index = None  # too old, or it does not reach back far enough
            if index is not None:
                found = index.by_name.get(wanted)
                if found is not None:
                    return found if found.created_at is None or found.created_at >= since else None
                # Only a run created since the last listing can be new: by GitHub's clock, since the newest run it
                # showed (less the time a new run may take to show in listings), else since ours less the skew.
                start = (index.newest - RUN_LIST_LAG if index.newest is not None
                         else index.listed_at - CLOCK_SKEW)
            else:
                start = since
                index = self._run_index[key] = _RunIndex(since=since, listed_at=now)
            runs, oldest = await self._list_dispatched_runs(repo, workflow_file, start, max_runs)
            index.listed_at = now
            if oldest is not None:  # the listing stopped at max_runs: older runs are not known
                index.since = max(index.since, oldest)
            for run in runs:
                index.by_name[run.display_title] = run
                if run.created_at is not None and (index.newest is None or run.created_at > index.newest):
                    index.newest = run.created_at
            found = index.by_name.get(wanted)
            return found if found is not None and (found.created_at is None or found.created_at >= since) else None

    async def _list_dispatched_runs(self, repo: str, workflow_file: str, since: datetime,
                                    max_runs: int) -> tuple[list[WorkflowRun], datetime | None]:
        """This workflow's dispatched runs created since `since` whose name is one the bot gives, newest first;
        and, when more than `max_runs` were there, the creation time down to which they were listed."""
        url = f"{repo_path(repo)}/actions/workflows/{quote(workflow_file, safe='')}/runs"
        params = {"event": "workflow_dispatch", "created": f">={iso(since)}", "per_page": self._per_page}

        def go(g: github.Github) -> tuple[list[WorkflowRun], datetime | None]:
            out: list[WorkflowRun] = []
            seen = 0
            for page in range(1, max_runs // self._per_page + 2):
                _, data = self._raw(g, "GET", url, parameters={**params, "page": page})
                runs = data.get("workflow_runs") or []
                seen += len(runs)
                out.extend(_run_from(raw) for raw in runs
                           if run_id_from_name(str(raw.get("display_title") or "")) is not None)
                if len(runs) < self._per_page:
                    return out, None
                if seen >= max_runs:
                    return out, _parse_time(runs[-1].get("created_at"))
            return out, None

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

