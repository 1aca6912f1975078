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


def pack_content_hash(benchmark: str, file_digests: Mapping[str, str | None]) -> str:
    """The identity of the questions in these files: each relative path with the sha256 of its bytes (None for a
    file that does not exist, which is part of the identity too)."""
    return content_hash({"v": PACK_HASH_VERSION, "benchmark": benchmark,
                         "files": {path: file_digests[path] for path in sorted(file_digests)}})
