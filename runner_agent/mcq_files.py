"""A repository's own multiple-choice questions (`general_mcq`): which files are question sets, whether every row of
them is a well-formed question, and the content hash that identifies exactly what was evaluated.

The format (docs/general-mcq.md is the user's copy):
- question files lie directly in the job's `data_dir` (the policy's `datasets.dir` + `/mcq`, e.g. `data/mcq/`);
  each `<subset>.csv` or `<subset>.jsonl` is one subset, named by the file's stem;
- columns (CSV header / JSONL keys): `question`, `A`, `B`[, `C` … `J`], `answer`, optional `id` and `explanation`;
  names are case-insensitive, nothing else is allowed;
- each row has 2 to 10 options, consecutive from A (a row may leave trailing option cells empty); `answer` is one
  letter among that row's options;
- `id` (if given, on every row, unique in the file) or else the row's line number is the question's stable id.
Any bad row fails the whole run with the file and line; nothing is skipped but blank lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import AgentError
from .packs import McqRow

SUFFIXES = (".csv", ".jsonl")
# Files that look like question sets but are not read: refused by name rather than silently left out.
OTHER_DATA_SUFFIXES = (".json", ".tsv", ".parquet", ".xlsx", ".xls")
LETTERS = tuple("ABCDEFGHIJ")  # EvalScope's general_mcq reads options A..J
MIN_OPTIONS = 2
MAX_ID_CHARS = 128
# A subset name is a file stem: it becomes part of question ids and of EvalScope's file names, so no '/'.
SUBSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_FIELDS = ("question", "answer", "id", "explanation")
DOCS = "docs/general-mcq.md"


@dataclass(frozen=True)
class McqFile:
    """One question file of the repository."""

    subset: str
    path: Path  # on this machine
    rel: str  # relative to the repository root, as the user knows it (`data/mcq/arith.csv`)
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def git_blob_sha(data: bytes) -> str:
    """Git's object id of a file's bytes: what the bot names a question file by (commands.packs)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def content_hash(files: Iterable[McqFile]) -> str:
    """The identity of a question set: sha256 over its files' sorted repository paths and the sha256 of their bytes."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.rel):
        h.update(f"{f.rel}\0{f.sha256}\n".encode())
    return h.hexdigest()


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root)


def find_files(repo_dir: Path, data_dir: str) -> dict[str, McqFile]:
    """Every question file directly under `data_dir` of the checkout, by subset name (sorted)."""
    parts = PurePosixPath(data_dir).parts
    if not data_dir or data_dir.startswith("/") or ".." in parts or "\\" in data_dir:
        raise AgentError(f"general_mcq: data_dir {data_dir!r} must be a folder inside the repository")
    root = repo_dir.resolve()
    folder = root.joinpath(*parts)
    if not _inside(root, folder):
        raise AgentError(f"general_mcq: `{data_dir}/` points outside the repository")
    if not folder.is_dir():
        raise AgentError(
            f"general_mcq: `{data_dir}/` does not exist in this commit of the repository; put your questions in "
            f"`{data_dir}/<subset>.csv` or `.jsonl` (columns question,A,B,C,D,answer; see {DOCS})"
        )
    found: dict[str, McqFile] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        rel = f"{data_dir.rstrip('/')}/{path.name}"
        if suffix in OTHER_DATA_SUFFIXES:
            raise AgentError(f"general_mcq: `{rel}`: question files must be .csv or .jsonl (see {DOCS})")
        if suffix not in SUFFIXES or path.is_dir():
            continue  # a README or a sub-folder is not a question set
        if not _inside(root, path):
            raise AgentError(f"general_mcq: `{rel}` is a link to a file outside the repository")
        subset = path.name[: -len(suffix)]
        if not SUBSET_NAME.match(subset):
            raise AgentError(
                f"general_mcq: `{rel}`: the file name is the subset name and must use only letters, digits, "
                f"'.', '_', '+', '-' (starting with a letter or digit)"
            )
        if subset.lower() == "all":
            raise AgentError(f"general_mcq: `{rel}`: rename it, `all` means every file (`subsets=all`)")
        if subset in found:
            raise AgentError(f"general_mcq: `{found[subset].rel}` and `{rel}` are both subset {subset!r}; keep one")
        found[subset] = McqFile(subset, path, rel, path.read_bytes())
    if not found:
        raise AgentError(f"general_mcq: `{data_dir}/` holds no .csv or .jsonl question file (see {DOCS})")
    return found


def select(files: Mapping[str, McqFile], subsets: Sequence[str]) -> list[McqFile]:
    """The files of the requested subsets; `()` or `("all",)` is every file."""
    if not subsets or tuple(subsets) == ("all",):
        return [files[s] for s in sorted(files)]
    if len(set(subsets)) != len(subsets):
        raise AgentError("general_mcq: a subset is listed twice")
    missing = [s for s in subsets if s not in files]
    if missing:
        folder = next(iter(files.values())).rel.rsplit("/", 1)[0]
        raise AgentError(
            f"general_mcq: no question file for subset(s) {', '.join(missing)} in `{folder}/` "
            f"(expected `{folder}/{missing[0]}.csv` or `.jsonl`); subsets there: {', '.join(sorted(files))}"
        )
    return [files[s] for s in subsets]


# --- reading one file --------------------------------------------------------------------------------------------


def _decode(f: McqFile) -> str:
    try:
        return f.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = f.data[: exc.start].count(b"\n") + 1
        raise AgentError(f"`{f.rel}` line {line}: not UTF-8 ({exc.reason}); save the file as UTF-8") from None


def _column(name: str) -> str | None:
    """The canonical name of a column (case-insensitive), or None when it is not one of the format's."""
    key = name.strip()
    if key.lower() in _FIELDS:
        return key.lower()
    if len(key) == 1 and key.upper() in LETTERS:
        return key.upper()
    return None


def _check_columns(rel: str, where: str, names: Sequence[str]) -> list[str]:
    canon: list[str] = []
    for i, name in enumerate(names, start=1):
        c = _column(name)
        if c is None:
            problem = f"unknown column {name!r}" if name.strip() else f"column {i} has no name"
            raise AgentError(f"`{rel}` {where}: {problem}; allowed: question, A … J, answer, id, explanation")
        if c in canon:
            raise AgentError(f"`{rel}` {where}: column {c!r} appears twice")
        canon.append(c)
    return canon


def _check_letters(rel: str, where: str, letters: Sequence[str]) -> None:
    expected = list(LETTERS[: len(letters)])
    if sorted(letters) != expected:
        missing = next(x for x in expected if x not in letters)
        raise AgentError(
            f"`{rel}` {where}: option columns must run from A without gaps, got {', '.join(sorted(letters))} "
            f"(no {missing})"
        )


def _row(f: McqFile, line: int, fields: Mapping[str, Any], letters: Sequence[str], default_id: str) -> McqRow:
    where = f"`{f.rel}` line {line}"
    question = fields.get("question")
    if not isinstance(question, str):
        raise AgentError(f"{where}: the question must be text, got {type(question).__name__}")
    if not question.strip():
        raise AgentError(f"{where}: the question is empty")
    options: list[str] = []
    gap: str | None = None
    for letter in letters:
        value = fields.get(letter)
        if isinstance(value, bool) or not isinstance(value, (str, int, float, type(None))):
            raise AgentError(f"{where}: option {letter} must be text, got {type(value).__name__}")
        text = "" if value is None else str(value)
        if not text.strip():
            gap = gap or letter
            continue
        if gap is not None:
            raise AgentError(
                f"{where}: option {gap} is empty but {letter} is not; options must run from A without gaps"
            )
        options.append(text)
    if len(options) < MIN_OPTIONS:
        raise AgentError(f"{where}: needs at least {MIN_OPTIONS} options (A and B), has {len(options)}")
    raw_answer = fields.get("answer")
    answer = raw_answer.strip().upper() if isinstance(raw_answer, str) else ""
    allowed = LETTERS[: len(options)]
    if answer not in allowed:
        raise AgentError(
            f"{where}: answer {raw_answer!r} must be one letter among this row's options {', '.join(allowed)} "
            f"(several correct answers are not supported)"
        )
    row_id = default_id
    if "id" in fields:
        raw_id = fields["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise AgentError(f"{where}: id must be text or a whole number, got {type(raw_id).__name__}")
        row_id = str(raw_id).strip()
        if not row_id:
            raise AgentError(f"{where}: the id is empty (give every row an id, or none)")
        if len(row_id) > MAX_ID_CHARS or any(not c.isprintable() for c in row_id):
            raise AgentError(f"{where}: id {row_id[:40]!r} must be printable text of at most {MAX_ID_CHARS} characters")
    explanation = fields.get("explanation")
    if explanation is not None and not isinstance(explanation, str):
        raise AgentError(f"{where}: explanation must be text, got {type(explanation).__name__}")
    return McqRow(subset=f.subset, row_id=row_id, question=question, choices=tuple(options), answer=answer,
                  explanation=explanation or "")


def _csv_records(f: McqFile, text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each CSV record, the header included; a quoted field may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for rec in reader:
            yield start, rec
            start = reader.line_num + 1
    except csv.Error as exc:
        raise AgentError(f"`{f.rel}` line {reader.line_num}: not valid CSV ({exc})") from None


def _read_csv(f: McqFile) -> list[tuple[int, McqRow]]:
    records = _csv_records(f, _decode(f))
    first = next(records, None)
    if first is None:
        raise AgentError(f"`{f.rel}` is empty (expected a header line: question,A,B,C,D,answer)")
    columns = _check_columns(f.rel, "line 1 (header)", first[1])
    for required in ("question", "A", "B", "answer"):
        if required not in columns:
            raise AgentError(f"`{f.rel}` line 1 (header): no {required!r} column; expected question,A,B,…,answer")
    letters = [c for c in columns if c in LETTERS]
    _check_letters(f.rel, "line 1 (header)", letters)
    letters.sort()
    rows: list[tuple[int, McqRow]] = []
    for line, rec in records:
        if all(not cell.strip() for cell in rec):
            continue  # a blank line (or a row of empty cells, as spreadsheets export them) holds no question
        if len(rec) != len(columns):
            raise AgentError(f"`{f.rel}` line {line}: {len(rec)} fields, but the header has {len(columns)}")
        rows.append((line, _row(f, line, dict(zip(columns, rec, strict=True)), letters, str(line))))
    return rows


def _read_jsonl(f: McqFile) -> list[tuple[int, McqRow]]:
    rows: list[tuple[int, McqRow]] = []
    with_id: int | None = None  # line of the first row with an id / without one
    without_id: int | None = None
    for line, text in enumerate(_decode(f).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AgentError(f"`{f.rel}` line {line}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise AgentError(f"`{f.rel}` line {line}: expected a JSON object, got {type(obj).__name__}")
        columns = _check_columns(f.rel, f"line {line}", list(obj))
        fields = dict(zip(columns, obj.values(), strict=True))
        for required in ("question", "answer"):
            if required not in fields:
                raise AgentError(f"`{f.rel}` line {line}: no {required!r}")
        letters = [c for c in columns if c in LETTERS]
        _check_letters(f.rel, f"line {line}", letters)
        letters.sort()
        if "id" in fields:
            with_id = with_id or line
        else:
            without_id = without_id or line
        if with_id and without_id:
            raise AgentError(f"`{f.rel}` line {max(with_id, without_id)}: line {with_id} has an id and line "
                             f"{without_id} has none; give every row an id, or none")
        rows.append((line, _row(f, line, fields, letters, str(line))))
    return rows


def read_file(f: McqFile) -> tuple[McqRow, ...]:
    """Every question of one file, in file order, checked; an AgentError names the file and line of a bad row."""
    rows = _read_csv(f) if f.path.suffix.lower() == ".csv" else _read_jsonl(f)
    if not rows:
        raise AgentError(f"`{f.rel}` holds no questions")
    seen: dict[str, int] = {}
    for line, r in rows:
        if r.row_id in seen:
            raise AgentError(f"`{f.rel}` line {line}: id {r.row_id!r} is already used on line {seen[r.row_id]}; "
                             "ids must be unique in a file")
        seen[r.row_id] = line
    return tuple(r for _, r in rows)
