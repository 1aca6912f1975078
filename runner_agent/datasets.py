"""Training data for `swift sft`: resolves each job dataset to what ms-swift reads, with a content hash.

- `builtin` `tiny-mcq`: answer-format rows built from the benchmark packs' few-shot `dev` splits only (never an
  evaluated question), in EvalScope's 0-shot prompt format, the assistant replying `答案：X`. Cached by content.
- `local`: a file of the checked-out repository (path relative to `--repo-dir`, which it must stay inside).
- `modelscope` / `huggingface`: a hub dataset id, handed to ms-swift (which caches it under the agent's cache).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from commands.jobspec import DatasetRef

from . import mcq_format, packs
from .errors import AgentError
from .report import sha256_file

TINY_MCQ_VERSION = 1
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    source: str
    swift_arg: str  # what goes after --dataset
    sha256: str | None  # content hash for local/builtin files; None for hub ids (the hub revision is unknown here)
    rows: int | None
    path: Path | None = None
    blob: str | None = None  # local files: the git blob SHA of the bytes read (what the recipe key names)
    requested: str | None = None  # hub datasets: the revision the job asked for


def git_blob_sha(path: Path) -> str:
    """Git's object id of a file's bytes (`git hash-object`): what a commit's tree names the file by."""
    digest = hashlib.sha1()
    digest.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolved_revision(ds: PreparedDataset, hf_hub_cache: Path) -> str | None:
    """The commit a hub dataset's revision resolved to, when the hub said so: huggingface_hub records it in its
    cache (`datasets--org--name/refs/<revision>`). ModelScope keeps no such record: None (the requested revision
    is reported beside it)."""
    if ds.source != "huggingface":
        return None
    repo = ds.swift_arg.split("#", 1)[0].split(":", 1)[0]
    ref = hf_hub_cache / f"datasets--{repo.replace('/', '--')}" / "refs" / (ds.requested or "main")
    try:
        text = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text if re.fullmatch(r"[0-9a-f]{40}", text) else None


def revisions(refs: tuple[DatasetRef, ...], prepared: list[PreparedDataset], hf_hub_cache: Path) \
        -> list[dict[str, object]]:
    """What each training dataset actually was, for the signed result events: a repository file by the blob SHA of
    the bytes read, a built-in set by its content sha256, a hub dataset by the revision asked for and the commit it
    resolved to (when the hub gives one)."""
    out: list[dict[str, object]] = []
    for ref, d in zip(refs, prepared, strict=True):
        entry: dict[str, object] = {"name": d.name, "source": d.source}
        if d.source == "local":
            entry.update(id=ref.id, blob=d.blob, sha256=d.sha256)
        elif d.source == "builtin":
            entry.update(id=d.name, sha256=d.sha256)
        else:
            entry.update(id=ref.id, requested=d.requested,
                         revision=resolved_revision(d, hf_hub_cache))
        out.append(entry)
    return out


def tiny_mcq_rows(bench_data: Path) -> list[dict[str, object]]:
    """The rows of `tiny-mcq`: every dev-split question of the C-Eval and CMMLU packs, in a fixed order."""
    rows: list[dict[str, object]] = []
    for benchmark in ("ceval", "cmmlu"):
        split = packs.FEWSHOT_SPLIT[benchmark]
        for subject in packs.available_subjects(bench_data, benchmark, split):
            if benchmark == "ceval" and subject not in mcq_format.CEVAL_SUBJECTS_ZH:
                raise AgentError(f"ceval pack holds an unknown subject {subject!r} ({bench_data / benchmark / split})")
            for r in packs.read_rows(bench_data, benchmark, split, subject):
                rows.append(
                    {
                        "messages": [
                            {"role": "user", "content": mcq_format.prompt(benchmark, subject, r.question, r.choices)},
                            {"role": "assistant", "content": mcq_format.answer_line(r.answer)},
                        ]
                    }
                )
    return rows


def build_tiny_mcq(bench_data: Path | None, cache: Path) -> PreparedDataset:
    if bench_data is None or not bench_data.is_dir():
        raise AgentError(
            "the built-in dataset tiny-mcq is made from the benchmark packs' dev splits, but no benchmark data "
            "directory is available: pass --bench-data DIR (holding ceval/ and cmmlu/) or set TUNEBOT_BENCH_DATA"
        )
    rows = tiny_mcq_rows(bench_data)
    if not rows:
        raise AgentError(
            f"tiny-mcq: no dev-split questions under {bench_data} (expected ceval/dev/*.csv, cmmlu/dev/*.csv)"
        )
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = cache / f"tiny-mcq-v{TINY_MCQ_VERSION}-{digest[:16]}.jsonl"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return PreparedDataset("tiny-mcq", "builtin", str(path), digest, len(rows), path)


def resolve_local(ref: DatasetRef, repo_dir: Path) -> PreparedDataset:
    root = repo_dir.resolve()
    candidate = (root / ref.id).resolve()
    if not candidate.is_relative_to(root):
        raise AgentError(f"dataset {ref.name!r}: {ref.id!r} points outside the repository ({root})")
    if not candidate.exists():
        raise AgentError(f"dataset {ref.name!r}: {ref.id} does not exist in the repository checkout at {root}")
    if not candidate.is_file():
        raise AgentError(f"dataset {ref.name!r}: {ref.id} is not a file")
    if candidate.suffix.lower() not in LOCAL_SUFFIXES:
        raise AgentError(f"dataset {ref.name!r}: {ref.id} must be one of {', '.join(LOCAL_SUFFIXES)}")
    if candidate.stat().st_size == 0:
        raise AgentError(f"dataset {ref.name!r}: {ref.id} is empty")
    rows = None
    if candidate.suffix.lower() == ".jsonl":
        rows = 0
        with candidate.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    raise AgentError(f"dataset {ref.name!r}: {ref.id} line {lineno} is not JSON ({exc.msg})") from None
                rows += 1
    blob = git_blob_sha(candidate)
    if ref.blob is not None and ref.blob.lower() != blob:
        # The recipe key names the file by its blob at the job's commit: training other bytes under it would make
        # every comparison keyed on it wrong.
        raise AgentError(f"dataset {ref.name!r}: {ref.id} in the checkout is blob {blob[:12]}, but the job was "
                         f"planned on blob {ref.blob[:12]} (the checkout is not the commit the bot planned); "
                         "re-run the command so the job is planned from the current commit")
    return PreparedDataset(ref.name, "local", str(candidate), sha256_file(candidate), rows, candidate, blob=blob)


def prepare(
    refs: tuple[DatasetRef, ...], *, repo_dir: Path, bench_data: Path | None, cache: Path
) -> list[PreparedDataset]:
    """Resolve every training dataset up front, so a missing file fails the run before any training starts."""
    out: list[PreparedDataset] = []
    hubs = {r.source for r in refs if r.source in ("modelscope", "huggingface")}
    if len(hubs) > 1:
        raise AgentError("a job may take hub datasets from one hub only (ModelScope or Hugging Face), not both")
    for ref in refs:
        if ref.max_samples is not None and ref.max_samples <= 0:
            raise AgentError(f"dataset {ref.name!r}: max_samples must be positive, got {ref.max_samples}")
        if ref.source == "builtin":
            if ref.id != "tiny-mcq":
                raise AgentError(f"unknown built-in dataset {ref.id!r}; the agent builds only 'tiny-mcq'")
            prepared = build_tiny_mcq(bench_data, cache)
        elif ref.source == "local":
            prepared = resolve_local(ref, repo_dir)
        else:
            if not ref.id or ref.id.startswith("-") or any(c.isspace() for c in ref.id):
                raise AgentError(f"dataset {ref.name!r}: {ref.id!r} is not a hub dataset id")
            prepared = PreparedDataset(ref.name, ref.source, ref.id, None, None, requested=ref.revision)
        if ref.max_samples is not None:
            # ms-swift's `<dataset>#N` samples N rows (seeded by --data_seed).
            prepared = dataclasses.replace(prepared, swift_arg=f"{prepared.swift_arg}#{ref.max_samples}")
        out.append(prepared)
    return out
