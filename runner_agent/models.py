"""Model acquisition: turns a job's ModelRef into a local directory in the shared cache, fetching it at most once.

- `builtin` (`tiny`): built by a subprocess from a fixed seed, cached under `models/builtin/`.
- `local`: a directory on the runner (absolute, or relative to the repository checkout).
- hub models: ModelScope by default, Hugging Face when the job's source says so or `--hub huggingface`; the endpoint
  (a mirror) is configurable. Downloads run in a subprocess (`runner_agent.fetch`) so they can be cancelled; partial
  files are resumed on the next try. A finished snapshot is recorded in `models/index/`, so the next run of the same
  model and revision touches no network at all. Offline, only the cache is used; a miss names the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commands.args import revision_problem
from commands.jobspec import ModelRef

from . import tiny_model
from .context import RunContext
from .errors import AgentError
from .fetch import COMPLETE, recorded_files, snapshot_problem
from .procs import Supervised, describe_exit, headline, run_supervised

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_SAFE_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")
BUILTIN_MODELS = ("tiny",)


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    source: str  # where the files came from: builtin, local, modelscope, huggingface
    repo: str  # hub id, builtin name, or local path
    revision: str  # resolved commit (hub), recipe revision (builtin), or "local"
    path: Path

    def to_manifest(self) -> dict[str, object]:
        return {"name": self.name, "source": self.source, "id": self.repo, "revision": self.revision,
                "path": str(self.path)}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so two runs on one runner never build or fetch the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def hub_for(model: ModelRef, preferred: str) -> tuple[str, str]:
    """(hub, repo id) for a hub model: the job's explicit Hugging Face source wins, then the runner's preference."""
    if model.source == "huggingface":
        return "huggingface", model.hf_id or model.id
    if preferred == "huggingface":
        if not model.hf_id:
            raise AgentError(
                f"model {model.name!r} has no Hugging Face id (hf_id); use --hub modelscope or add hf_id to its preset"
            )
        return "huggingface", model.hf_id
    return "modelscope", model.id


def _index_path(ctx: RunContext, hub: str, repo: str, revision: str | None) -> Path:
    safe = repo.replace("/", "--")
    return ctx.cache / "models" / "index" / hub / f"{safe}@{revision or 'default'}.json"


def _check_ids(model: ModelRef) -> None:
    for label, value in (("model_type", model.model_type), ("template", model.template)):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", value):
            raise AgentError(f"model {model.name!r}: {label} {value!r} is not a valid ms-swift name")
    if model.revision is not None:
        # The bot refuses these already; a runner checks again what it is about to fetch (no `refs/pr/…`).
        problem = revision_problem(model.revision) if _SAFE_REV.fullmatch(model.revision) else "not a revision name"
        if problem is not None:
            raise AgentError(f"model {model.name!r}: revision {model.revision!r}: {problem}")


def _builtin(ctx: RunContext, model: ModelRef) -> ResolvedModel:
    if model.id not in BUILTIN_MODELS:
        raise AgentError(f"unknown built-in model {model.id!r}; built-in models: {', '.join(BUILTIN_MODELS)}")
    seed = tiny_model.DEFAULT_SEED
    revision = f"builtin-r{tiny_model.RECIPE_VERSION}-s{seed}"
    root = ctx.cache / "models" / "builtin"
    target = root / f"tiny-r{tiny_model.RECIPE_VERSION}-s{seed}"
    if (target / "model.safetensors").is_file():
        return ResolvedModel(model.name, "builtin", model.id, revision, target)
    with _locked(root / ".tiny.lock"):
        if not (target / "model.safetensors").is_file():
            ctx.bus.emit("phase", phase="download", detail=f"building the built-in {model.id} model (seed {seed})")
            tmp = root / f".{target.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            proc = Supervised(
                [ctx.config.python, "-m", "runner_agent.tiny_model", "--out", str(tmp), "--seed", str(seed)],
                env=ctx.tool_env(offline=True),
                log_path=ctx.logs / "tiny-model.log",
            )
            try:
                rc = run_supervised(proc, ctx.watchdog, what="tiny model build", grace_s=ctx.config.grace_s)
                if rc != 0:
                    tail = proc.tail()
                    raise AgentError(
                        f"building the built-in tiny model failed ({describe_exit(rc)}): {headline(tail)}",
                        detail="\n".join(tail),
                    )
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return ResolvedModel(model.name, "builtin", model.id, revision, target)


def _local(ctx: RunContext, model: ModelRef) -> ResolvedModel:
    raw = Path(model.id)
    path = raw if raw.is_absolute() else (ctx.config.repo_dir / raw)
    path = path.resolve()
    if not (path / "config.json").is_file():
        raise AgentError(f"local model {model.name!r}: {path} is not a model directory (no config.json)")
    return ResolvedModel(model.name, "local", str(path), "local", path)


def _hub(ctx: RunContext, model: ModelRef) -> ResolvedModel:
    hub, repo = hub_for(model, ctx.config.hub)
    if not _SAFE_ID.fullmatch(repo):
        raise AgentError(f"model {model.name!r}: {repo!r} is not a valid {hub} repository id")
    index = _index_path(ctx, hub, repo, model.revision)
    store = ctx.cache / "models" / hub
    where = f"{hub}: {repo}" + (f"@{model.revision}" if model.revision else "")
    recorded = _verified_index(ctx, index, store, where)
    if recorded is not None:
        return ResolvedModel(model.name, hub, repo, str(recorded["revision"]), Path(str(recorded["path"])))
    if ctx.config.offline:
        snapshot = _complete_snapshot(store, repo, model.revision)
        if snapshot is not None:
            _check_snapshot(snapshot, where)
            return ResolvedModel(model.name, hub, repo, snapshot.name, snapshot)
        raise AgentError(
            f"model {model.name!r} ({where}) is not in the cache at {store} and the agent is offline; "
            f"run once with network access (or pre-fetch it with `tunebot agent fetch`) and retry"
        )
    argv = [ctx.config.python, "-m", "runner_agent.fetch", "--hub", hub, "--repo", repo, "--store", str(store)]
    if model.revision:
        argv += ["--revision", model.revision]
    if ctx.config.endpoint:
        argv += ["--endpoint", ctx.config.endpoint]
    ctx.bus.emit("phase", phase="download", detail=f"fetching {where}")
    state: dict[str, Any] = {}
    last_emit = [0.0]

    def on_line(line: str) -> None:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("event") == "progress":
            done = int(msg.get("bytes", 0))
            state["bytes"] = done
            total = int(msg.get("total", 0))
            now = time.monotonic()
            if total and now - last_emit[0] >= 1.0:
                last_emit[0] = now
                # Progress in MiB: integers the bot can show without knowing about bytes.
                ctx.bus.emit("progress", phase="download", step=done >> 20, total=max(total >> 20, 1))
        elif msg.get("event") == "warning":
            ctx.bus.emit("phase", phase="download", detail=str(msg.get("message", ""))[:500])
        elif msg.get("event") in ("done", "error"):
            state.update(msg)

    with _locked(ctx.cache / "models" / "locks" / f"{hub}--{repo.replace('/', '--')}.lock"):
        recorded = _verified_index(ctx, index, store, where)
        if recorded is not None:
            return ResolvedModel(model.name, hub, repo, str(recorded["revision"]), Path(str(recorded["path"])))
        proc = Supervised(argv, env=ctx.tool_env(offline=False), log_path=ctx.logs / "fetch.log", on_line=on_line)
        rc = run_supervised(proc, ctx.watchdog, what="model download", grace_s=ctx.config.grace_s)
        if state.get("event") == "error":
            kind = state.get("kind")
            message = str(state.get("message", ""))
            if kind == "not_found":
                raise AgentError(f"unknown model {model.name!r}: {message}")
            raise AgentError(f"could not download model {model.name!r} ({where}): {message}")
        if rc != 0 or state.get("event") != "done":
            tail = proc.tail()
            raise AgentError(
                f"model download of {where} failed ({describe_exit(rc)}): {headline(tail)}", detail="\n".join(tail)
            )
        path = Path(str(state["path"]))
        if not (path / "config.json").is_file():
            raise AgentError(f"model {model.name!r} ({where}) downloaded, but {path} holds no config.json")
        revision = str(state.get("revision") or model.revision or "unknown")
        _write_index(index, {"hub": hub, "repo": repo, "requested": model.revision, "revision": revision,
                             "path": str(path)})
        return ResolvedModel(model.name, hub, repo, revision, path)


def _check_snapshot(snapshot: Path, where: str) -> None:
    """Refuse a cached snapshot whose files are not the ones recorded when it was fetched (a poisoned cache entry:
    every runner shares the cache, so one job could otherwise change the weights or code every later job loads)."""
    files = recorded_files(snapshot)
    problem = "its fetch record is missing or unreadable" if files is None else snapshot_problem(snapshot, files)
    if problem is not None:
        raise AgentError(
            f"the cached snapshot of {where} at {snapshot} was changed after it was fetched ({problem}); refusing "
            f"to use it. Remove it (or fetch it again with network access) and treat this cache as tampered with"
        )


def _verified_index(ctx: RunContext, index: Path, store: Path, where: str) -> dict[str, object] | None:
    """The index entry for a fetched snapshot, checked file by file against its fetch record; offline a changed
    snapshot is an error, online it is set aside (index removed) so that the fetch below downloads a clean copy."""
    recorded = _read_index(index)
    if recorded is None:
        return None
    path = Path(str(recorded["path"]))
    try:
        inside = path.resolve().is_relative_to(store.resolve())
    except OSError:
        inside = False
    try:
        if not inside:
            raise AgentError(f"the model index for {where} points outside the cache ({path}); refusing to use it")
        _check_snapshot(path, where)
    except AgentError as exc:
        if ctx.config.offline:
            raise
        ctx.bus.emit("phase", phase="download", detail=f"{exc.reason[:400]}; fetching it again")
        index.unlink(missing_ok=True)
        return None
    return recorded


def _complete_snapshot(store: Path, repo: str, revision: str | None) -> Path | None:
    """A finished snapshot of `repo` at `revision` (a commit or a name it was fetched under), if the cache has one."""
    base = store / repo.replace("/", "--")
    if revision:
        candidate = base / revision.replace("/", "--")
        if (candidate / COMPLETE).is_file():
            return candidate
    return None


def _read_index(index: Path) -> dict[str, object] | None:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not (Path(str(data.get("path"))) / "config.json").is_file():
        return None
    return data


def _write_index(index: Path, data: dict[str, object]) -> None:
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, index)


def is_cached(ctx: RunContext, model: ModelRef) -> bool:
    """Whether acquiring `model` needs no download (used to size the up-front disk-space check)."""
    if model.source == "builtin":
        seed = tiny_model.DEFAULT_SEED
        return (ctx.cache / "models" / "builtin" / f"tiny-r{tiny_model.RECIPE_VERSION}-s{seed}").is_dir()
    if model.source == "local":
        return True
    try:
        hub, repo = hub_for(model, ctx.config.hub)
    except AgentError:
        return False
    return _read_index(_index_path(ctx, hub, repo, model.revision)) is not None


def acquire(ctx: RunContext, model: ModelRef) -> ResolvedModel:
    _check_ids(model)
    if model.source == "builtin":
        return _builtin(ctx, model)
    if model.source == "local":
        return _local(ctx, model)
    return _hub(ctx, model)
