"""Benchmark packs: reads real CMMLU / C-Eval files and converts them, deterministically, into EvalScope's layouts.

Source layouts (what the upstream projects ship):
- CMMLU (haonan-li/CMMLU `data/`): `cmmlu/{dev,test}/{subject}.csv`, header `,Question,A,B,C,D,Answer`
  (the first, unnamed column is the original 0-based row id).
- C-Eval (official zip): `ceval/{dev,val,test}/{subject}_{split}.csv`,
  header `id,question,A,B,C,D[,answer[,explanation]]`.

Converted layouts (what EvalScope 1.x's built-in `cmmlu` / `ceval` load with `local_path`), written once per
source content into the cache and never modified afterwards:
- `cmmlu-<hash>/`: one `default` config, `test.jsonl` / `dev.jsonl` rows
  `{"id", "question", "choices": ["(A) ..", ..], "answer": "(A)", "category"}` in (subject, original row) order.
- `ceval-<hash>/`: one config per subject, `{split}/{subject}.jsonl` rows `{"id", "question", "A".."D", "answer",
  "explanation"}`, all strings but `id`, declared in the README's `dataset_info.features`.
- `general_mcq-v<N>-<hash>/`: a repository's own questions (read and checked by `mcq_files`), one
  `{subset}_val.jsonl` per subset (EvalScope's LocalDataLoader name for the evaluated split), rows
  `{"id", "question", "A", "B", …, "answer"}` with exactly that row's options, all strings.

Every converted row keeps its original row id, so a per-question outcome maps back to `"<subject>/<row id>"`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from commands.packs import pack_content_hash, subject_files

from .errors import AgentError
from .report import sha256_file

CONVERTER_VERSION = 1
LETTERS = ("A", "B", "C", "D")
LETTERS_ALL = tuple("ABCDEFGHIJ")  # general_mcq's options

# What each benchmark calls its splits: the evaluated one and the few-shot pool.
EVAL_SPLIT = {"cmmlu": "test", "ceval": "val", "general_mcq": "val"}
FEWSHOT_SPLIT = {"cmmlu": "dev", "ceval": "dev", "general_mcq": "dev"}
SUPPORTED = ("cmmlu", "ceval")  # packs read from --bench-data; general_mcq comes from the repository instead


@dataclass(frozen=True)
class McqRow:
    """One multiple-choice question as the upstream file has it."""

    subset: str
    row_id: str
    question: str
    choices: tuple[str, ...]
    answer: str
    explanation: str = ""

    @property
    def qid(self) -> str:
        return f"{self.subset}/{self.row_id}"


@dataclass(frozen=True)
class ConvertedPack:
    """A pack converted for EvalScope: where it is, what went into it, and the rows it holds per split/subject."""

    benchmark: str
    path: Path
    source: Path
    sha256: str
    rows: Mapping[str, Mapping[str, tuple[McqRow, ...]]]  # split -> subject -> rows in EvalScope's order
    files: tuple[tuple[str, str], ...] = ()  # repository questions: (path in the repository, sha256) per file

    def eval_rows(self, subject: str) -> tuple[McqRow, ...]:
        return self.rows.get(EVAL_SPLIT[self.benchmark], {}).get(subject, ())


# --- reading the upstream files ---------------------------------------------------------------------------------------


def _source_file(root: Path, benchmark: str, split: str, subject: str) -> Path:
    if benchmark == "cmmlu":
        return root / "cmmlu" / split / f"{subject}.csv"
    return root / "ceval" / split / f"{subject}_{split}.csv"


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise AgentError(f"benchmark file {path} is not UTF-8 ({exc.reason}); re-export it as UTF-8") from None
    except csv.Error as exc:
        raise AgentError(f"benchmark file {path} is not valid CSV: {exc}") from None
    if not rows:
        raise AgentError(f"benchmark file {path} is empty")
    return rows[0], rows[1:]


def read_rows(root: Path, benchmark: str, split: str, subject: str) -> tuple[McqRow, ...]:
    """The rows of one upstream file, checked: header, four options, a letter answer, unique row ids."""
    path = _source_file(root, benchmark, split, subject)
    if not path.is_file():
        raise AgentError(f"{benchmark}: missing file {path} for subject {subject!r} ({split} split)")
    header, body = _read_csv(path)
    norm = [h.strip() for h in header]
    if benchmark == "cmmlu":
        expected = ["", "Question", "A", "B", "C", "D", "Answer"]
        if norm != expected:
            raise AgentError(f"{path}: header {header!r} is not the CMMLU layout {','.join(expected)!r}")
        idx = {"id": 0, "question": 1, "answer": 6}
    else:
        if norm[:6] != ["id", "question", "A", "B", "C", "D"] or (len(norm) > 6 and norm[6] != "answer"):
            raise AgentError(f"{path}: header {header!r} is not the C-Eval layout 'id,question,A,B,C,D,answer[,...]'")
        if len(norm) < 7:
            raise AgentError(f"{path}: has no answer column (the C-Eval test split withholds labels); use val or dev")
        idx = {"id": 0, "question": 1, "answer": 6}
    out: list[McqRow] = []
    seen: set[str] = set()
    for lineno, rec in enumerate(body, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) < len(norm):
            raise AgentError(f"{path}: record {lineno - 1} has {len(rec)} fields, expected {len(norm)}")
        row_id = rec[idx["id"]].strip()
        if not row_id:
            raise AgentError(f"{path}: record {lineno - 1} has no row id")
        if row_id in seen:
            raise AgentError(f"{path}: row id {row_id!r} appears twice")
        seen.add(row_id)
        answer = rec[idx["answer"]].strip().upper()
        if answer not in LETTERS:
            raise AgentError(f"{path}: row {row_id} has answer {rec[idx['answer']]!r}, expected one of A, B, C, D")
        explanation = rec[7] if benchmark == "ceval" and len(norm) > 7 and len(rec) > 7 else ""
        out.append(
            McqRow(
                subset=subject,
                row_id=row_id,
                question=rec[idx["question"]],
                choices=tuple(rec[2:6]),
                answer=answer,
                explanation=explanation,
            )
        )
    if not out:
        raise AgentError(f"{path}: holds no questions")
    return tuple(out)


def available_subjects(root: Path, benchmark: str, split: str) -> list[str]:
    """Subjects that have a file for `split` under the pack root, sorted."""
    base = root / benchmark / split
    if not base.is_dir():
        return []
    suffix = ".csv" if benchmark == "cmmlu" else f"_{split}.csv"
    return sorted(p.name[: -len(suffix)] for p in base.iterdir() if p.name.endswith(suffix) and p.is_file())


# --- conversion ------------------------------------------------------------------------------------------------------


def source_files(root: Path, benchmark: str) -> list[Path]:
    base = root / benchmark
    return sorted(p for p in base.rglob("*.csv") if p.is_file()) if base.is_dir() else []


def source_hash(root: Path, benchmark: str) -> str:
    """A hash of every source file of a pack (relative path + content) and of the converter's version."""
    h = hashlib.sha256(f"{benchmark}:v{CONVERTER_VERSION}\n".encode())
    for path in source_files(root, benchmark):
        h.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def _jsonl(rows: Iterable[Mapping[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def _int_or_str(row_id: str) -> int | str:
    return int(row_id) if row_id.isdigit() else row_id


def _cmmlu_files(rows: Mapping[str, Mapping[str, Sequence[McqRow]]]) -> dict[str, str]:
    files: dict[str, str] = {}
    for split in ("test", "dev"):
        records = []
        for subject in sorted(rows.get(split, {})):
            for r in rows[split][subject]:
                records.append(
                    {
                        "id": _int_or_str(r.row_id),
                        "question": r.question,
                        "choices": [f"({letter}) {c}" for letter, c in zip(LETTERS, r.choices, strict=True)],
                        "answer": f"({r.answer})",
                        "category": subject,
                    }
                )
        files[f"{split}.jsonl"] = _jsonl(records)
    readme = (
        "---\n"
        "configs:\n"
        "- config_name: default\n"
        "  data_files:\n"
        "  - split: test\n"
        "    path: test.jsonl\n"
        "  - split: dev\n"
        "    path: dev.jsonl\n"
        "---\n\n"
        "CMMLU questions converted by tunebot from the haonan-li CSV layout; `id` is the original row id.\n"
    )
    files["README.md"] = readme
    return files


def _ceval_files(rows: Mapping[str, Mapping[str, Sequence[McqRow]]]) -> dict[str, str]:
    files: dict[str, str] = {}
    subjects = sorted({s for split in rows.values() for s in split})
    info = ["dataset_info:"]
    configs = ["configs:"]
    for subject in subjects:
        info += [f"- config_name: {subject}", "  features:", "  - name: id", "    dtype: int32"]
        for col in ("question", "A", "B", "C", "D", "answer", "explanation"):
            info += [f"  - name: {col}", "    dtype: string"]
        configs += [f"- config_name: {subject}", "  data_files:"]
        for split in ("dev", "val"):
            subject_rows = rows.get(split, {}).get(subject)
            if subject_rows is None:
                continue
            configs += [f"  - split: {split}", f"    path: {split}/{subject}.jsonl"]
            files[f"{split}/{subject}.jsonl"] = _jsonl(
                {
                    "id": int(r.row_id),
                    "question": r.question,
                    **dict(zip(LETTERS, r.choices, strict=True)),
                    "answer": r.answer,
                    "explanation": r.explanation,
                }
                for r in subject_rows
            )
    files["README.md"] = (
        "---\n" + "\n".join(info + configs) + "\n---\n\n"
        "C-Eval questions converted by tunebot from the official zip layout; `id` is the original row id.\n"
    )
    return files


def load_rows(root: Path, benchmark: str) -> dict[str, dict[str, tuple[McqRow, ...]]]:
    """Every labelled row of a pack: split -> subject -> rows (the evaluated split and the few-shot split)."""
    if benchmark not in SUPPORTED:
        raise AgentError(f"benchmark {benchmark!r} has no local pack reader; supported: {', '.join(SUPPORTED)}")
    out: dict[str, dict[str, tuple[McqRow, ...]]] = {}
    for split in (EVAL_SPLIT[benchmark], FEWSHOT_SPLIT[benchmark]):
        out[split] = {s: read_rows(root, benchmark, split, s) for s in available_subjects(root, benchmark, split)}
    if benchmark == "ceval":
        for subject, rows in {**out["val"], **out["dev"]}.items():
            bad = [r.row_id for r in rows if not r.row_id.isdigit()]
            if bad:
                raise AgentError(f"ceval/{subject}: row ids must be integers, got {bad[:3]}")
    return out


def verify_pack_content(benchmark: str, root: Path, subjects: Sequence[str], expected: str | None) -> None:
    """Refuse a file pack (CMMLU, C-Eval under `root`) whose question files for `subjects` do not hash to the job's
    `content_hash` (commands.packs.pack_content_hash): the bot keyed the result on its own copy of those files, and
    the pack directory is shared by every job on the runner. No hash in the job: nothing to check."""
    if expected is None:
        return
    digests: dict[str, str | None] = {}
    for subject in subjects:
        for rel in subject_files(benchmark, subject):
            path = root / rel
            digests[rel] = sha256_file(path) if path.is_file() else None
    actual = pack_content_hash(benchmark, digests)
    if actual != expected:
        raise AgentError(f"benchmark {benchmark!r}: the question files under {root / benchmark} hash to {actual}, "
                         f"but the job was planned for {expected}; this runner's copy of the pack differs from the "
                         f"bot's (changed, or another release): refusing to score other questions under its key")


def _matches(target: Path, files: Mapping[str, str], digest: str) -> bool:
    """Whether a finished conversion holds exactly `files` (no more, no less, same text) for `digest`."""
    try:
        if (target / ".complete").read_text(encoding="utf-8").strip() != digest:
            return False
        present = {p.relative_to(target).as_posix() for p in target.rglob("*")
                   if p.is_file() or p.is_symlink()} - {".complete"}
        if present != set(files) or any((target / rel).is_symlink() for rel in present):
            return False
        return all((target / rel).read_text(encoding="utf-8") == text for rel, text in files.items())
    except (OSError, UnicodeDecodeError):
        return False


def _write_once(target: Path, files: Mapping[str, str], digest: str) -> None:
    """Write a converted pack into `target` unless an identical one is there. The converted packs live in the cache
    every job shares: one that differs from what its sources convert to was changed, and is set aside and rewritten
    rather than evaluated."""
    if (target / ".complete").is_file():
        if _matches(target, files, digest):
            return
        os.replace(target, target.with_name(f"{target.name}.changed-{os.getpid()}-{int(time.time())}"))
    cache = target.parent
    tmp = cache / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, text in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    (tmp / ".complete").write_text(digest + "\n", encoding="utf-8")
    try:
        tmp.rename(target)
    except OSError:
        # Another run converted the same content first: theirs is identical, use it.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / ".complete").is_file():
            raise


def convert(root: Path, benchmark: str, cache: Path) -> ConvertedPack:
    """Convert a pack into EvalScope's layout under `cache` (once per source content; reused afterwards)."""
    if not (root / benchmark).is_dir():
        raise AgentError(f"benchmark data for {benchmark!r} not found: {root / benchmark} does not exist")
    rows = load_rows(root, benchmark)
    digest = source_hash(root, benchmark)
    target = cache / f"{benchmark}-{digest[:16]}"
    _write_once(target, _cmmlu_files(rows) if benchmark == "cmmlu" else _ceval_files(rows), digest)
    return ConvertedPack(benchmark=benchmark, path=target, source=root / benchmark, sha256=digest, rows=rows)


def convert_repo_mcq(source: Path, subsets: Mapping[str, Sequence[McqRow]], files: Sequence[tuple[str, str]],
                     digest: str, cache: Path) -> ConvertedPack:
    """A repository's checked questions in EvalScope's `general_mcq` layout; `digest` is their files' content hash."""
    target = cache / f"general_mcq-v{CONVERTER_VERSION}-{digest[:16]}"
    out = {
        f"{subset}_val.jsonl": _jsonl(
            {"id": r.row_id, "question": r.question, **dict(zip(LETTERS_ALL, r.choices, strict=False)),
             "answer": r.answer}
            for r in rows
        )
        for subset, rows in subsets.items()
    }
    _write_once(target, out, digest)
    return ConvertedPack(benchmark="general_mcq", path=target, source=source, sha256=digest,
                         rows={"val": {k: tuple(v) for k, v in subsets.items()}}, files=tuple(files))


def check_subjects(pack: ConvertedPack, subjects: Sequence[str], few_shot: int) -> None:
    """Fail before any work starts when a requested subject has no data, or too few few-shot examples."""
    split = EVAL_SPLIT[pack.benchmark]
    missing = [s for s in subjects if s not in pack.rows.get(split, {})]
    if missing:
        expected = ", ".join(str(_source_file(pack.source.parent, pack.benchmark, split, s)) for s in missing)
        raise AgentError(f"{pack.benchmark}: no {split} data for subject(s) {', '.join(missing)} (expected {expected})")
    if few_shot > 0:
        fs = FEWSHOT_SPLIT[pack.benchmark]
        short = [s for s in subjects if len(pack.rows.get(fs, {}).get(s, ())) < few_shot]
        if short:
            raise AgentError(
                f"{pack.benchmark}: few_shot={few_shot} needs at least {few_shot} {fs} rows for {', '.join(short)}"
            )
