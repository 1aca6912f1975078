"""Draws the training-loss curve as a Mermaid `xychart-beta` block, downsampled so the comment stays small."""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_POINTS = 50


def clean_points(points: Sequence[tuple[int, float]]) -> tuple[list[tuple[int, float]], int]:
    """Finite points sorted by step, one per step (the last logged wins), and how many non-finite ones were dropped."""
    by_step: dict[int, float] = {}
    dropped = 0
    for step, loss in points:
        if not math.isfinite(loss):
            dropped += 1
            continue
        by_step[int(step)] = float(loss)
    return sorted(by_step.items()), dropped


def downsample(points: Sequence[tuple[int, float]], max_points: int = MAX_POINTS) -> list[tuple[int, float]]:
    """At most `max_points` of `points` (sorted by step) chosen to keep the curve's shape.

    Largest-Triangle-Three-Buckets (S. Steinarsson, 2013): keeps the first and last points and, per bucket, the
    point that spans the largest triangle with its neighbours, so spikes and the final plateau survive, which an
    average or every-k-th pick would smooth away or miss.
    """
    data = list(points)
    if max_points < 3:
        raise ValueError("max_points must be at least 3")
    if len(data) <= max_points:
        return data
    sampled = [data[0]]
    every = (len(data) - 2) / (max_points - 2)
    a = 0
    for i in range(max_points - 2):
        start = math.floor(i * every) + 1
        end = math.floor((i + 1) * every) + 1
        nxt_start = end
        nxt_end = min(math.floor((i + 2) * every) + 1, len(data))
        nxt = data[nxt_start:nxt_end] or [data[-1]]
        avg_x = sum(p[0] for p in nxt) / len(nxt)
        avg_y = sum(p[1] for p in nxt) / len(nxt)
        ax, ay = data[a]
        best, best_area = start, -1.0
        for j in range(start, min(end, len(data) - 1)):
            x, y = data[j]
            area = abs((ax - avg_x) * (y - ay) - (ax - x) * (avg_y - ay))
            if area > best_area:
                best, best_area = j, area
        sampled.append(data[best])
        a = best
    sampled.append(data[-1])
    return sampled


def _num(value: float) -> str:
    text = f"{value:.4g}"
    if "e" in text:
        text = f"{value:.6f}".rstrip("0").rstrip(".") or "0"
    return text


def _axis(lo: float, hi: float) -> tuple[float, float]:
    pad = (abs(lo) * 0.1 or 0.5) if hi == lo else (hi - lo) * 0.05
    bottom = lo - pad
    if lo >= 0 > bottom:
        bottom = 0.0  # a loss is never negative: do not draw a negative axis just for padding
    return bottom, hi + pad


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'").replace("\n", " ") + '"'


def loss_chart(
    points: Sequence[tuple[int, float]],
    *,
    title: str = "Training loss",
    x_label: str = "step",
    y_label: str = "loss",
    max_points: int = MAX_POINTS,
) -> str | None:
    """A fenced ```mermaid xychart-beta block of loss by step, or None when fewer than two finite points exist."""
    cleaned, _ = clean_points(points)
    if len(cleaned) < 2:
        return None
    shown = downsample(cleaned, max_points)
    lo, hi = _axis(min(p[1] for p in shown), max(p[1] for p in shown))
    steps = ", ".join(str(p[0]) for p in shown)
    values = ", ".join(_num(p[1]) for p in shown)
    return "\n".join([
        "```mermaid",
        "xychart-beta",
        f"    title {_quote(title)}",
        f"    x-axis {_quote(x_label)} [{steps}]",
        f"    y-axis {_quote(y_label)} {_num(lo)} --> {_num(hi)}",
        f"    line [{values}]",
        "```",
    ])
