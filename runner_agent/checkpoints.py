"""Checkpoints as ms-swift writes them: each `checkpoint-N` is uploaded to the bot as soon as it is complete (so a
cancelled or preempted run keeps its work), and fetched back, verified, for `--resume_from_checkpoint`.

A checkpoint is complete once its `trainer_state.json` parses and names step N: transformers' Trainer writes it last
(`Trainer._save_checkpoint`: model, optimizer, scheduler, RNG, then the state). The archive is a gzip'd tar of the
directory; its sha256 travels in the run's signed `artifact` event (name `checkpoint`), and a resuming job carries
that hash in its signed spec, so the runner refuses any other archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from commands.events import SIGNATURE_HEADER, sign_body
from commands.jobspec import Callback

from .errors import AgentError

MAX_UPLOAD_BYTES = 2 << 30  # a LoRA checkpoint with its optimizer state is megabytes; a full model is not uploaded


def step_of(path: Path) -> int:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """`checkpoint-N` folders whose trainer state (written last) is whole and names step N, oldest first."""
    out: list[Path] = []
    for path in sorted(output_dir.glob("checkpoint-*"), key=step_of):
        try:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and state.get("global_step") == step_of(path):
            out.append(path)
    return out


def pack(path: Path) -> bytes:
    """The checkpoint folder as a gzip'd tar (files in name order, fixed mtimes: equal folders, equal archives)."""
    buf = io.BytesIO()
    # tarfile's "w:gz" stamps the gzip header with the current time (RFC 1952 MTIME), so two packs a second apart
    # differed; the header's time is fixed too.
    with (
        gzip.GzipFile(filename="", fileobj=buf, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(item), arcname=f"{path.name}/{item.relative_to(path).as_posix()}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with item.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def unpack(data: bytes, dest: Path, step: int) -> Path:
    """Extract an archive made by `pack` into dest/checkpoint-<step> (tar's `data` filter: no links out, no
    absolute paths, no devices)."""
    name = f"checkpoint-{step}"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        if not members or any(m.name.split("/", 1)[0] != name for m in members):
            raise AgentError(f"the checkpoint archive does not hold {name}/")
        tar.extractall(dest, filter="data")
    folder = dest / name
    if not (folder / "trainer_state.json").is_file():
        raise AgentError(f"the checkpoint archive has no {name}/trainer_state.json")
    return folder


def _base(callback: Callback) -> str:
    url = callback.url
    if not url.endswith("/events"):
        raise AgentError(f"callback URL {url} does not end with /events: cannot derive the checkpoint URL")
    return url[: -len("/events")]


def upload(callback: Callback, step: int, data: bytes, *, timeout_s: float = 300.0) -> None:
    req = urllib.request.Request(f"{_base(callback)}/checkpoints/{step}", data=data, method="PUT", headers={
        "Content-Type": "application/gzip", SIGNATURE_HEADER: sign_body(callback.token, data),
        "User-Agent": "tunebot-agent"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        resp.read()


def download(callback: Callback, run_id: str, sha256: str, *, timeout_s: float = 300.0) -> bytes:
    """The checkpoint this run resumes from, as the bot serves it to this run (signed with this run's token)."""
    req = urllib.request.Request(f"{_base(callback)}/resume-checkpoint", method="GET", headers={
        SIGNATURE_HEADER: sign_body(callback.token, f"resume:{run_id}".encode()), "User-Agent": "tunebot-agent"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data: bytes = resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise AgentError(f"could not download the checkpoint to resume from: {exc}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise AgentError(f"the checkpoint archive hashes to {got[:12]}…, not {sha256[:12]}… as the signed job says")
    return data


class Uploader:
    """Polled from the training loop: uploads each newly completed checkpoint once and reports it."""

    def __init__(self, output_dir: Path, callback: Callback | None, emit: Callable[..., Any], *,
                 put: Callable[[Callback, int, bytes], None] = upload, every_s: float = 0.5,
                 max_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.output_dir = output_dir
        self.callback = callback
        self.emit = emit
        self.put = put
        self.every_s = every_s
        self.max_bytes = max_bytes
        self.last_step = 0
        self._next = 0.0
        self.warned = False

    def poll(self, *, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.every_s
        done = complete_checkpoints(self.output_dir)
        newest = done[-1] if done else None
        if newest is None or step_of(newest) <= self.last_step:
            return
        step = step_of(newest)
        try:
            data = pack(newest)
        except OSError:
            return  # rotated away while being read (save_total_limit): the next one will do
        if len(data) > self.max_bytes:
            if not self.warned:
                self.warned = True
                self.emit("phase", phase="train", detail=f"checkpoint-{step} is {len(data) >> 20} MiB, above the "
                                                         f"{self.max_bytes >> 20} MiB upload limit: not kept")
            self.last_step = step
            return
        try:
            self.put(self.callback, step, data)
        except (urllib.error.URLError, OSError, AgentError) as exc:
            if not self.warned:
                self.warned = True
                self.emit("phase", phase="train", detail=f"checkpoint-{step} upload failed: {exc}")
            return  # tried again on the next checkpoint
        self.last_step = step
        self.emit("artifact", name="checkpoint", path=f"checkpoint-{step}", sha256=hashlib.sha256(data).hexdigest(),
                  bytes=len(data))
