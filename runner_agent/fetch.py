"""Downloads one model snapshot from Hugging Face or ModelScope into the agent's cache (run as a subprocess).

`python -m runner_agent.fetch --hub huggingface|modelscope --repo ORG/NAME [--revision R] --store DIR
[--endpoint URL]` prints JSON lines on stdout: `{"event": "progress", "bytes": n, "total": t}` while it works, then
`{"event": "done", "path": ..., "revision": ...}` or `{"event": "error", "kind": ..., "message": ...}` (exit 3).

Why not the hubs' own clients: huggingface_hub 1.x downloads into a process-unique temporary file that it deletes
when interrupted, so a killed download starts over. Here every file is written to `<snapshot>.partial/<path>` and
resumed with an HTTP `Range` request, by the next run or by a retry within this one; each finished file is checked
against the hub's size and hash (sha256 for LFS / ModelScope files, the git blob id otherwise) before it is moved
into the snapshot. A snapshot is complete only when `.tunebot-complete.json` exists in it.

Credentials come from the standard variables of each hub's tools: HF_TOKEN, MODELSCOPE_API_TOKEN.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINTS = {"huggingface": "https://huggingface.co", "modelscope": "https://www.modelscope.cn"}
COMPLETE = ".tunebot-complete.json"

# Weight formats that duplicate the safetensors most repos also carry, and files a run never needs.
_DUPLICATE_WEIGHTS = ("*.bin", "*.pth", "*.pt", "*.h5", "*.msgpack", "*.ckpt", "*.onnx", "*.onnx_data", "*.gguf",
                      "*.tflite", "*.ot")
_NEVER = ("original/*", "onnx/*", "coreml/*", "openvino/*", ".gitattributes", "*.png", "*.jpg", "*.jpeg", "*.gif",
          "*.mp4", "*.pdf")
_CHUNK = 1 << 20
_RETRIES = 5


class FetchError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None  # LFS / ModelScope content hash
    git_oid: str | None = None  # git blob id (sha1 of "blob <size>\0" + content), for small HF files


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class _NoAuthAcrossHosts(urllib.request.HTTPRedirectHandler):
    """Follow redirects (hubs send LFS files to a CDN) without handing the token to another host."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_NoAuthAcrossHosts())


class Client:
    def __init__(self, hub: str, endpoint: str | None, token: str | None) -> None:
        self.hub = hub
        self.endpoint = (endpoint or DEFAULT_ENDPOINTS[hub]).rstrip("/")
        self.token = token

    def request(self, url: str, *, range_from: int = 0, timeout: float = 30.0) -> Any:
        headers = {"User-Agent": "tunebot-agent", "Accept-Encoding": "identity"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if range_from:
            headers["Range"] = f"bytes={range_from}-"
        return _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)

    def get_json(self, url: str, what: str) -> tuple[Any, Any]:
        try:
            with self.request(url) as resp:
                return json.loads(resp.read().decode("utf-8")), resp.headers
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, what) from None
        except (urllib.error.URLError, OSError) as exc:
            raise FetchError("network", f"cannot reach {self.endpoint} ({getattr(exc, 'reason', exc)})") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FetchError("network", f"{self.endpoint} answered {what} with something that is not JSON") from None

    def _http_error(self, exc: urllib.error.HTTPError, what: str) -> FetchError:
        code = exc.code
        error_code = exc.headers.get("X-Error-Code", "") if exc.headers else ""
        if code == 404 or error_code in ("RepoNotFound", "RevisionNotFound", "EntryNotFound"):
            return FetchError("not_found", f"{what}: not found on {self.endpoint} (HTTP {code})")
        if code in (401, 403):
            var = "HF_TOKEN" if self.hub == "huggingface" else "MODELSCOPE_API_TOKEN"
            return FetchError("auth", f"{what}: access denied (HTTP {code}); the model may be gated or private — "
                                      f"accept its licence on the hub and set {var}")
        return FetchError("network", f"{what}: HTTP {code} from {self.endpoint}")

    # --- listings -------------------------------------------------------------------------------------------------

    def resolve(self, repo: str, revision: str | None) -> tuple[str, list[RemoteFile]]:
        if self.hub == "huggingface":
            return self._hf_resolve(repo, revision or "main")
        return self._ms_resolve(repo, revision or "master")

    def _hf_resolve(self, repo: str, revision: str) -> tuple[str, list[RemoteFile]]:
        rev = urllib.parse.quote(revision, safe="")
        info, _ = self.get_json(f"{self.endpoint}/api/models/{repo}/revision/{rev}", f"model {repo}@{revision}")
        commit = info.get("sha") if isinstance(info, dict) else None
        if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise FetchError("network", f"{self.endpoint} gave no commit for {repo}@{revision}")
        files: list[RemoteFile] = []
        url: str | None = f"{self.endpoint}/api/models/{repo}/tree/{commit}?recursive=true"
        while url:
            page, headers = self.get_json(url, f"file list of {repo}@{commit}")
            if not isinstance(page, list):
                raise FetchError("network", f"unexpected file list for {repo}@{commit}")
            for entry in page:
                if not isinstance(entry, dict) or entry.get("type") != "file":
                    continue
                lfs = entry.get("lfs") or {}
                files.append(RemoteFile(str(entry["path"]), int(entry.get("size", 0)),
                                        sha256=lfs.get("oid") if lfs else None,
                                        git_oid=None if lfs else entry.get("oid")))
            url = _next_link(headers.get("Link") if headers else None)
        return commit, files

    def _ms_resolve(self, repo: str, revision: str) -> tuple[str, list[RemoteFile]]:
        rev = urllib.parse.quote_plus(revision)
        body, _ = self.get_json(f"{self.endpoint}/api/v1/models/{repo}/repo/files?Revision={rev}&Recursive=True",
                                f"model {repo}@{revision}")
        if not isinstance(body, dict):
            raise FetchError("network", f"unexpected file list for {repo}@{revision}")
        code = body.get("Code", 200)
        if code not in (200, "200"):
            msg = str(body.get("Message", ""))
            low = msg.lower()
            kind = "not_found" if "not" in low and ("exist" in low or "found" in low) else "network"
            raise FetchError(kind, f"model {repo}@{revision}: {msg or f'code {code}'} (ModelScope)")
        data = body.get("Data") or {}
        entries = data.get("Files") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise FetchError("network", f"unexpected file list for {repo}@{revision}")
        if len(entries) >= 3000:
            raise FetchError("network", f"{repo} lists 3000+ files; ModelScope truncates such listings")
        files = [
            RemoteFile(str(e.get("Path") or e.get("Name")), int(e.get("Size") or 0), sha256=e.get("Sha256") or None)
            for e in entries
            if isinstance(e, dict) and (e.get("Type") or "blob") != "tree"
        ]
        return revision, files

    def file_url(self, repo: str, revision: str, path: str) -> str:
        if self.hub == "huggingface":
            return f"{self.endpoint}/{repo}/resolve/{revision}/{urllib.parse.quote(path)}"
        return (f"{self.endpoint}/api/v1/models/{repo}/repo?Revision={urllib.parse.quote_plus(revision)}"
                f"&FilePath={urllib.parse.quote_plus(path)}")


def _next_link(link: str | None) -> str | None:
    if not link:
        return None
    for part in link.split(","):
        m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', part)
        if m:
            return m.group(1)
    return None


def select(files: list[RemoteFile]) -> list[RemoteFile]:
    """The files a run needs: no duplicate weight formats when safetensors exist, no docs/images/exports."""
    has_safetensors = any(f.path.endswith(".safetensors") for f in files)
    skip = _NEVER + (_DUPLICATE_WEIGHTS if has_safetensors else ())
    out = []
    for f in files:
        if any(fnmatch.fnmatch(f.path, pat) for pat in skip):
            continue
        parts = f.path.split("/")
        if ".." in parts or f.path.startswith("/") or not f.path:
            raise FetchError("network", f"refusing a file path outside the snapshot: {f.path!r}")
        out.append(f)
    return out


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.last = 0.0

    def add(self, n: int, force: bool = False) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if force or now - self.last >= 0.25:
                self.last = now
                _say({"event": "progress", "bytes": self.done, "total": self.total})


def _verify(path: Path, f: RemoteFile) -> str | None:
    size = path.stat().st_size
    if size != f.size:
        return f"size {size} != {f.size}"
    if f.sha256:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
        if h.hexdigest() != f.sha256.lower():
            return "sha256 mismatch"
    elif f.git_oid:
        h = hashlib.sha1(f"blob {size}\0".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
        if h.hexdigest() != f.git_oid.lower():
            return "git blob id mismatch"
    return None


def snapshot_problem(snapshot: Path, files: list[RemoteFile]) -> str | None:
    """Why the snapshot directory is not exactly `files` (None when it is): every file present with the recorded
    size and hash, no symlinks, and nothing else (an added `*.py` would be imported by a model's auto_map)."""
    expected = {f.path: f for f in files}
    present: set[str] = set()
    for item in snapshot.rglob("*"):
        rel = item.relative_to(snapshot).as_posix()
        if item.is_symlink():
            return f"{rel} is a symlink"
        if item.is_file() and rel != COMPLETE:
            present.add(rel)
    extra = sorted(present - set(expected))
    if extra:
        return f"unexpected file(s) {', '.join(extra[:3])}"
    missing = sorted(set(expected) - present)
    if missing:
        return f"missing file(s) {', '.join(missing[:3])}"
    for path, f in sorted(expected.items()):
        problem = _verify(snapshot / path, f)
        if problem is not None:
            return f"{path}: {problem}"
    return None


def recorded_files(snapshot: Path) -> list[RemoteFile] | None:
    """The files (with sizes and hashes) recorded when the snapshot was fetched, or None when there is no record."""
    try:
        manifest = json.loads((snapshot / COMPLETE).read_text(encoding="utf-8"))
        return [RemoteFile(str(e["path"]), int(e["size"]), sha256=e.get("sha256"), git_oid=e.get("git_oid"))
                for e in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def download_file(client: Client, repo: str, revision: str, f: RemoteFile, snapshot: Path, partial: Path,
                  progress: Progress) -> int:
    """Fetch one file into the snapshot, resuming what an earlier try left in `partial`; returns bytes fetched."""
    dest = snapshot / f.path
    # A file already in place counts only if it hashes to what the hub says (same size is not the same content).
    if dest.is_file() and not dest.is_symlink() and _verify(dest, f) is None:
        progress.add(f.size)
        return 0
    part = partial / f.path
    part.parent.mkdir(parents=True, exist_ok=True)
    fetched = 0
    restarted = False
    for attempt in range(_RETRIES + 1):
        start = part.stat().st_size if part.is_file() else 0
        if start > f.size:
            part.unlink()
            start = 0
        if attempt == 0:
            progress.add(start)
        try:
            if start < f.size or f.size == 0:
                with client.request(client.file_url(repo, revision, f.path), range_from=start) as resp:
                    status = getattr(resp, "status", 200)
                    mode = "ab" if start and status == 206 else "wb"
                    if mode == "wb" and start:
                        progress.add(-start)  # the server ignored the range: start over
                    # read1: whatever has arrived (up to a chunk), so an interrupted download keeps its bytes.
                    read = resp.read1 if hasattr(resp, "read1") else resp.read
                    with part.open(mode) as out:
                        while True:
                            chunk = read(_CHUNK)
                            if not chunk:
                                break
                            out.write(chunk)
                            out.flush()
                            fetched += len(chunk)
                            progress.add(len(chunk))
            problem = _verify(part, f)
            if problem is None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, dest)
                return fetched
            if restarted:
                raise FetchError("integrity", f"{f.path}: {problem} after a fresh download; the hub's copy is bad")
            progress.add(-part.stat().st_size)
            part.unlink()
            restarted = True
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and part.is_file() and part.stat().st_size == f.size:
                continue  # already whole: the loop verifies it
            if exc.code < 500 and exc.code not in (408, 429):
                raise client._http_error(exc, f"{repo}/{f.path}") from None
            if attempt == _RETRIES:
                raise FetchError("network", f"{f.path}: HTTP {exc.code} after {_RETRIES} retries") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == _RETRIES:
                reason = getattr(exc, "reason", exc)
                raise FetchError("network", f"{f.path}: {reason} after {_RETRIES} retries (partial kept)") from None
        time.sleep(min(30.0, 2.0**attempt))
    raise FetchError("network", f"{f.path}: could not be downloaded")


def fetch(client: Client, repo: str, revision: str | None, store: Path) -> tuple[Path, str]:
    resolved, files = client.resolve(repo, revision)
    wanted = select(files)
    if not any(f.path == "config.json" for f in wanted):
        raise FetchError("not_found", f"{repo}@{resolved} has no config.json: not a transformers model repository")
    snapshot = store / repo.replace("/", "--") / resolved.replace("/", "--")
    if (snapshot / COMPLETE).is_file():
        problem = snapshot_problem(snapshot, wanted)
        if problem is None:
            return snapshot, resolved
        # Changed since it was fetched: set it aside (for whoever investigates) and fetch a clean copy.
        aside = snapshot.with_name(f"{snapshot.name}.changed-{int(time.time())}")
        os.replace(snapshot, aside)
        _say({"event": "warning", "message": f"{repo}@{resolved}: the cached snapshot was changed after it was "
                                             f"fetched ({problem}); moved to {aside}, fetching it again"})
    partial = snapshot.with_name(snapshot.name + ".partial")
    progress = Progress(sum(f.size for f in wanted))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(download_file, client, repo, resolved, f, snapshot, partial, progress) for f in wanted]
        for fut in concurrent.futures.as_completed(futures):
            fut.result()
    progress.add(0, force=True)
    manifest = {"repo": repo, "hub": client.hub, "requested": revision, "revision": resolved,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "git_oid": f.git_oid} for f in wanted]}
    tmp = snapshot / f".{COMPLETE}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, snapshot / COMPLETE)
    return snapshot, resolved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner_agent.fetch")
    parser.add_argument("--hub", choices=sorted(DEFAULT_ENDPOINTS), required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--revision", default=None)
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--endpoint", default=None)
    args = parser.parse_args(argv)
    token = os.environ.get("HF_TOKEN" if args.hub == "huggingface" else "MODELSCOPE_API_TOKEN") or None
    client = Client(args.hub, args.endpoint, token)
    try:
        path, revision = fetch(client, args.repo, args.revision, args.store)
    except FetchError as exc:
        _say({"event": "error", "kind": exc.kind, "message": exc.message})
        return 3
    except OSError as exc:
        _say({"event": "error", "kind": "disk", "message": f"{type(exc).__name__}: {exc}"})
        return 3
    _say({"event": "done", "path": str(path), "revision": revision})
    return 0


if __name__ == "__main__":
    sys.exit(main())
