"""Compares two evaluation results question by question and decides whether a change is real (filled in by issue 5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegressionRule:
    """A repo's regression threshold for one benchmark ("*" for every benchmark), in accuracy points (0-100)."""

    benchmark: str = "*"
    min_gain: float | None = None
    max_loss: float | None = None
    require_significance: bool = False
