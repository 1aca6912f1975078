"""The agent's event log: with the run's token it is signed as a whole, so the bot can trust it when the final
callback was lost (and refuses it when a byte changed)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from commands.events import events_from_log, make_event
from commands.jobspec import SpecError
from runner_agent.sinks import JsonlSink


def _write(path: Path, token: str | None) -> None:
    sink = JsonlSink(path, token=token)
    sink.start()
    sink.submit(make_event("tb-1", 0, 1.0, "accepted", kind="eval", model="tiny"))
    sink.submit(make_event("tb-1", 1, 2.0, "finished", status="succeeded"))
    sink.close(5.0)


def test_the_log_is_signed_with_the_run_token_and_reads_back(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    _write(log, "run-token")
    signature = (tmp_path / "events.jsonl.sig").read_text()
    # The signature file holds sha256=<hex HMAC-SHA256 of the whole log under the run token>, computed here.
    assert signature == "sha256=" + hmac.new(b"run-token", log.read_bytes(), hashlib.sha256).hexdigest() + "\n"
    events = events_from_log("run-token", log.read_bytes(), signature, "tb-1")
    assert [(e.seq, e.type) for e in events] == [(0, "accepted"), (1, "finished")]
    with pytest.raises(SpecError, match="signature does not match"):
        events_from_log("another-token", log.read_bytes(), signature, "tb-1")
    with pytest.raises(SpecError, match="signature does not match"):
        events_from_log("run-token", log.read_bytes().replace(b"succeeded", b"cancelled"), signature, "tb-1")
    with pytest.raises(SpecError, match="an event of run tb-1, not tb-2"):
        events_from_log("run-token", log.read_bytes(), signature, "tb-2")


def test_without_a_token_there_is_no_signature(tmp_path: Path) -> None:
    _write(tmp_path / "events.jsonl", None)
    assert (tmp_path / "events.jsonl").is_file() and not (tmp_path / "events.jsonl.sig").exists()
