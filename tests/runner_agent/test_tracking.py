"""The tracker's run page found in the training output: each tracker's own line format (from its source), only the
configured tracker's host believed, and the line callback of a real child process feeding it."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from runner_agent.procs import Supervised, Watchdog, run_supervised
from runner_agent.tracking import TrackerWatch, tracker_hosts

BLUE_UNDERLINE = "\x1b[34m\x1b[4m{}\x1b[0m"  # click.style(link, fg="blue", underline=True), as wandb prints it
YELLOW = "\x1b[33m{}\x1b[0m"

WANDB_START = [
    "wandb: Tracking run with wandb version 0.31.0",
    "wandb: Run data is saved locally in /tmp/swift-out/wandb/run-20261202_051500-3kq9x2ab",
    f"wandb: Syncing run {YELLOW.format('swift-out')}",
    f"wandb: ⭐️ View project at {BLUE_UNDERLINE.format('https://wandb.ai/acme/tiny-sft')}",
    f"wandb: 🚀 View run at {BLUE_UNDERLINE.format('https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab')}",
]
WANDB_END = "wandb: 🚀 View run {} at: {}".format(YELLOW.format("swift-out"),
                                                BLUE_UNDERLINE.format("https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"))


def feed(watch: TrackerWatch, lines: list[str]) -> list[str]:
    return [url for line in lines if (url := watch.feed(line)) is not None]


def test_wandb_run_page_from_its_start_banner_and_footer() -> None:
    watch = TrackerWatch("wandb", {})
    assert feed(watch, WANDB_START) == ["https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"]  # not the project page
    assert watch.url == "https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"
    assert watch.feed(WANDB_END) is None  # reported once
    only_footer = TrackerWatch("wandb", {})
    assert feed(only_footer, [WANDB_END]) == ["https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"]
    # No emoji when the stream is not unicode-safe; a self-hosted server is its WANDB_BASE_URL's host.
    own = TrackerWatch("wandb", {"WANDB_BASE_URL": "https://wandb.acme.internal"})
    assert feed(own, ["wandb:  View run at https://wandb.acme.internal/acme/tiny-sft/runs/x1"]) == \
        ["https://wandb.acme.internal/acme/tiny-sft/runs/x1"]


def test_swanlab_run_page_also_when_rich_wraps_the_link_onto_the_next_line() -> None:
    url = "https://swanlab.cn/@acme/tiny-sft/runs/l0ng1d2345678901234"
    one_line = TrackerWatch("swanlab", {})
    assert feed(one_line, ["swanlab: Tracking run with swanlab version 0.10.3",
                           "swanlab: 📁 View project at https://swanlab.cn/@acme/tiny-sft",
                           f"swanlab: 🚀 View run swift-out at {url}"]) == [url]
    wrapped = TrackerWatch("swanlab", {})
    assert feed(wrapped, ["swanlab: 🚀 View run swift-out at", url]) == [url]
    private = TrackerWatch("swanlab", {"SWANLAB_API_HOST": "https://api.swanlab.acme.cn"})
    assert feed(private, ["swanlab: 🚀 View run r at https://swanlab.acme.cn/@a/p/runs/1"]) == \
        ["https://swanlab.acme.cn/@a/p/runs/1"]


def test_mlflow_run_page_is_printed_for_an_http_tracking_server_only() -> None:
    env = {"MLFLOW_TRACKING_URI": "http://mlflow.acme.internal:5000"}
    watch = TrackerWatch("mlflow", env)
    url = "http://mlflow.acme.internal:5000/#/experiments/3/runs/0f1e2d3c4b5a"
    assert feed(watch, [f"🏃 View run swift-out at: {url}",
                        "🧪 View experiment at: http://mlflow.acme.internal:5000/#/experiments/3"]) == [url]
    assert tracker_hosts("mlflow", {}) == frozenset()  # a local file store has no page: nothing is believed
    local = TrackerWatch("mlflow", {"MLFLOW_TRACKING_URI": "file:///tmp/mlruns"})
    assert feed(local, [f"🏃 View run r at: {url}"]) == []


def test_a_link_elsewhere_in_the_log_is_not_the_trackers() -> None:
    # ms-swift prints encoded training samples: a dataset row can hold any text, a tracker's line format included.
    watch = TrackerWatch("wandb", {})
    forged = ["[INFO:swift] [INPUT] <|im_start|>user", "wandb: 🚀 View run at https://wandb.ai.evil.example/x/y/runs/z",
              "wandb: 🚀 View run at https://evil.example/?u=https://wandb.ai/a/b/runs/c",
              "wandb: 🚀 View run at https://wandb.ai/a/b/runs/c\">click</a>",
              "wandb: 🚀 View run at https://wandb.ai/x/y/a/b/runs/c",  # not a run page's path
              "swanlab: 🚀 View run at https://swanlab.cn/@a/p/runs/1",  # another tracker's line
              "View run at https://wandb.ai/a/b/runs/c"]  # not wandb's own line
    assert feed(watch, forged) == [] and watch.url is None
    assert feed(watch, WANDB_START) == ["https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"]
    assert TrackerWatch("tensorboard", {}).feed(WANDB_START[-1]) is None


def test_the_training_process_line_callback_feeds_the_watch(tmp_path: Path) -> None:
    """A real child process writing the tracker's lines to stderr (as wandb does), through the same supervision
    and line callback `swift sft` runs under; no ms-swift involved (its own run is the real-agent e2e test)."""
    script = ("import sys\n"
              "for line in sys.argv[1:]:\n"
              "    print(line, file=sys.stderr, flush=True)\n")
    watch = TrackerWatch("wandb", {})
    seen: list[str] = []
    lock = threading.Lock()

    def on_line(line: str) -> None:
        with lock:
            seen.append(line)
        watch.feed(line)

    proc = Supervised([sys.executable, "-c", script, *WANDB_START], env={"PYTHONIOENCODING": "utf-8"},
                      log_path=tmp_path / "swift-sft.log", on_line=on_line)
    assert run_supervised(proc, Watchdog(None), what="training") == 0
    assert len(seen) == len(WANDB_START)
    assert watch.url == "https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"


@pytest.mark.parametrize("tool", ["wandb", "swanlab", "mlflow"])
def test_every_linked_tracker_has_hosts_by_default_or_from_its_settings(tool: str) -> None:
    env = {"MLFLOW_TRACKING_URI": "https://mlflow.acme.cn"} if tool == "mlflow" else {}
    assert tracker_hosts(tool, env)


def test_the_page_must_be_a_run_of_the_jobs_project_when_it_names_one() -> None:
    watch = TrackerWatch("wandb", {"WANDB_PROJECT": "tiny-sft"})
    assert feed(watch, ["wandb: 🚀 View run at https://wandb.ai/mallory/other-project/runs/x",
                        "wandb: 🚀 View run at https://wandb.ai/acme/tiny-sft",  # a project page, not a run
                        *WANDB_START]) == ["https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab"]
    swan = TrackerWatch("swanlab", {"SWANLAB_PROJECT": "tiny-sft"})
    assert feed(swan, ["swanlab: 🚀 View run r at https://swanlab.cn/@m/else/runs/1",
                       "swanlab: 🚀 View run r at https://swanlab.cn/@acme/tiny-sft/runs/2"]) == \
        ["https://swanlab.cn/@acme/tiny-sft/runs/2"]


def test_the_tracker_event_is_kept_when_the_bot_is_unreachable_and_said_on_the_terminal() -> None:
    from commands.events import make_event
    from runner_agent.sinks import HttpSink, describe

    sink = HttpSink("http://127.0.0.1:9/unreachable", "token", max_buffer=2)
    link = make_event("tb-1", 1, 0.0, "tracker", tool="wandb", url="https://wandb.ai/acme/tiny-sft/runs/3kq9x2ab")
    for event in [make_event("tb-1", 0, 0.0, "accepted", kind="train", model="tiny"), link,
                  *(make_event("tb-1", i, 0.0, "progress", step=i, total=9) for i in range(2, 6))]:
        sink._push(event)  # what the sink's thread does while the bot cannot be reached
    assert link in sink._buf  # superseded progress lines go first; the link is not superseded by anything
    assert describe(link).startswith("wandb run page: ")
