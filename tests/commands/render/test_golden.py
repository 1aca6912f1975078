"""Every rendered message, in both languages, compared with the reviewed text in tests/golden/.

The test only ever compares. After an intended change to a message, regenerate the files with `make golden`
(`python -m tests.commands.render.update_golden`), review the diff like code, and commit it with the change.
"""

from __future__ import annotations

import pytest

from .golden_cases import CASES, GOLDEN, LANGS, golden_path, render_case

REGENERATE = "if the change is intended, run `make golden` and review the diff"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, lang: str) -> None:
    path = golden_path(name, lang)
    assert path.is_file(), f"{path.name} is missing; {REGENERATE}"
    assert render_case(name, lang) == path.read_text(encoding="utf-8"), f"{path.name} changed; {REGENERATE}"


def test_no_stale_golden_files() -> None:
    expected = {golden_path(name, lang).name for name in CASES for lang in LANGS}
    present = {p.name for p in GOLDEN.iterdir() if p.is_file()}
    assert present == expected, f"golden files without a test: {sorted(present - expected)}"


def test_languages_really_differ() -> None:
    """A zh golden that equals its en twin would mean a phrase escaped translation."""
    assert [name for name in CASES if render_case(name, "en") == render_case(name, "zh")] == []
