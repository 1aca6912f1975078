"""Shared helpers for the deploy checks: where the artifacts are, how to load them, and how to run the linters."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import REPO

DEPLOY = REPO / "deploy"
WORKFLOWS = DEPLOY / "github"
RUN_WORKFLOW = WORKFLOWS / "tunebot-run.yml"
LEADERBOARD_WORKFLOW = WORKFLOWS / "tunebot-leaderboard.yml"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of a linter the `dev` extra installs; a clear failure (not a skip) when it is missing."""
    candidate = BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is not installed: run `pip install -e '.[dev]'` (or `make install`)")


def run_tool(args: list[str], *, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a linter with the venv's bin first on PATH, so actionlint finds the pinned shellcheck."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


class _WorkflowLoader(yaml.SafeLoader):
    """YAML 1.2 booleans only: YAML 1.1 would read the workflow key `on:` as True."""


_WorkflowLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_WorkflowLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(source: Path | str) -> Any:
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return yaml.load(text, Loader=_WorkflowLoader)  # a SafeLoader subclass: safe


def load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_WorkflowLoader) if doc]


def steps_of(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(workflow["jobs"][job]["steps"])


def step_named(workflow: dict[str, Any], job: str, name: str) -> dict[str, Any]:
    for step in steps_of(workflow, job):
        if step.get("name") == name:
            return step
    raise AssertionError(f"job {job!r} has no step named {name!r}")


# --- Dockerfiles ------------------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            base = parts[0]
            for name, default in global_args.items():
                base = base.replace("${" + name + "}", default).replace("$" + name, default)
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=alias))
        elif not stages and keyword == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default.strip('"')
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return global_args, stages
