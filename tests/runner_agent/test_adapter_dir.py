"""`--adapter-dir`: an earlier run's output (on GitHub, its downloaded artifact) replaces the job's adapter.path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from commands.jobspec import job_from_dict
from runner_agent import cli
from runner_agent.errors import AgentError
from runner_agent.runner import adapter_run_dir, verify_adapter_provenance, with_adapter_dir
from tests.runner_agent.test_bad_input import assert_failed, example, run_agent


def run_output(where: Path, run_id: str = "tb-train-1") -> Path:
    """What a training run leaves in --out (and uploads): adapter/ and results.json."""
    (where / "adapter").mkdir(parents=True)
    (where / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    (where / "results.json").write_text(json.dumps({"run_id": run_id}), encoding="utf-8")
    return where


def eval_job(**adapter: object) -> dict[str, object]:
    return example(kind="eval", tuner=None, datasets=[], adapter={"run_id": "tb-train-1", **adapter})


def test_the_artifact_root_is_the_run_output(tmp_path: Path) -> None:
    root = run_output(tmp_path / "adapter-run")
    assert adapter_run_dir(root) == root


def test_an_artifact_nested_one_level_is_found(tmp_path: Path) -> None:
    root = tmp_path / "adapter-run"
    inner = run_output(root / "out")
    (root / "stray").mkdir()  # a directory without an adapter does not make it ambiguous
    assert adapter_run_dir(root) == inner


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "not a directory"),
        ("empty", "no adapter there (expected"),
        ("full", "a full fine-tune is evaluated as a model"),
        ("two", "several run outputs hold an adapter (a, b)"),
    ],
)
def test_a_dir_without_one_adapter_is_refused_with_a_reason(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "adapter-run"
    if layout != "missing":
        root.mkdir()
    if layout == "full":
        (root / "model").mkdir()
    if layout == "two":
        run_output(root / "a")
        run_output(root / "b")
    with pytest.raises(AgentError) as err:
        adapter_run_dir(root)
    assert f"--adapter-dir {root}" in err.value.reason and message in err.value.reason


def test_with_adapter_dir_replaces_only_the_path(tmp_path: Path) -> None:
    root = run_output(tmp_path / "adapter-run" / "out")
    job = job_from_dict(eval_job(path="/runner/that/is/gone", sha256="ab" * 32, workflow_run_id=42))
    moved = with_adapter_dir(job, tmp_path / "adapter-run")
    assert moved.adapter is not None and job.adapter is not None
    assert moved.adapter.path == str(root)
    assert (moved.adapter.run_id, moved.adapter.sha256, moved.adapter.workflow_run_id) == ("tb-train-1", "ab" * 32, 42)
    assert moved.benchmarks == job.benchmarks and moved.run_id == job.run_id


def test_with_adapter_dir_refuses_a_job_without_an_adapter(tmp_path: Path) -> None:
    job = job_from_dict(example())
    with pytest.raises(AgentError, match="evaluates no adapter"):
        with_adapter_dir(job, run_output(tmp_path / "adapter-run"))


def test_the_flag_reaches_the_config(tmp_path: Path) -> None:
    args = cli._parser().parse_args(["run", "--job", "j.json", "--out", str(tmp_path / "o"),
                                     "--adapter-dir", str(tmp_path / "a")])
    cfg, _ = cli.build_config(args, {})
    assert cfg.adapter_dir == (tmp_path / "a").resolve()
    cfg, _ = cli.build_config(cli._parser().parse_args(["run", "--job", "j.json", "--out", "o"]), {})
    assert cfg.adapter_dir is None


def test_agent_fails_early_when_the_job_names_no_adapter(tmp_path: Path) -> None:
    root = run_output(tmp_path / "adapter-run")
    code, events, out = run_agent(tmp_path, example(), "--adapter-dir", str(root))
    assert_failed(code, events, out, "--adapter-dir", "evaluates no adapter")
    assert events[-1]["run_id"] == example()["run_id"]


def test_agent_fails_early_when_the_dir_holds_no_adapter(tmp_path: Path) -> None:
    (tmp_path / "adapter-run").mkdir()
    code, events, out = run_agent(tmp_path, eval_job(), "--adapter-dir", str(tmp_path / "adapter-run"))
    assert_failed(code, events, out, "--adapter-dir", "no adapter there")


def test_agent_reads_the_adapter_from_the_dir_not_the_job_path(tmp_path: Path) -> None:
    # The job's path is gone (another runner); the dir is used instead, and its own checks still apply: here the
    # downloaded output belongs to another run than the one the job names, which the agent refuses.
    root = run_output(tmp_path / "adapter-run" / "out", run_id="someone-else")
    job = eval_job(path=str(tmp_path / "gone"))
    code, events, out = run_agent(tmp_path, job, "--adapter-dir", str(tmp_path / "adapter-run"))
    reason = assert_failed(code, events, out, f"adapter.path: {root} holds run 'someone-else'")
    assert "gone" not in reason


def test_agent_refuses_an_adapter_changed_after_training(tmp_path: Path) -> None:
    """Provenance: the job carries the hash its training run reported; one byte changed in the artifact → refused
    before any model is loaded, with a reason that says which run and what to do."""
    import hashlib

    root = run_output(tmp_path / "adapter-run" / "out")
    weights = root / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    # The hash as the training run reported it (sorted relative paths and each file's sha256), computed here.
    h = hashlib.sha256()
    for path in sorted(p for p in (root / "adapter").rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(root / 'adapter').as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
                 .encode())
    reported = h.hexdigest()
    verify_adapter_provenance(root / "adapter", "tb-train-1", reported)  # the untouched artifact passes
    weights.write_bytes(b"\x00" * 63 + b"\x01")  # one byte changed
    code, events, out = run_agent(tmp_path, eval_job(sha256=reported), "--adapter-dir", str(tmp_path / "adapter-run"))
    assert_failed(code, events, out, "adapter of run tb-train-1 refused", reported[:16], "re-train")
    assert "accepted" in [e["type"] for e in events]
