"""What the runner reports a training dataset was: the blob SHA of the bytes it read (checked against the job's), the
revision a hub dataset resolved to."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from commands.jobspec import DatasetRef
from runner_agent import datasets
from runner_agent.errors import AgentError


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n' * 3, encoding="utf-8")
    return repo


def test_a_repository_file_is_named_by_the_git_blob_of_the_bytes_read(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    expected = subprocess.run(["git", "hash-object", str(repo / "data" / "train.jsonl")], check=True,
                              capture_output=True, text=True).stdout.strip()
    ref = DatasetRef(name="sft", source="local", id="data/train.jsonl", blob=expected)
    [prepared] = datasets.prepare((ref,), repo_dir=repo, bench_data=None, cache=tmp_path / "cache")
    assert prepared.blob == expected
    [entry] = datasets.revisions((ref,), [prepared], tmp_path / "hf")
    assert entry == {"name": "sft", "source": "local", "id": "data/train.jsonl", "blob": expected,
                     "sha256": prepared.sha256}


def test_a_file_whose_blob_is_not_the_one_the_job_was_keyed_on_is_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    ref = DatasetRef(name="sft", source="local", id="data/train.jsonl", blob="0" * 40)
    with pytest.raises(AgentError, match=r"is blob [0-9a-f]{12}, but the job was planned on blob 000000000000"):
        datasets.prepare((ref,), repo_dir=repo, bench_data=None, cache=tmp_path / "cache")


def test_a_hub_dataset_reports_the_commit_its_revision_resolved_to_when_the_hub_recorded_it(tmp_path: Path) -> None:
    hub = tmp_path / "hf" / "hub"
    commit = "ab12" * 10
    (hub / "datasets--org--alpaca" / "refs").mkdir(parents=True)
    (hub / "datasets--org--alpaca" / "refs" / "v2").write_text(commit + "\n", encoding="utf-8")
    refs = (DatasetRef(name="alpaca", source="huggingface", id="org/alpaca", max_samples=50, revision="v2"),
            DatasetRef(name="other", source="huggingface", id="org/other"))
    prepared = datasets.prepare(refs, repo_dir=tmp_path, bench_data=None, cache=tmp_path / "cache")
    assert [p.swift_arg for p in prepared] == ["org/alpaca#50", "org/other"]
    assert datasets.revisions(refs, prepared, hub) == [
        {"name": "alpaca", "source": "huggingface", "id": "org/alpaca", "requested": "v2", "revision": commit},
        {"name": "other", "source": "huggingface", "id": "org/other", "requested": None, "revision": None},
    ]
