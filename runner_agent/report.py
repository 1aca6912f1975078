"""A run's outputs: the manifest (what exactly ran, on what), results.json written atomically, and the Markdown
summary (also appended to `$GITHUB_STEP_SUMMARY` in a workflow).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from commands.jobspec import JobSpec, content_hash, to_dict
from commands.results import Results

VERSIONED = ("ms-swift", "evalscope", "torch", "transformers", "peft", "bitsandbytes", "modelscope", "huggingface_hub",
             "datasets", "tunebot")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def hardware(gpu: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "accelerator": "cuda" if gpu else "cpu",
    }
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    smi = shutil.which("nvidia-smi")
    if gpu and smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            res = subprocess.run(
                [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=False,
            )
            info["gpus"] = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    return info


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB pieces (the one file hash of the agent's manifests and caches)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_hash(root: Path) -> tuple[str, int]:
    """A stable hash of a directory (relative paths and contents, sorted) and its size in bytes."""
    h = hashlib.sha256()
    size = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        h.update(f"{rel}\0{sha256_file(path)}\n".encode())
        size += path.stat().st_size
    return h.hexdigest(), size


def job_identity(job: JobSpec) -> str:
    """The job's content hash without its callback (the token is a secret and not part of what ran)."""
    data = to_dict(job)
    data.pop("callback", None)
    return content_hash(data)


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a reader never sees half a results.json."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_markdown(results: Results, job: JobSpec, *, reason: str | None = None,
                     loss_png: str | None = None) -> str:
    m = results.manifest
    model = m.get("model", {}) if isinstance(m.get("model"), Mapping) else {}
    lines = [f"## tunebot run `{results.run_id}`: {results.status}", ""]
    if reason:
        lines += [f"> {reason.splitlines()[0]}", ""]
    lines += ["| | |", "|---|---|"]
    lines.append(f"| repository | `{job.repo}` @ `{job.sha[:12]}` |")
    lines.append(f"| job | {job.kind} |")
    lines.append(f"| model | `{model.get('name', job.model.name)}` ({model.get('source', job.model.source)}: "
                 f"`{model.get('id', job.model.id)}` @ `{model.get('revision', '?')}`) |")
    train = results.train
    if train:
        h = job.hyper
        tuner = f"{job.tuner}" + (f" r={h.lora_rank} α={h.lora_alpha}" if job.tuner in ("lora", "qlora") else "")
        lines.append(f"| tuner | {tuner}, lr {h.learning_rate:g}, batch {h.per_device_train_batch_size}"
                     f"×{h.gradient_accumulation_steps}, seed {h.seed} |")
        first, last = train.get("first_loss"), train.get("final_loss")
        have_loss = isinstance(first, float) and isinstance(last, float)
        loss_txt = f"loss {first:.4f} → {last:.4f}" if have_loss else "no loss"
        lines.append(f"| training | {train.get('steps', '?')} steps, {loss_txt}, {train.get('wall_s', 0):.0f}s |")
    adapter = m.get("adapter")
    if isinstance(adapter, Mapping) and adapter.get("sha256"):
        lines.append(f"| adapter | `{str(adapter['sha256'])[:16]}…` |")
    if results.benchmarks:
        lines += ["", "| benchmark | score | correct / n | subjects |", "|---|---|---|---|"]
        for name, b in sorted(results.benchmarks.items()):
            subs = ", ".join(f"{k} {_pct(v.score)}" for k, v in sorted(b.subsets.items()))
            lines.append(f"| {name} | **{_pct(b.score)}** | {b.correct} / {b.n} | {subs} |")
    if loss_png:
        lines += ["", f"![training loss]({loss_png})"]
    versions_ = m.get("versions", {})
    if isinstance(versions_, Mapping):
        shown = ", ".join(f"{k} {v}" for k, v in versions_.items() if v and k in ("ms-swift", "evalscope", "torch"))
        lines += ["", f"<sub>{shown}</sub>"]
    return "\n".join(lines) + "\n"


def artifact_entry(out: Path, path: Path, name: str) -> dict[str, Any]:
    if path.is_dir():
        digest, size = tree_hash(path)
    else:
        digest, size = sha256_file(path), path.stat().st_size
    return {"name": name, "path": path.relative_to(out).as_posix(), "sha256": digest, "bytes": size}


def loss_points(points: Sequence[tuple[int, float]]) -> list[list[float]]:
    return [[int(s), float(v)] for s, v in points]
