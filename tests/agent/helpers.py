"""Loopback fakes for the agent's network edges: the bot's callback endpoint and a Hugging Face hub."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from commands.events import SIGNATURE_HEADER, event_from_json, verify_body


@dataclass
class Received:
    at: float  # time.monotonic() when the request arrived
    wall: float  # time.time() when it arrived
    body: bytes
    signature: str | None
    verified: bool
    event: dict[str, Any] | None


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _LoopbackServer:
    """A threaded HTTP server on 127.0.0.1, started and stopped as a context manager."""

    def _start_server(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class CallbackServer(_LoopbackServer):
    """The bot's callback endpoint as the agent sees it: checks each body's signature with the run token.

    `fail_first` answers the first N requests with 503 (the bot restarting); `reject_bad_signature` answers 401
    to bodies whose signature does not verify, like the real bot must. Events whose signature verifies are kept.
    """

    def __init__(self, token: str, *, fail_first: int = 0, on_event: Any = None) -> None:
        self.token = token
        self.fail_first = fail_first
        self.on_event = on_event
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                sig = self.headers.get(SIGNATURE_HEADER)
                ok = verify_body(outer.token, body, sig)
                event = None
                if ok:
                    try:
                        event = event_from_json(body).to_dict()
                    except Exception:
                        ok = False
                rec = Received(time.monotonic(), time.time(), body, sig, ok, event)
                with outer.lock:
                    outer.requests.append(rec)
                    failing = len(outer.requests) <= outer.fail_first
                if failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                if not ok:
                    self.send_response(401)
                    self.end_headers()
                    return
                if outer.on_event is not None and event is not None:
                    outer.on_event(event)
                self.send_response(204)
                self.end_headers()

        self._start_server(Handler)

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


class _FakeHub(_LoopbackServer):
    """What the fake hubs share: the files, slow chunked sending, the request log, and the server's life cycle."""

    def __init__(self, repo: str, files: dict[str, Path], *, chunk: int, delay: float) -> None:
        self.repo = repo
        self.files = files
        self.chunk = chunk
        self.delay = delay
        self.log = HubLog()
        self.lock = threading.Lock()

    def record(self, request: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.log.requests.append((request.command, request.path, request.headers.get("Range")))

    def send_chunks(self, request: BaseHTTPRequestHandler, part: bytes) -> None:
        """Write `part` in `chunk`-byte pieces, `delay` seconds apart (a client may hang up part-way)."""
        try:
            for i in range(0, len(part), self.chunk):
                piece = part[i : i + self.chunk]
                request.wfile.write(piece)
                request.wfile.flush()
                with self.lock:
                    self.log.bytes_sent += len(piece)
                if self.delay:
                    time.sleep(self.delay)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @property
    def url(self) -> str:
        return self.base_url

    def reset_log(self) -> None:
        with self.lock:
            self.log = HubLog()


class _JsonHandler(_Quiet):
    protocol_version = "HTTP/1.1"

    def _json(self, obj: Any, code: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
        outer = self

        class Handler(_JsonHandler):
            def _not_found(self) -> None:
                body = b'{"error":"Repository not found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                outer.record(self)
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/api/models/(.+?)/revision/([^/]+)", path)
                if m:
                    if m.group(1) != outer.repo:
                        return self._not_found()
                    return self._json({
                        "id": outer.repo, "modelId": outer.repo, "sha": outer.commit, "private": False,
                        "siblings": [{"rfilename": n} for n in sorted(outer.files)],
                    })
                m = re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)(/.*)?", path)
                if m:
                    if m.group(1) != outer.repo:
                        return self._not_found()
                    return self._json([
                        {"type": "file", "path": n, "size": meta["size"], "oid": meta["oid"],
                         "lfs": {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}}
                        for n, meta in sorted(outer.meta.items())
                    ])
                return self._resolve(send_body=True)

            def do_HEAD(self) -> None:
                outer.record(self)
                return self._resolve(send_body=False)

            def _resolve(self, *, send_body: bool) -> None:
                m = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
                if not m or m.group(1) != outer.repo or m.group(3) not in outer.files:
                    return self._not_found()
                name = m.group(3)
                data = outer.files[name].read_bytes()
                meta = outer.meta[name]
                start = 0
                rng = self.headers.get("Range")
                if rng and send_body:
                    rm = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                    if rm:
                        start = int(rm.group(1))
                part = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", outer.commit)
                self.send_header("ETag", f'"{meta["sha256"]}"')
                self.send_header("X-Linked-Etag", f'"{meta["sha256"]}"')
                self.send_header("X-Linked-Size", str(meta["size"]))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(part) if send_body else meta["size"]))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if send_body:
                    outer.send_chunks(self, part)

        self._start_server(Handler)


class FakeModelScope(_FakeHub):
    """Serves one model repo the way ModelScope's v1 API does: the recursive file list (with Sha256) and
    `repo?Revision=..&FilePath=..` downloads that honour `Range`, in slow chunks when asked."""

    def __init__(self, repo: str, files: dict[str, Path], *, chunk: int = 65536, delay: float = 0.0) -> None:
        super().__init__(repo, files, chunk=chunk, delay=delay)
        outer = self

        class Handler(_JsonHandler):
            def do_GET(self) -> None:
                outer.record(self)
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                m = re.fullmatch(r"/api/v1/models/(.+?)/repo(/files)?", url.path)
                if not m or m.group(1) != outer.repo:
                    return self._json({"Code": 10010205001, "Message": "model not exists", "Success": False}, 404)
                if m.group(2):
                    return self._json({"Code": 200, "Success": True, "Data": {"Files": [
                        {"Name": Path(n).name, "Path": n, "Type": "blob", "Size": p.stat().st_size,
                         "Sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "Revision": query.get("Revision")}
                        for n, p in sorted(outer.files.items())
                    ]}})
                name = query.get("FilePath", "")
                if name not in outer.files:
                    return self._json({"Code": 404, "Message": "file not found"}, 404)
                data = outer.files[name].read_bytes()
                start = 0
                rm = re.fullmatch(r"bytes=(\d+)-", (self.headers.get("Range") or "").strip())
                if rm:
                    start = int(rm.group(1))
                part = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(part)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                outer.send_chunks(self, part)

        self._start_server(Handler)
