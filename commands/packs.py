"""Which files hold a benchmark pack's questions, and the content hash that identifies a chosen set of them.

Shared by the bot (which keys results on the hash of its own copy of the packs) and the runner (which refuses to
evaluate files that hash differently), so a stored result always names the exact questions it answered.
"""

from __future__ import annotations

from collections.abc import Mapping

from .jobspec import content_hash

# The split each pack evaluates on, and its few-shot (and tiny-mcq training) pool.
EVAL_SPLIT = {"cmmlu": "test", "ceval": "val", "general_mcq": "val"}
FEWSHOT_SPLIT = {"cmmlu": "dev", "ceval": "dev", "general_mcq": "dev"}
FILE_PACKS = ("cmmlu", "ceval")  # packs kept as files beside the runner; general_mcq lives in the repository
PACK_HASH_VERSION = 1


def subject_files(benchmark: str, subject: str) -> tuple[str, ...]:
    """The files (relative to the pack root, `/`-separated) one subject of a file pack is read from."""
    if benchmark not in FILE_PACKS:
        raise ValueError(f"{benchmark} is not a file pack")
    out = []
    for split in (FEWSHOT_SPLIT[benchmark], EVAL_SPLIT[benchmark]):
        name = f"{subject}.csv" if benchmark == "cmmlu" else f"{subject}_{split}.csv"
        out.append(f"{benchmark}/{split}/{name}")
    return tuple(out)


# A repository's own question files (general_mcq): the files directly in its folder with these suffixes.
REPO_QUESTION_SUFFIXES = (".csv", ".jsonl")


def repo_question_files(listing: Mapping[str, str], subsets: tuple[str, ...]) -> dict[str, str] | None:
    """Of a repository folder's files (`listing`: repository path -> git blob SHA, the folder's direct entries),
    the question files a benchmark with these subsets reads; None when a named subset has no file (the runner then
    says so, with the folder's contents)."""
    files = {path: blob for path, blob in listing.items()
             if any(path.lower().endswith(s) for s in REPO_QUESTION_SUFFIXES)}
    if not subsets or subsets == ("all",):
        return files
    chosen = {p: b for p, b in files.items() if p.rsplit("/", 1)[-1].rsplit(".", 1)[0] in subsets}
    found = {p.rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in chosen}
    return chosen if found == set(subsets) else None


def repo_questions_hash(blobs: Mapping[str, str]) -> str:
    """The identity of a repository's question files: each repository path with its git blob SHA (content, not the
    commit it was read at: equal files at two commits, equal keys)."""
    return content_hash({"v": PACK_HASH_VERSION, "benchmark": "general_mcq",
                         "blobs": {path: blobs[path].lower() for path in sorted(blobs)}})


def pack_content_hash(benchmark: str, file_digests: Mapping[str, str | None]) -> str:
    """The identity of the questions in these files: each relative path with the sha256 of its bytes (None for a
    file that does not exist, which is part of the identity too)."""
    return content_hash({"v": PACK_HASH_VERSION, "benchmark": benchmark,
                         "files": {path: file_digests[path] for path in sorted(file_digests)}})
