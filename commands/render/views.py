"""Plain view models the renderers draw from: what the bot knows about a run, a link, a leaderboard entry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# "dispatched": the workflow was dispatched and no runner has reported yet.
RunState = Literal["queued", "dispatched", "running", "succeeded", "failed", "cancelled"]
RUN_STATES: tuple[RunState, ...] = ("queued", "dispatched", "running", "succeeded", "failed", "cancelled")
WAITING_STATES: tuple[RunState, ...] = ("queued", "dispatched")
FINAL_STATES: tuple[RunState, ...] = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class ScoreView:
    """One benchmark score: accuracy as a fraction in [0, 1] (what EvalScope and `BenchmarkResult.score` report)."""

    score: float
    n: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"score must be a fraction between 0 and 1, got {self.score!r}")
        if self.n < 0:
            raise ValueError(f"n must not be negative, got {self.n}")

    @property
    def points(self) -> float:
        return 100.0 * self.score


@dataclass(frozen=True)
class ProgressView:
    """The latest `progress` event of a run (fields as in `commands.events`)."""

    step: int
    total: int
    loss: float | None = None
    learning_rate: float | None = None
    eta_s: float | None = None
    samples_per_s: float | None = None
    epoch: float | None = None
    phase: str | None = None


@dataclass(frozen=True)
class RunView:
    """Everything a run card, status row or chat message shows about one run; the bot builds it from its store.

    Timestamps are seconds since the epoch; `updated_at` is the bot's "now" when it renders (used for the
    elapsed time of a running job), never read from a clock here.
    """

    run_id: str
    command: str
    actor: str
    repo: str
    sha: str
    model: str
    state: RunState
    kind: str = ""  # "train", "eval" or "train+eval"
    tuner: str | None = None
    hyper: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    phase: str | None = None
    progress: ProgressView | None = None
    scores: Mapping[str, ScoreView] = field(default_factory=dict)
    baseline: Mapping[str, ScoreView] = field(default_factory=dict)
    baseline_label: str = ""
    loss: tuple[tuple[int, float], ...] = ()
    actions_url: str | None = None
    artifacts: tuple[Link, ...] = ()
    # Where the training curves are: "tensorboard" (event files in the run's artifact), "wandb", "swanlab" or
    # "mlflow" (ms-swift's --report_to; None for a run that does not train), and that tracker's page of this run.
    tracker: str | None = None
    tracker_url: str | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    pr_number: int | None = None
    # A served evaluation (job.eval_backend) whose server could not start: the agent scored natively.
    eval_fallback: bool = False

    def __post_init__(self) -> None:
        if self.state not in RUN_STATES:
            raise ValueError(f"unknown run state {self.state!r}; expected one of {', '.join(RUN_STATES)}")

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def is_waiting(self) -> bool:
        return self.state in WAITING_STATES


@dataclass(frozen=True)
class ReportLinks:
    """Where a comparison report points: the Actions run, the artifacts, and the two runs compared."""

    actions_url: str | None = None
    artifacts_url: str | None = None
    base_url: str | None = None
    new_url: str | None = None


@dataclass(frozen=True)
class LeaderboardEntry:
    """One stored result: a model (optionally with an adapter from a run) on one benchmark."""

    benchmark: str
    model: str
    score: float  # fraction in [0, 1]
    n: int
    date: float  # epoch seconds when it was evaluated
    run_id: str = ""
    adapter: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"score must be a fraction between 0 and 1, got {self.score!r}")
        if self.n < 0:
            raise ValueError(f"n must not be negative, got {self.n}")
