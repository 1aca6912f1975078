"""Bad input ends in one `finished: failed` event with a reason a person can act on, a non-zero exit, no results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runner_agent import cli
from runner_agent.sinks import read_events
from tests.paths import BENCHMARKS, REPO
from tests.runner_agent.helpers import CallbackServer

EXAMPLE = json.loads((REPO / "configs" / "examples" / "tiny-train-eval.json").read_text(encoding="utf-8"))


def example(**changes: Any) -> dict[str, Any]:
    job = json.loads(json.dumps(EXAMPLE))
    job["benchmarks"][0]["subsets"] = ["computer_network", "logic"]
    job["benchmarks"][1]["subsets"] = ["agronomy", "anatomy"]
    job.update(changes)
    return job


def run_agent(tmp_path: Path, job: Any, *extra: str, raw: str | None = None) -> tuple[int, list[dict[str, Any]], Path]:
    job_path = tmp_path / "job.json"
    job_path.write_text(raw if raw is not None else json.dumps(job), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["run", "--job", str(job_path), "--out", str(out), "--cache", str(tmp_path / "cache"),
            "--bench-data", str(BENCHMARKS), "--repo-dir", str(tmp_path / "repo"), "--quiet",
            "--callback-deadline", "5", *extra]
    (tmp_path / "repo").mkdir(exist_ok=True)
    code = cli.main(argv)
    events = read_events(out / "events.jsonl") if (out / "events.jsonl").exists() else []
    return code, events, out


def assert_failed(code: int, events: list[dict[str, Any]], out: Path, *needles: str) -> str:
    assert code == 1
    assert events and events[-1]["type"] == "finished" and events[-1]["status"] == "failed"
    assert [e["type"] for e in events].count("finished") == 1
    reason = events[-1]["reason"]
    for needle in needles:
        assert needle in reason, reason
    assert not (out / "results.json").exists()
    scratch = out.parent / "cache" / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())
    return str(reason)


def test_not_json(tmp_path: Path) -> None:
    code, events, out = run_agent(tmp_path, None, raw="{ this is not json")
    assert_failed(code, events, out, "malformed job", "not valid JSON")
    assert events[0]["run_id"] == "invalid-job"


def test_unknown_field_is_named(tmp_path: Path) -> None:
    job = example()
    job["hyper"]["lora_rnak"] = 4
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "hyper: unknown field(s) lora_rnak")
    assert events[0]["run_id"] == "example-tiny-1"  # the run id is still taken from the broken job


def test_malformed_job_is_reported_to_the_callback_too(tmp_path: Path) -> None:
    with CallbackServer("tok-1") as server:
        job = example(callback={"url": server.url, "token": "tok-1"}, kind="dance")
        code, events, out = run_agent(tmp_path, job)
        assert_failed(code, events, out, "kind: 'dance' is not one of")
        got = server.delivered()
        assert [e["type"] for e in got] == ["finished"] and got[0]["status"] == "failed"
        assert all(r.verified for r in server.requests)


def test_unknown_builtin_model(tmp_path: Path) -> None:
    job = example()
    job["model"].update(name="huge", id="huge")
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "unknown built-in model 'huge'")


def test_bad_hyper_parameter(tmp_path: Path) -> None:
    job = example()
    job["hyper"]["lora_rank"] = 0
    job["hyper"]["learning_rate"] = 3.0
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "bad hyper-parameter", "lora_rank must be >= 1", "learning_rate must be in (0, 1)")


def test_missing_local_dataset(tmp_path: Path) -> None:
    job = example(datasets=[{"name": "mine", "source": "local", "id": "data/train.jsonl", "max_samples": None}])
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "data/train.jsonl does not exist in the repository checkout")


def test_local_dataset_may_not_escape_the_repository(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "secret.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    os.symlink(tmp_path / "secret.jsonl", tmp_path / "repo" / "data.jsonl")
    job = example(datasets=[{"name": "mine", "source": "local", "id": "data.jsonl", "max_samples": None}])
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "points outside the repository")


def test_local_dataset_that_is_not_jsonl(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "train.jsonl").write_text('{"messages": []}\n{oops\n', encoding="utf-8")
    job = example(datasets=[{"name": "mine", "source": "local", "id": "train.jsonl", "max_samples": None}])
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "train.jsonl line 2 is not JSON")


def test_missing_benchmark_subject_files(tmp_path: Path) -> None:
    job = example()
    job["benchmarks"][0]["subsets"] = ["computer_network", "high_school_physics"]
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "ceval: no val data for subject(s) high_school_physics",
                  "high_school_physics_val.csv")


def test_missing_benchmark_pack_offline(tmp_path: Path) -> None:
    job = example(kind="eval", tuner=None, datasets=[])
    code, events, out = run_agent(tmp_path, job, "--bench-data", str(tmp_path / "nowhere"), "--offline")
    assert_failed(code, events, out, "no local data", "offline", "--bench-data")


def test_tiny_mcq_needs_the_packs(tmp_path: Path) -> None:
    code, events, out = run_agent(tmp_path, example(), "--bench-data", str(tmp_path / "nowhere"))
    assert_failed(code, events, out, "tiny-mcq", "--bench-data")


def test_unknown_benchmark(tmp_path: Path) -> None:
    job = example()
    job["benchmarks"][0]["name"] = "mmlu-pro"
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "unknown benchmark 'mmlu-pro'")


def test_no_disk_space_is_checked_up_front(tmp_path: Path) -> None:
    code, events, out = run_agent(tmp_path, example(), "--min-free-gb", "1000000")
    reason = assert_failed(code, events, out, "not enough disk space", "GiB free")
    assert "TUNEBOT_CACHE" in reason
    assert not (tmp_path / "cache" / "models" / "builtin").exists()  # nothing was built


def test_an_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "events.jsonl").write_text('{"previous": true}\n', encoding="utf-8")
    code, _, _ = run_agent(tmp_path, example())
    assert code == 1
    assert (out / "events.jsonl").read_text(encoding="utf-8") == '{"previous": true}\n'


def test_eval_with_a_missing_adapter(tmp_path: Path) -> None:
    job = example(kind="eval", tuner=None, datasets=[],
                  adapter={"run_id": "old-run", "path": str(tmp_path / "gone"), "sha256": None})
    code, events, out = run_agent(tmp_path, job)
    assert_failed(code, events, out, "adapter.path: no adapter at")


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--job", "x.json"]) == 2  # --out missing
    assert cli.main(["launch"]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_job_planned_for_another_toolchain_is_refused_before_any_work(tmp_path: Path) -> None:
    """The job names the ms-swift / EvalScope versions its result key assumes (configs/toolchain.yaml); a runner
    with other versions refuses it, naming both, instead of filing its scores under that key."""
    code, events, out = run_agent(tmp_path, example(toolchain={"ms_swift": "9.9.9", "evalscope": "1.14.1"}))
    reason = assert_failed(code, events, out, "toolchain mismatch", "ms-swift 9.9.9 (this runner has 4.6.0)",
                           "configs/toolchain.yaml")
    assert "evalscope" not in reason.split("; ")[0]  # only what differs is named
    assert not any(e["type"] == "phase" for e in events)  # refused before any download or training


def test_the_installed_toolchain_matches_the_pinned_one() -> None:
    """configs/toolchain.yaml is the one source of the versions: the agent extra of pyproject.toml pins the same,
    and a job planned from the shipped configs passes this runner's check."""
    import tomllib

    from configs import load_catalog
    from runner_agent import report
    from runner_agent.runner import verify_toolchain

    toolchain = load_catalog().toolchain
    assert toolchain is not None
    pins = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert f"ms-swift=={toolchain.ms_swift}" in pins["agent"] and f"evalscope=={toolchain.evalscope}" in pins["agent"]
    verify_toolchain(toolchain, report.versions())
