"""Owns the service's counters and latency histograms and renders them in the Prometheus text format."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _fmt_labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = list(labels) + list(extra)
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counters, gauges and histograms keyed by name and a small, bounded label set (never user input)."""

    def __init__(self, prefix: str = "tunebot") -> None:
        self.prefix = prefix
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._hist: dict[str, dict[Labels, list[float]]] = defaultdict(dict)  # bucket counts + [sum, count]

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)

    def inc(self, name: str, value: float = 1.0, labels: dict[str, str] | None = None) -> None:
        series = self._counters[name]
        key = _labels(labels)
        series[key] = series.get(key, 0.0) + value

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._gauges[name][_labels(labels)] = value

    def observe(self, name: str, seconds: float, labels: dict[str, str] | None = None) -> None:
        series = self._hist[name]
        key = _labels(labels)
        row = series.get(key)
        if row is None:
            row = series[key] = [0.0] * (len(_BUCKETS) + 2)
        idx = bisect.bisect_left(_BUCKETS, seconds)
        if idx < len(_BUCKETS):
            row[idx] += 1
        row[-2] += seconds
        row[-1] += 1

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        key = _labels(labels)
        if name in self._counters and key in self._counters[name]:
            return self._counters[name][key]
        return self._gauges.get(name, {}).get(key, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        p = self.prefix

        def head(name: str, default_kind: str) -> None:
            kind, text = self._help.get(name, (default_kind, name.replace("_", " ")))
            lines.append(f"# HELP {p}_{name} {text}")
            lines.append(f"# TYPE {p}_{name} {kind}")

        for name in sorted(self._counters):
            head(name, "counter")
            for labels, v in sorted(self._counters[name].items()):
                lines.append(f"{p}_{name}{_fmt_labels(labels)} {v:g}")
        for name in sorted(self._gauges):
            head(name, "gauge")
            for labels, v in sorted(self._gauges[name].items()):
                lines.append(f"{p}_{name}{_fmt_labels(labels)} {v:g}")
        for name in sorted(self._hist):
            head(name, "histogram")
            for labels, row in sorted(self._hist[name].items()):
                running = 0.0
                for bound, count in zip(_BUCKETS, row, strict=False):
                    running += count
                    lines.append(f"{p}_{name}_bucket{_fmt_labels(labels, [('le', f'{bound:g}')])} {running:g}")
                lines.append(f"{p}_{name}_bucket{_fmt_labels(labels, [('le', '+Inf')])} {row[-1]:g}")
                lines.append(f"{p}_{name}_sum{_fmt_labels(labels)} {row[-2]:.6f}")
                lines.append(f"{p}_{name}_count{_fmt_labels(labels)} {row[-1]:g}")
        return "\n".join(lines) + "\n"
