"""Checkpoint upload and resume plumbing of the agent (the e2e in tests/local drives it with real ms-swift)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from commands.jobspec import Callback
from runner_agent import checkpoints
from runner_agent.errors import AgentError
from runner_agent.training import sft_argv


def _ckpt(root: Path, step: int, *, state_step: int | None = None) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (path / "optimizer.pt").write_bytes(b"o" * 50)
    if state_step is not None:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": state_step}))
    return path


def test_only_checkpoints_whose_state_is_written_count(tmp_path: Path) -> None:
    _ckpt(tmp_path, 20, state_step=20)
    _ckpt(tmp_path, 40)  # being written: no trainer_state.json yet
    assert [p.name for p in checkpoints.complete_checkpoints(tmp_path)] == ["checkpoint-20"]


def test_pack_is_deterministic_and_unpacks_to_the_same_files(tmp_path: Path) -> None:
    src = _ckpt(tmp_path / "a", 20, state_step=20)
    data = checkpoints.pack(src)
    assert data[4:8] == bytes(4)  # the gzip header's MTIME is fixed, so packs a second apart are equal too
    assert data == checkpoints.pack(src)
    folder = checkpoints.unpack(data, tmp_path / "b", 20)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in src.iterdir())
    with pytest.raises(AgentError, match="does not hold checkpoint-30/"):
        checkpoints.unpack(data, tmp_path / "c", 30)


def test_uploader_sends_each_new_checkpoint_once_and_reports_its_hash(tmp_path: Path) -> None:
    sent: list[tuple[int, bytes]] = []
    events: list[tuple[str, dict[str, object]]] = []
    up = checkpoints.Uploader(tmp_path, Callback("http://bot/api/runs/r-1/events", "tok"),
                              lambda t, **d: events.append((t, d)), put=lambda cb, s, d: sent.append((s, d)))
    up.poll(force=True)
    _ckpt(tmp_path, 20, state_step=20)
    up.poll(force=True)
    up.poll(force=True)
    assert [s for s, _ in sent] == [20]
    assert events == [("artifact", {"name": "checkpoint", "path": "checkpoint-20",
                                    "sha256": hashlib.sha256(sent[0][1]).hexdigest(), "bytes": len(sent[0][1])})]


def test_resume_reaches_ms_swift_and_adapter_checkpoints_keep_optimizer_state() -> None:
    from tests.runner_agent.test_training_args import DATA, MODEL, _flags, _job

    f = _flags(sft_argv(_job(), MODEL, DATA, Path("/o"), gpu=False, resume_from=Path("/o/checkpoint-20")))
    assert f["resume_from_checkpoint"] == ["/o/checkpoint-20"] and f["save_only_model"] == ["false"]
    assert "resume_only_model" not in f  # that would restart the step count
    assert _flags(sft_argv(_job(tuner="full"), MODEL, DATA, Path("/o"), gpu=False))["save_only_model"] == ["true"]
