"""Draws the loss curve PNG (matplotlib, Agg) in a helper process that the agent starts early and feeds at the end.

`python -m runner_agent.plot OUT.png` imports matplotlib straight away (about a second, overlapping training), then
reads `{"title": ..., "points": [[step, loss], ...]}` from stdin and writes the PNG atomically.
"""

from __future__ import annotations

import json
import os
import sys


def render(path: str, title: str, points: list[list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if points:
        steps = [p[0] for p in points]
        losses = [p[1] for p in points]
        ax.plot(steps, losses, marker="o" if len(points) < 40 else None, linewidth=1.5, color="#1f77b4")
    else:
        ax.text(0.5, 0.5, "no loss was logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m runner_agent.plot OUT.png < data.json", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    raw = sys.stdin.read()
    if not raw.strip():
        return 3  # the caller changed its mind (the run failed or was cancelled)
    data = json.loads(raw)
    render(args[0], str(data.get("title", "")), [list(p) for p in data.get("points", [])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
