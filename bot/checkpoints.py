"""Training checkpoints the agent uploads as ms-swift writes them: kept per run (the newest only) so a cancelled run
or a lost runner keeps its work, and served back only to the run whose signed job resumes from them."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bot.core import Core
from bot.store import Run
from commands.events import verify_body
from commands.jobspec import SpecError, job_from_dict

log = logging.getLogger(__name__)
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CHECKPOINT = "checkpoint"  # the `artifact` event name the agent reports an upload under


@dataclass(frozen=True)
class Checkpoint:
    """A stored checkpoint: the run that wrote it, its step and its archive's sha256 (from the signed event)."""

    run_id: str
    step: int
    sha256: str


class Checkpoints:
    def __init__(self, core: Core) -> None:
        self.core = core

    @property
    def root(self) -> Path:
        return Path(self.core.config.checkpoint_dir)

    def path(self, run_id: str, step: int) -> Path:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id / f"checkpoint-{step}.tar.gz"

    async def receive(self, run_id: str, step: int, chunks: AsyncIterator[bytes], signature: str | None) \
            -> tuple[int, str]:
        """Store an upload whose HMAC (the run's token over the whole body) checks out; the newest step wins."""
        run = await self.core.store.get_run(run_id)
        if run is None or not _RUN_ID.match(run_id):
            return 404, "unknown run"
        if run.state in ("succeeded",):
            return 409, f"run {run_id} already {run.state}"
        limit = self.core.config.max_checkpoint_bytes
        final = self.path(run_id, step)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.part")
        mac = hmac.new(run.run_token.encode("utf-8"), digestmod=hashlib.sha256)
        size = 0
        try:
            with tmp.open("wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        return 413, f"checkpoint larger than {limit} bytes"
                    mac.update(chunk)
                    fh.write(chunk)
            if not signature or not hmac.compare_digest(("sha256=" + mac.hexdigest()).encode(),
                                                        signature.encode("utf-8", errors="replace")):
                return 401, "bad signature"
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        for old in final.parent.glob("checkpoint-*.tar.gz"):
            if old != final and _step(old) < step:
                old.unlink(missing_ok=True)
        log.info("run %s: checkpoint-%d stored (%d bytes)", run_id, step, size)
        return 201, "stored"

    async def for_resume(self, run_id: str, signature: str | None) -> tuple[int, Path | str]:
        """The archive run `run_id` resumes from (its signed job names it), if the request carries its signature."""
        run = await self.core.store.get_run(run_id)
        if run is None:
            return 404, "unknown run"
        if not verify_body(run.run_token, f"resume:{run_id}".encode(), signature):
            return 401, "bad signature"
        try:
            job = job_from_dict(run.job_spec or {})
        except SpecError:
            return 409, "the run's job cannot be read"
        if job.resume is None:
            return 409, "this run does not resume from a checkpoint"
        path = self.path(job.resume.run_id, job.resume.step)
        if not path.is_file():
            return 410, f"checkpoint-{job.resume.step} of {job.resume.run_id} is no longer stored"
        return 200, path

    async def latest(self, run: Run) -> Checkpoint | None:
        """The newest checkpoint run `run` uploaded (its signed `artifact` events), or else the one it resumed from:
        either way one whose archive is still stored."""
        for ev in reversed(await self.core.store.events_after(run.run_id, -1)):
            d = ev.data
            if ev.type == "artifact" and d.get("name") == CHECKPOINT and isinstance(d.get("sha256"), str):
                step = _step(Path(str(d.get("path"))))
                if step > 0 and self.path(run.run_id, step).is_file():
                    return Checkpoint(run.run_id, step, str(d["sha256"]))
        try:
            job = job_from_dict(run.job_spec or {})
        except SpecError:
            return None
        if job.resume is not None and self.path(job.resume.run_id, job.resume.step).is_file():
            return Checkpoint(job.resume.run_id, job.resume.step, job.resume.sha256)
        return None


def _step(path: Path) -> int:
    m = re.match(r"^checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else -1
