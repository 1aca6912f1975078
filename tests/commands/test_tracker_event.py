"""The `tracker` event (the tracker's run page, from the agent) and what the run view makes of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from commands.events import event_from_dict, make_event
from commands.jobspec import SpecError
from commands.render import render_run_card
from commands.run_view import build_run_view

URL = "https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"


@dataclass
class FakeRun:
    """The stored facts a run view reads (the bot's Run record has the same properties)."""

    run_id: str = "tb-000000000001"
    repo: str = "acme/llm"
    number: int | None = 7
    head_sha: str | None = "a" * 40
    actor: str = "alice"
    command: str = "/train tiny"
    kind: str = "train+eval"
    model: str | None = "tiny"
    job_spec: Mapping[str, Any] | None = field(default_factory=lambda: {"tracking": {"tool": "wandb"}})
    state: Any = "succeeded"
    phase: str | None = None
    reason: str | None = None
    workflow_url: str | None = "https://github.com/acme/llm/actions/runs/1"
    last_seq: int = 3
    finished: bool = True
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None


def events(*extra: tuple[str, dict[str, Any]]) -> list[Any]:
    out = [make_event("tb-000000000001", 0, 0.0, "accepted", kind="train+eval", model="tiny"),
           make_event("tb-000000000001", 1, 1.0, "progress", step=1, total=2, loss=2.5)]
    for i, (etype, data) in enumerate(extra, start=2):
        out.append(make_event("tb-000000000001", i, float(i), etype, **data))
    return out


def test_the_tracker_event_carries_a_safe_link_of_a_known_tracker() -> None:
    ev = make_event("tb-1", 3, 0.0, "tracker", tool="wandb", url=URL)
    assert event_from_dict(ev.to_dict()) == ev
    base = {"v": 1, "run_id": "tb-1", "seq": 3, "ts": 0.0, "type": "tracker"}
    for data, message in [({"tool": "wandb"}, "missing field 'url'"),
                          ({"tool": "tensorboard", "url": URL}, "unknown tool 'tensorboard'"),
                          ({"tool": "wandb", "url": "javascript:alert(1)"}, "http"),
                          ({"tool": "wandb", "url": "https://wandb.ai/a) [x](https://evil"}, "http"),
                          ({"tool": "wandb", "url": "https://wandb.ai/" + "a" * 500}, "at most 500"),
                          ({"tool": "wandb", "url": URL, "extra": 1}, "unknown field")]:
        with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
            event_from_dict({**base, **data})


def test_the_run_view_links_the_configured_trackers_page() -> None:
    view = build_run_view(FakeRun(), events(("tracker", {"tool": "wandb", "url": URL})))
    assert (view.tracker, view.tracker_url) == ("wandb", URL)
    card = render_run_card(view)
    assert f"[Weights & Biases run page]({URL})" in card
    # Another tracker's link (the job did not configure it) or one not yet applied (past last_seq) is not shown.
    other = build_run_view(FakeRun(), events(("tracker", {"tool": "mlflow", "url": "https://mlflow.acme/#/x"})))
    assert other.tracker_url is None and "mlflow.acme" not in render_run_card(other)
    later = build_run_view(FakeRun(last_seq=1), events(("tracker", {"tool": "wandb", "url": URL})))
    assert later.tracker_url is None


def test_tensorboard_by_default_and_nothing_for_a_run_that_does_not_train() -> None:
    view = build_run_view(FakeRun(job_spec={}), events())
    assert view.tracker == "tensorboard" and view.tracker_url is None
    assert "TensorBoard event files: `tensorboard/` in the run's artifact [`tunebot-tb-000000000001`]" \
        in render_run_card(view)
    assert "TensorBoard 事件文件" in render_run_card(view, "zh")
    missing = render_run_card(build_run_view(FakeRun(), events()))
    assert "Weights & Biases: no run page appeared in the training log" in missing
    evaluation = build_run_view(FakeRun(kind="eval", job_spec={}), events())
    assert evaluation.tracker is None and "TensorBoard" not in render_run_card(evaluation)
