"""Decides what `/compare <ref>` compares a PR's trained recipe with: a stored result of the same recipe at the ref's
commit, nothing (the recipes are equal), a backfill (train and evaluate the recipe there), or an error with a reason.

`/compare` forms (`parse_target`): a ref (branch, tag, full or short SHA; default the PR's base branch), `run:<id>`
(or a bare run id the store knows), or `base-model` (the untuned base model on the same questions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .plan import PlannedJob
from .recipe import Change

BASE_MODEL = "base-model"


@dataclass(frozen=True)
class Target:
    """What the user asked to compare against: `kind` is "ref", "run" or "base-model"."""

    kind: str
    value: str


def parse_target(text: str | None, base_ref: str, known_run: bool = False) -> Target:
    """`None` → the PR's base branch; `run:<id>` or a run id the store knows (`known_run`) → that run;
    `base-model` → the untuned model; anything else is a ref the GitHub API resolves."""
    if text is None or not text.strip():
        return Target("ref", base_ref)
    text = text.strip()
    if text.lower() in (BASE_MODEL, "base_model", "basemodel"):
        return Target("base-model", BASE_MODEL)
    if text.lower().startswith("run:"):
        return Target("run", text[4:])
    if known_run:
        return Target("run", text)
    return Target("ref", text)


@dataclass(frozen=True)
class ResolvedRef:
    """A ref as the user wrote it and the commit it named when asked."""

    name: str
    sha: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.sha[:7]}" if self.name.lower() != self.sha.lower() else self.sha[:7]


@dataclass(frozen=True)
class UseStored:
    """The same recipe at the ref's commit was trained and evaluated before: compare with that (0 GPU-seconds)."""

    run_id: str
    ref: ResolvedRef
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class SameRecipe:
    """The PR's recipe equals the ref's (it changed no data and no setting): there is no delta to measure."""

    ref: ResolvedRef


@dataclass(frozen=True)
class Backfill:
    """Nothing stored for the ref's recipe yet: train and evaluate it there, then compare."""

    planned: PlannedJob
    ref: ResolvedRef
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class NoBaseline:
    """No baseline can be had; `reason` tells the user why and what to do instead."""

    reason: str


Baseline = UseStored | SameRecipe | Backfill | NoBaseline


def decide_baseline(head_key: str, ref: ResolvedRef | None, planned: PlannedJob | str,
                    stored: Mapping[str, str], changes: tuple[Change, ...] = ()) -> Baseline:
    """The one decision. `head_key`: the PR's training key; `ref`: the resolved ref (None: it named no commit);
    `planned`: the baseline job at that commit, or why it cannot be planned; `stored`: result key -> the run that
    stored it, for the keys found in the store; `changes`: the recipe diff from the ref's side to the PR's."""
    if ref is None:
        return NoBaseline(planned if isinstance(planned, str) else "that ref names no commit")
    if isinstance(planned, str):
        return NoBaseline(planned)
    if planned.result_key == head_key:
        return SameRecipe(ref)
    keys = list(planned.benchmark_keys.values())
    if keys and all(k in stored for k in keys):
        return UseStored(stored[keys[0]], ref, changes)
    return Backfill(planned, ref, changes)
