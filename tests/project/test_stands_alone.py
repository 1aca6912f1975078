"""The repository stands alone: nothing tracked reaches outside the clone, and the shipped data is package data."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib

from tests.paths import BENCHMARKS, FIXTURES, REPO

# A folder beside the checkout that users never have: any path that climbs out to it, or names its layout.
_OUTSIDE = re.compile(r"\.\./shared|shared/(reference|bench|notes|hooks)|[\"']shared[\"']")


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_tracked_file_refers_to_a_folder_outside_the_repository() -> None:
    offenders = []
    tracked = _tracked()
    assert {"pyproject.toml", "Makefile", "tests/paths.py"} <= set(tracked)  # the scan below has files to read
    for rel in tracked:
        path = REPO / rel
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                      if _OUTSIDE.search(line)]
    assert offenders == [], "files that read outside the clone:\n" + "\n".join(offenders)


def test_the_benchmark_samples_are_package_data_with_their_sources() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["configs"]
    files = [p.relative_to(REPO / "configs").as_posix() for p in BENCHMARKS.rglob("*") if p.is_file()]
    assert any(f.endswith(".csv") for f in files)
    unshipped = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) and f.count("/") == pat.count("/")
                                             for pat in patterns)]
    assert unshipped == [], f"not installed with the package: {unshipped}"
    sources = (BENCHMARKS / "SOURCES.md").read_text(encoding="utf-8")
    assert "CC BY-NC 4.0" in sources and "CC BY-NC-SA 4.0" in sources
    for f in files:
        if f.endswith(".csv"):
            assert f"`{f.removeprefix('benchmarks/data/')}`" in sources, f"{f} has no line in SOURCES.md"


def test_every_fixture_file_is_listed_in_its_sources() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    fixtures = [p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*")
                if p.is_file() and p.name != "SOURCES.md"]
    assert len(fixtures) > 40  # the recorded GitHub, Slack and DingTalk payloads
    missing = [f for f in fixtures if f not in sources]
    assert missing == [], f"fixtures without a source line: {missing}"
