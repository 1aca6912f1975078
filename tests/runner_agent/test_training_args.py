"""The `swift sft` argument list built from a typed job, and the live reading of ms-swift's logging.jsonl."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from commands.jobspec import HyperParams, job_from_json
from runner_agent.datasets import PreparedDataset
from runner_agent.errors import AgentError
from runner_agent.models import ResolvedModel
from runner_agent.training import (
    LogTail,
    TrainLog,
    handle_log_line,
    parse_duration,
    sft_argv,
    validate_hyper,
)
from tests.paths import REPO

EXAMPLE = REPO / "configs" / "examples" / "tiny-train-eval.json"
MODEL = ResolvedModel("tiny", "builtin", "tiny", "builtin-r1-s1234", Path("/cache/models/tiny"))
DATA = [PreparedDataset("tiny-mcq", "builtin", "/cache/datasets/tiny-mcq.jsonl", "ab" * 32, 20)]


def _job(**changes: Any):  # type: ignore[no-untyped-def]
    job = job_from_json(EXAMPLE.read_text(encoding="utf-8"))
    hyper = changes.pop("hyper", None)
    if hyper:
        job = dataclasses.replace(job, hyper=dataclasses.replace(job.hyper, **hyper))
    return dataclasses.replace(job, **changes)


def _flags(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = None
    for a in argv[1:]:
        if a.startswith("--"):
            key = a[2:]
            out[key] = []
        else:
            assert key is not None
            out[key].append(a)
    return out


def test_lora_argv_is_a_list_of_typed_values() -> None:
    argv = sft_argv(_job(), MODEL, DATA, Path("/scratch/out"), gpu=False)
    assert argv[0] == "sft" and all(isinstance(a, str) for a in argv)
    f = _flags(argv)
    assert f["model"] == ["/cache/models/tiny"] and f["model_type"] == ["qwen2"] and f["template"] == ["qwen"]
    assert f["tuner_type"] == ["lora"] and f["lora_rank"] == ["8"] and f["lora_alpha"] == ["32"]
    assert f["max_steps"] == ["60"] and f["learning_rate"] == ["0.002"] and f["seed"] == ["42"]
    assert f["check_model"] == ["false"] and f["add_version"] == ["false"] and f["report_to"] == ["tensorboard"]
    assert f["dataset"] == ["/cache/datasets/tiny-mcq.jsonl"] and f["output_dir"] == ["/scratch/out"]
    assert "quant_method" not in f and "train_type" not in f  # v4 renamed --train_type to --tuner_type


def test_qlora_adds_bnb_4bit_with_float32_compute_on_cpu() -> None:
    f = _flags(sft_argv(_job(tuner="qlora"), MODEL, DATA, Path("/o"), gpu=False))
    assert f["tuner_type"] == ["lora"]
    assert f["quant_method"] == ["bnb"] and f["quant_bits"] == ["4"] and f["bnb_4bit_compute_dtype"] == ["float32"]
    g = _flags(sft_argv(_job(tuner="qlora", hyper={"torch_dtype": "bfloat16"}), MODEL, DATA, Path("/o"), gpu=True))
    assert g["bnb_4bit_compute_dtype"] == ["bfloat16"]


def test_full_tuning_has_no_lora_flags() -> None:
    f = _flags(sft_argv(_job(tuner="full"), MODEL, DATA, Path("/o"), gpu=False))
    assert f["tuner_type"] == ["full"] and "lora_rank" not in f and "target_modules" not in f


def test_target_modules_are_split_into_separate_arguments() -> None:
    f = _flags(sft_argv(_job(hyper={"target_modules": "q_proj, v_proj"}), MODEL, DATA, Path("/o"), gpu=False))
    assert f["target_modules"] == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lora_rank": 0}, "lora_rank must be >= 1"),
        ({"learning_rate": 5.0}, "learning_rate must be in"),
        ({"learning_rate": float("nan")}, "learning_rate must be in"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
        ({"torch_dtype": "float8"}, "torch_dtype must be one of"),
        ({"quant_bits": 3}, "quant_bits must be 4 or 8"),
        ({"target_modules": "q_proj --output_dir /etc"}, "target_modules must be module names"),
        ({"target_modules": "--report_to"}, "target_modules must be module names"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"max_length": 4}, "max_length"),
    ],
)
def test_bad_hyper_parameters_are_refused_before_anything_runs(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AgentError, match=message):
        validate_hyper(dataclasses.replace(HyperParams(), **changes), "lora")


def test_parse_duration_reads_swift_format_time() -> None:
    assert parse_duration("56s") == 56
    assert parse_duration("1m 2s") == 62
    assert parse_duration("1h 2m 3s") == 3723
    assert parse_duration("1d 2h") == 93600
    assert parse_duration("") is None and parse_duration(None) is None


def test_log_lines_become_progress_events_and_summary() -> None:
    log = TrainLog()
    emitted: list[dict[str, Any]] = []

    def emit(type: str, **data: Any) -> None:
        emitted.append({"type": type, **data})

    lines = [
        '{"loss": 7.65523148, "grad_norm": 1.0, "learning_rate": 0.00099384, "token_acc": 0.04, "epoch": 0.02, '
        '"global_step/max_steps": "1/20", "elapsed_time": "0s", "remaining_time": "1m 2s", "train_speed(s/it)": 0.03}',
        '{"train_runtime": 0.3329, "train_samples_per_second": 240.3, "train_loss": 7.43489048, "epoch": 0.4, '
        '"global_step/max_steps": "20/20", "elapsed_time": "0s", "remaining_time": "0s"}',
        '{"train_dataset": "x", "last_model_checkpoint": "/o/checkpoint-20", "global_step": 20, "log_history": []}',
        "not json at all",
    ]
    for line in lines:
        handle_log_line(line, log, emit)
    assert emitted == [{"type": "progress", "phase": "train", "step": 1, "total": 20, "loss": 7.65523148,
                        "learning_rate": 0.00099384, "epoch": 0.02, "eta_s": 62.0}]
    assert log.points == [(1, 7.65523148)]
    assert log.summary["train_loss"] == 7.43489048
    assert log.final["last_model_checkpoint"] == "/o/checkpoint-20" and "log_history" not in log.final


def test_log_tail_returns_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "logging.jsonl"
    tail = LogTail(path)
    assert tail.read() == []  # not there yet
    path.write_text('{"a": 1}\n{"b"', encoding="utf-8")
    assert tail.read() == ['{"a": 1}']
    with path.open("a", encoding="utf-8") as fh:
        fh.write(': 2}\n{"c": 3}\n')
    assert [json.loads(x) for x in tail.read()] == [{"b": 2}, {"c": 3}]
    assert tail.read() == []


def test_the_repositorys_tracker_reaches_ms_swift_and_only_the_project_through_env() -> None:
    from commands.jobspec import Tracking
    from runner_agent.training import tracker_env

    default = _flags(sft_argv(_job(), MODEL, DATA, Path("/o"), gpu=False, logging_dir=Path("/out/tensorboard")))
    assert default["report_to"] == ["tensorboard"] and default["logging_dir"] == ["/out/tensorboard"]
    assert tracker_env(_job()) == {}
    for tool, var in (("wandb", "WANDB_PROJECT"), ("swanlab", "SWANLAB_PROJECT"), ("mlflow", "MLFLOW_EXPERIMENT_NAME")):
        job = _job(tracking=Tracking(tool=tool, project="tiny-sft"))
        f = _flags(sft_argv(job, MODEL, DATA, Path("/o"), gpu=False, logging_dir=Path("/out/tensorboard")))
        assert f["report_to"] == [tool] and "logging_dir" not in f
        assert tracker_env(job) == {var: "tiny-sft"}  # credentials are the runner's (workflow `env:`), never the job's
