"""Owns the shipped configuration files (presets, packs, registry, default policy) and loads them into a Catalog."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from commands.catalog import Catalog, build_catalog

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
