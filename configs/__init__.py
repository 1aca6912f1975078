"""Owns the shipped configuration files (presets, packs, registry, default policy) and loads them into a Catalog."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from commands.catalog import Catalog, build_catalog
from commands.packs import FILE_PACKS

CONFIG_DIR = Path(__file__).resolve().parent
# Real CMMLU / C-Eval samples shipped with the package (see benchmarks/data/SOURCES.md): the demo, the tests and a
# runner without `--bench-data` read their questions here.
BENCH_DATA_DIR = CONFIG_DIR / "benchmarks" / "data"


def read_text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _load(name: str) -> Any:
    return yaml.safe_load(read_text(name))


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog shipped with tunebot (cached: the files are part of the install and do not change)."""
    return build_catalog(_load("models.yaml"), _load("training.yaml"), _load("benchmarks.yaml"), _load("datasets.yaml"),
                         _load("toolchain.yaml"))


def with_pack_digests(catalog: Catalog, root: Path | None) -> Catalog:
    """The catalog with the sha256 of every question file of the file packs under `root` (the bot's copy of the
    packs): the planner then puts each benchmark's content hash in the job (commands/packs.py), and the runner
    refuses files that hash otherwise. None: no digests, jobs carry no pack hash."""
    if root is None or not root.is_dir():
        return catalog
    digests: dict[str, str] = {}
    for pack in FILE_PACKS:
        for path in sorted((root / pack).rglob("*.csv")):
            digests[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return replace(catalog, pack_digests=digests)
