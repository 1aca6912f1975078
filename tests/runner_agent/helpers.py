"""Loopback fakes for the agent's network edges: the bot's callback endpoint and a Hugging Face hub."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientConnectionResetError, web

from commands.events import SIGNATURE_HEADER, event_from_json, verify_body
from tests.fakes.loopback import LoopbackServer


@dataclass
class Received:
    at: float  # time.monotonic() when the request arrived
    wall: float  # time.time() when it arrived
    body: bytes
    signature: str | None
    verified: bool
    event: dict[str, Any] | None


class CallbackServer(LoopbackServer):
    """The bot's callback endpoint as the agent sees it: checks each body's signature with the run token.

    `fail_first` answers the first N requests with 503 (the bot restarting); `reject_bad_signature` answers 401
    to bodies whose signature does not verify, like the real bot must. Events whose signature verifies are kept.
    `with CallbackServer(token) as server:` serves it from a thread of its own while the (blocking) agent runs.
    """

    def __init__(self, token: str, *, fail_first: int = 0, on_event: Any = None) -> None:
        super().__init__()
        self.token = token
        self.fail_first = fail_first
        self.on_event = on_event
        self.requests: list[Received] = []
        self.lock = threading.Lock()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        sig = request.headers.get(SIGNATURE_HEADER)
        ok = verify_body(self.token, body, sig)
        event = None
        if ok:
            try:
                event = event_from_json(body).to_dict()
            except Exception:
                ok = False
        rec = Received(time.monotonic(), time.time(), body, sig, ok, event)
        with self.lock:
            self.requests.append(rec)
            failing = len(self.requests) <= self.fail_first
        if failing:
            return web.Response(status=503)
        if not ok:
            return web.Response(status=401)
        if self.on_event is not None and event is not None:
            self.on_event(event)
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return f"{self.base_url}/agent/events"

    def delivered(self) -> list[dict[str, Any]]:
        """Events that verified and were accepted (after the injected failures), deduplicated by seq."""
        with self.lock:
            reqs = list(self.requests)
        seen: dict[int, dict[str, Any]] = {}
        for i, r in enumerate(reqs, start=1):
            if r.verified and r.event is not None and i > self.fail_first:
                seen.setdefault(int(r.event["seq"]), r.event)
        return [seen[k] for k in sorted(seen)]


# --- a fake Hugging Face hub ---------------------------------------------------------------------------------------


@dataclass
class HubLog:
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)
    bytes_sent: int = 0


class _FakeHub(LoopbackServer):
    """What the fake hubs share: the files, slow chunked sending, the request log, and the server's life cycle."""

    def __init__(self, repo: str, files: dict[str, Path], *, chunk: int = 65536, delay: float = 0.0) -> None:
        super().__init__()
        self.repo = repo
        self.files = files
        self.chunk = chunk
        self.delay = delay
        self.log = HubLog()
        self.lock = threading.Lock()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._route)
        return app

    async def _route(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def record(self, request: web.Request) -> None:
        with self.lock:
            self.log.requests.append((request.method, request.path_qs, request.headers.get("Range")))

    async def send(self, request: web.Request, status: int, headers: dict[str, str], part: bytes | None,
                   length: int | None = None) -> web.StreamResponse:
        """Answer with `part` in `chunk`-byte pieces, `delay` seconds apart (a client may hang up part-way);
        `part=None` answers a HEAD: the headers and `length`, no body."""
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(part) if part is not None else length
        await resp.prepare(request)
        if part is None:
            return resp
        try:
            for i in range(0, len(part), self.chunk):
                piece = part[i : i + self.chunk]
                await resp.write(piece)
                with self.lock:
                    self.log.bytes_sent += len(piece)
                if self.delay:
                    await asyncio.sleep(self.delay)
            await resp.write_eof()
        except (ConnectionError, ClientConnectionResetError):
            pass
        return resp

    @property
    def url(self) -> str:
        return self.base_url

    def reset_log(self) -> None:
        with self.lock:
            self.log = HubLog()


class FakeHfHub(_FakeHub):
    """Serves one model repo the way huggingface_hub 1.x reads it: revision info, tree listing, HEAD/GET resolve.

    Files are served in `chunk` byte pieces with `delay` seconds between them, so a test can interrupt a
    download part-way; GET honours `Range: bytes=N-` (206) as the real hub does.
    """

    def __init__(self, repo: str, files: dict[str, Path], *, commit: str = "a" * 40, chunk: int = 65536,
                 delay: float = 0.0) -> None:
        super().__init__(repo, files, chunk=chunk, delay=delay)
        self.commit = commit
        self.meta = {
            name: {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                   "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
            for name, p in files.items()
        }

    @staticmethod
    def _not_found() -> web.Response:
        return web.json_response({"error": "Repository not found"}, status=404,
                                 headers={"X-Error-Code": "RepoNotFound"})

    async def _route(self, request: web.Request) -> web.StreamResponse:
        self.record(request)
        path = request.path
        if request.method == "GET":
            m = re.fullmatch(r"/api/models/(.+?)/revision/([^/]+)", path)
            if m:
                if m.group(1) != self.repo:
                    return self._not_found()
                return web.json_response({
                    "id": self.repo, "modelId": self.repo, "sha": self.commit, "private": False,
                    "siblings": [{"rfilename": n} for n in sorted(self.files)],
                })
            m = re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)(/.*)?", path)
            if m:
                if m.group(1) != self.repo:
                    return self._not_found()
                return web.json_response([
                    {"type": "file", "path": n, "size": meta["size"], "oid": meta["oid"],
                     "lfs": {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}}
                    for n, meta in sorted(self.meta.items())
                ])
        elif request.method != "HEAD":
            return web.Response(status=405)
        return await self._resolve(request, send_body=request.method == "GET")

    async def _resolve(self, request: web.Request, *, send_body: bool) -> web.StreamResponse:
        m = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", request.path)
        if not m or m.group(1) != self.repo or m.group(3) not in self.files:
            return self._not_found()
        name = m.group(3)
        data = self.files[name].read_bytes()
        meta = self.meta[name]
        start = 0
        rng = request.headers.get("Range")
        if rng and send_body:
            rm = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if rm:
                start = int(rm.group(1))
        headers = {"X-Repo-Commit": self.commit, "ETag": f'"{meta["sha256"]}"',
                   "X-Linked-Etag": f'"{meta["sha256"]}"', "X-Linked-Size": str(meta["size"]),
                   "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return await self.send(request, 206 if start else 200, headers, data[start:] if send_body else None,
                               length=meta["size"])


class FakeModelScope(_FakeHub):
    """Serves one model repo the way ModelScope's v1 API does: the recursive file list (with Sha256) and
    `repo?Revision=..&FilePath=..` downloads that honour `Range`, in slow chunks when asked."""

    async def _route(self, request: web.Request) -> web.StreamResponse:
        self.record(request)
        query = dict(request.query)
        m = re.fullmatch(r"/api/v1/models/(.+?)/repo(/files)?", request.path)
        if request.method != "GET" or not m or m.group(1) != self.repo:
            return web.json_response({"Code": 10010205001, "Message": "model not exists", "Success": False},
                                     status=404)
        if m.group(2):
            return web.json_response({"Code": 200, "Success": True, "Data": {"Files": [
                {"Name": Path(n).name, "Path": n, "Type": "blob", "Size": p.stat().st_size,
                 "Sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "Revision": query.get("Revision")}
                for n, p in sorted(self.files.items())
            ]}})
        name = query.get("FilePath", "")
        if name not in self.files:
            return web.json_response({"Code": 404, "Message": "file not found"}, status=404)
        data = self.files[name].read_bytes()
        start = 0
        rm = re.fullmatch(r"bytes=(\d+)-", (request.headers.get("Range") or "").strip())
        if rm:
            start = int(rm.group(1))
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        return await self.send(request, 206 if start else 200, headers, data[start:])
