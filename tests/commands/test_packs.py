"""The pack identity rule the bot and the runner share."""

from __future__ import annotations

import hashlib

import pytest

from commands.packs import pack_content_hash, subject_files
from tests.paths import BENCHMARKS


def test_subject_files_follow_each_packs_layout() -> None:
    assert subject_files("cmmlu", "anatomy") == ("cmmlu/dev/anatomy.csv", "cmmlu/test/anatomy.csv")
    assert subject_files("ceval", "logic") == ("ceval/dev/logic_dev.csv", "ceval/val/logic_val.csv")
    for path in subject_files("ceval", "logic") + subject_files("cmmlu", "anatomy"):
        assert (BENCHMARKS / path).is_file(), path  # the shipped samples use exactly this layout
    with pytest.raises(ValueError, match="not a file pack"):
        subject_files("general_mcq", "x")


def test_the_hash_changes_with_any_byte_and_with_a_missing_file() -> None:
    files = {p: hashlib.sha256((BENCHMARKS / p).read_bytes()).hexdigest() for p in subject_files("ceval", "logic")}
    same = pack_content_hash("ceval", dict(reversed(list(files.items()))))
    assert pack_content_hash("ceval", files) == same and len(same) == 64
    changed = dict(files, **{"ceval/val/logic_val.csv": hashlib.sha256(b"other").hexdigest()})
    assert pack_content_hash("ceval", changed) != same
    assert pack_content_hash("ceval", dict(files, **{"ceval/dev/logic_dev.csv": None})) != same
    assert pack_content_hash("cmmlu", files) != same
