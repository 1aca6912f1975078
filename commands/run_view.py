"""Assembles what a run card, status row or chat message shows (a RunView) from a run's stored facts and events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from .events import Event
from .render.views import ProgressView, RunState, RunView, ScoreView

# The hyper-parameters a card names (the full set is in the job spec, linked from the card).
SHOWN_HYPER = ("lora_rank", "learning_rate", "max_steps", "num_train_epochs")


class RunFacts(Protocol):
    """The stored facts of a run that its view needs (the bot's `Run` record has them all)."""

    @property
    def run_id(self) -> str: ...
    @property
    def repo(self) -> str: ...
    @property
    def number(self) -> int | None: ...
    @property
    def head_sha(self) -> str | None: ...
    @property
    def actor(self) -> str: ...
    @property
    def command(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def job_spec(self) -> Mapping[str, Any] | None: ...
    @property
    def state(self) -> RunState: ...
    @property
    def phase(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def workflow_url(self) -> str | None: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def finished(self) -> bool: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime | None: ...


def _stamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def build_run_view(run: RunFacts, events: Sequence[Event], *, baseline: Mapping[str, ScoreView] | None = None,
                   baseline_label: str = "") -> RunView:
    """The view of `run`, from the events already applied to it (a later event waiting for a gap is not shown)."""
    spec = run.job_spec or {}
    hyper = spec.get("hyper") or {}
    shown = {k: hyper[k] for k in SHOWN_HYPER if hyper.get(k) is not None} if run.kind != "eval" else {}
    loss: list[tuple[int, float]] = []
    scores: dict[str, ScoreView] = {}
    progress: ProgressView | None = None
    fallback = False
    tracking = spec.get("tracking")
    tracker = None
    if run.kind in ("train", "train+eval"):
        tracker = str(tracking.get("tool") or "tensorboard") if isinstance(tracking, Mapping) else "tensorboard"
    tracker_url: str | None = None
    for ev in events:
        if ev.seq > run.last_seq:
            continue
        d = ev.data
        if ev.type == "progress":
            if d.get("loss") is not None and d.get("phase", "train") == "train":
                loss.append((int(d["step"]), float(d["loss"])))
            progress = ProgressView(step=int(d["step"]), total=int(d["total"]), loss=d.get("loss"),
                                    learning_rate=d.get("learning_rate"), eta_s=d.get("eta_s"),
                                    samples_per_s=d.get("samples_per_s"), epoch=d.get("epoch"),
                                    phase=d.get("phase"))
        elif ev.type == "eval_result" and d.get("model") != "base":  # the base model's score is the baseline's
            scores[str(d["benchmark"])] = ScoreView(score=float(d["score"]), n=int(d["n"]))
        elif ev.type == "tracker" and tracker_url is None and d["tool"] == tracker:
            tracker_url = str(d["url"])
        if ev.type == "eval_result" and spec.get("eval_backend") == "served" and d.get("backend") == "native":
            fallback = True
    return RunView(
        run_id=run.run_id, command=run.command, actor=run.actor, repo=run.repo, sha=run.head_sha or "",
        model=run.model or "", state=run.state, kind=run.kind, tuner=spec.get("tuner"), hyper=shown,
        phase=run.phase, progress=progress if not run.finished else None, scores=scores,
        baseline=dict(baseline or {}), baseline_label=baseline_label, loss=tuple(loss),
        actions_url=run.workflow_url, tracker=tracker, tracker_url=tracker_url, reason=run.reason,
        started_at=_stamp(run.started_at), finished_at=_stamp(run.finished_at), updated_at=_stamp(run.updated_at),
        pr_number=run.number, eval_fallback=fallback)
