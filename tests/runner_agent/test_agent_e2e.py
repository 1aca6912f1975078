"""End to end, for real: the agent runs ms-swift and EvalScope on the built-in tiny model, offline on CPU."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from commands.events import event_from_dict
from commands.results import results_from_dict
from runner_agent import mcq_format, packs
from runner_agent.sinks import read_events
from tests.paths import BENCHMARKS, REPO
from tests.runner_agent.conftest import (
    CEVAL,
    CMMLU,
    LORA_STEPS,
    TOKEN,
    AgentRun,
    agent_argv,
    agent_env,
    run_agent,
    tiny_job,
)

pytestmark = pytest.mark.slow


def _first_ids(benchmark: str, subject: str, n: int) -> list[str]:
    split = "val" if benchmark == "ceval" else "test"
    path = BENCHMARKS / benchmark / split / (f"{subject}_{split}.csv" if benchmark == "ceval" else f"{subject}.csv")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [r[0] for r in rows[:n]]


def _tree_digest(root: Path) -> str:
    """The adapter digest as the manifest documents it, computed here: sha256 over the sorted lines
    `<relative path>\\0<sha256 of the file>\\n` of every file under root."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert files, f"nothing under {root}"
    lines = "".join(f"{p.relative_to(root).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _no_leftover_processes(marker: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(cmd)
    return found


def test_train_eval_run_succeeds_with_every_output(lora_run: AgentRun, agent_cache: Path) -> None:
    run = lora_run
    assert run.code == 0, run.stderr[-3000:]
    out = run.out
    for name in ("results.json", "events.jsonl", "loss.png", "summary.md", "args.json",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "logs/swift-sft.log", "logs/evalscope.log"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The checkpoint's trainer state (kept there for resuming) is not part of the adapter artifact.
    assert not [p.name for p in (out / "adapter").iterdir() if p.name.startswith(("optimizer", "scheduler", "rng_"))]
    # TensorBoard (the default tracker, ms-swift's --report_to) wrote its event files into the outputs: the artifact.
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events), sorted((out / "tensorboard").rglob("*"))
    width, height = struct.unpack(">II", (out / "loss.png").read_bytes()[16:24])
    assert width >= 400 and height >= 200
    # Scratch space is gone; the model cache stays.
    assert not any((agent_cache / "scratch").iterdir())
    assert any((agent_cache / "models" / "builtin").iterdir())
    # The run token is a secret: it appears in no output.
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".log"):
            assert TOKEN not in path.read_text(encoding="utf-8", errors="replace"), path


def test_events_are_sequenced_signed_and_streamed_while_training(lora_run: AgentRun) -> None:
    events = lora_run.events
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert {e["run_id"] for e in events} == {"e2e-lora"}
    for e in events:
        event_from_dict(e)
    assert events[0]["type"] == "accepted" and events[-1] == {**events[-1], "type": "finished", "status": "succeeded"}
    types = [e["type"] for e in events]
    assert types.index("progress") < types.index("artifact") < types.index("eval_result")
    artifacts = {e["name"] for e in events if e["type"] == "artifact"}
    assert {"adapter", "swift_args", "loss_curve", "eval_details", "results", "summary"} <= artifacts
    train_steps = [e["step"] for e in events if e["type"] == "progress" and e["phase"] == "train"]
    assert train_steps == sorted(train_steps) and train_steps[-1] == LORA_STEPS
    # The callback got the same events, every one signed with the run token.
    assert [e["seq"] for e in lora_run.http] == [e["seq"] for e in events]
    assert lora_run.http == events
    # Progress reached the bot while ms-swift was still training, not replayed at the end.
    early = [a for a in lora_run.arrivals if not a["training_over"] and a["step"] < a["total"]]
    assert len(early) >= 3, lora_run.arrivals


def test_results_carry_scores_manifest_and_per_question_outcomes(lora_run: AgentRun, agent_cache: Path) -> None:
    raw = lora_run.results
    res = results_from_dict(raw)
    assert res.status == "succeeded" and res.run_id == "e2e-lora"
    assert set(res.benchmarks) == {"ceval", "cmmlu"}
    for bench, subjects in (("ceval", CEVAL), ("cmmlu", CMMLU)):
        b = res.benchmarks[bench]
        assert set(b.subsets) == set(subjects) and b.n == 10
        expected_ids = {f"{s}/{rid}" for s in subjects for rid in _first_ids(bench, s, 5)}
        assert set(b.questions) == expected_ids
        assert b.correct == sum(b.questions.values())
        assert raw["scores"][bench]["score"] == pytest.approx(b.correct / 10)
        assert len(b.config_hash) == 64
    m = raw["manifest"]
    assert m["model"]["name"] == "tiny" and m["model"]["revision"].startswith("builtin-r")
    assert m["adapter"]["sha256"] == _tree_digest(lora_run.out / "adapter")
    assert m["datasets"][0]["name"] == "tiny-mcq" and len(m["datasets"][0]["sha256"]) == 64
    assert {"ms-swift", "evalscope", "torch", "transformers", "peft"} <= {k for k, v in m["versions"].items() if v}
    assert m["seed"] == 42 and m["hardware"]["accelerator"] == "cpu" and m["hardware"]["cpu_count"] >= 1
    assert m["benchmarks"]["cmmlu"]["data_sha256"] and m["benchmarks"]["ceval"]["limit"] == 5
    train = raw["train"]
    assert train["steps"] == LORA_STEPS and train["final_loss"] < train["first_loss"]
    artifact_names = {a["name"] for a in raw["artifacts"]}
    assert {"adapter", "swift_args", "loss_curve"} <= artifact_names
    swift_args = next(a for a in raw["artifacts"] if a["name"] == "swift_args")
    assert swift_args["sha256"] == hashlib.sha256((lora_run.out / "args.json").read_bytes()).hexdigest()
    summary = (lora_run.out / "summary.md").read_text(encoding="utf-8")
    assert "e2e-lora" in summary and "| ceval |" in summary and "loss.png" in summary
    # In a workflow the same summary is appended to the job's step summary.
    assert summary in (lora_run.out.parent / "github-step-summary.md").read_text(encoding="utf-8")


def test_question_ids_map_back_to_the_original_rows(lora_run: AgentRun) -> None:
    """Each kept EvalScope review is the row its id names: same prompt (our mirror of EvalScope's format,
    which is also the tiny-mcq training format), same answer, same verdict as results.json."""
    questions = {b: lora_run.results["scores"][b]["questions"] for b in ("ceval", "cmmlu")}
    reviews = sorted((lora_run.out / "eval" / "reviews").glob("*.jsonl"))
    assert len(reviews) == 4
    checked = 0
    for path in reviews:
        bench, _, subject = path.stem.partition("_")
        rows = packs.read_rows(BENCHMARKS, bench, packs.EVAL_SPLIT[bench], subject)
        for line in path.read_text(encoding="utf-8").splitlines():
            review = json.loads(line)
            row = rows[review["index"]]
            user = next(m["content"] for m in review["messages"] if m["role"] == "user")
            assert user == mcq_format.prompt(bench, subject, row.question, row.choices)
            assert review["target"] == [row.answer]
            right = review["sample_score"]["score"]["value"]["accuracy"] == 1.0
            assert questions[bench][row.qid] is right
            checked += 1
    assert checked == 20


def test_adapter_beats_the_base_model_and_eval_jobs_reproduce_it(lora_run: AgentRun, agent_cache: Path,
                                                                tmp_path: Path) -> None:
    eval_job: dict[str, Any] = tiny_job("e2e-base", kind="eval", tuner=None, datasets=[])
    base = run_agent(tmp_path / "base", agent_cache, eval_job)
    assert base.code == 0, base.stderr[-3000:]
    assert not (base.out / "adapter").exists() and not (base.out / "loss.png").exists()
    adapter_job = tiny_job("e2e-adapter", kind="eval", tuner=None, datasets=[],
                           adapter={"run_id": "e2e-lora", "path": str(lora_run.out),
                                    "sha256": lora_run.results["manifest"]["adapter"]["sha256"]})
    again = run_agent(tmp_path / "adapter", agent_cache, adapter_job)
    assert again.code == 0, again.stderr[-3000:]
    trained = lora_run.results["scores"]
    for bench in ("ceval", "cmmlu"):
        # Base + adapter from the previous run's directory: exactly the outcomes of the train+eval run.
        assert again.results["scores"][bench]["questions"] == trained[bench]["questions"]
        assert again.results["scores"][bench]["config_hash"] == base.results["scores"][bench]["config_hash"]
    base_correct = sum(base.results["scores"][b]["correct"] for b in ("ceval", "cmmlu"))
    tuned_correct = sum(trained[b]["correct"] for b in ("ceval", "cmmlu"))
    assert tuned_correct > base_correct, (base.results["scores"], trained)
    assert again.results["manifest"]["adapter"]["run_id"] == "e2e-lora"


def test_qlora_trains_a_4bit_adapter_even_with_the_bot_down(agent_cache: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: the bot is down for the whole run
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/agent/events"
    job = tiny_job("e2e-qlora", kind="train", tuner="qlora", benchmarks=[], callback={"url": dead, "token": TOKEN},
                   hyper={"max_steps": 6, "logging_steps": 2, "save_steps": 6, "max_length": 512})
    run = run_agent(tmp_path, agent_cache, job, "--callback-deadline", "2")
    assert run.code == 0, run.stderr[-3000:]
    assert "gave up on" in run.stderr  # said so, and did not fail the run
    args = json.loads((run.out / "args.json").read_text(encoding="utf-8"))
    assert args["quant_method"] == "bnb" and args["quant_bits"] == 4 and args["bnb_4bit_compute_dtype"] == "float32"
    assert (run.out / "adapter" / "adapter_model.safetensors").is_file()
    res = run.results
    assert res["status"] == "succeeded" and res["scores"] == {} and res["train"]["steps"] == 6
    assert [e["step"] for e in run.events if e["type"] == "progress"] == [1, 2, 4, 6]


def test_sigterm_cancels_gracefully_and_kills_the_process_group(agent_cache: Path, tmp_path: Path) -> None:
    job = tiny_job("e2e-cancel", kind="train", benchmarks=[],
                   hyper={"max_steps": 5000, "logging_steps": 1, "save_steps": 5000, "max_length": 512})
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen(agent_argv(job_path, out, agent_cache), cwd=REPO, env=agent_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "events.jsonl").exists() and any(
                e["type"] == "progress" for e in read_events(out / "events.jsonl")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    events = read_events(out / "events.jsonl")
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "cancelled"
    assert "SIGTERM" in events[-1]["reason"]
    assert not (out / "results.json").exists()
    assert not any((agent_cache / "scratch").iterdir())
    time.sleep(0.5)
    assert _no_leftover_processes(str(agent_cache / "scratch")) == []


def test_wall_clock_limit_cancels(agent_cache: Path, tmp_path: Path) -> None:
    job = tiny_job("e2e-limit", kind="train", benchmarks=[], limits={"wall_clock_s": 4},
                   hyper={"max_steps": 5000, "logging_steps": 1, "save_steps": 5000, "max_length": 512})
    run = run_agent(tmp_path, agent_cache, job)
    assert run.code == 143
    assert run.events[-1]["status"] == "cancelled" and "wall-clock limit of 4s" in run.events[-1]["reason"]
    assert run.wall_s < 40
    assert _no_leftover_processes(str(agent_cache / "scratch")) == []


def _broken_model(repo: Path) -> None:
    model = repo / "models" / "broken"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                                                   "hidden_size": 64, "num_attention_heads": 4}), encoding="utf-8")


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_a_crashing_tool_fails_the_run_with_its_last_words(agent_cache: Path, tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    _broken_model(repo)
    model = {"name": "broken", "source": "local", "id": "models/broken", "model_type": "qwen2", "template": "qwen",
             "revision": None, "hf_id": None, "trust_remote_code": False}
    if kind == "train":
        job = tiny_job("e2e-crash-train", kind="train", model=model, benchmarks=[],
                       hyper={"max_steps": 2, "max_length": 512})
        tool = "ms-swift training failed"
    else:
        job = tiny_job("e2e-crash-eval", kind="eval", model=model, tuner=None, datasets=[])
        tool = "EvalScope failed"
    run = run_agent(tmp_path / "run", agent_cache, job, "--repo-dir", str(repo))
    assert run.code == 1
    reason = run.events[-1]["reason"]
    assert run.events[-1]["status"] == "failed" and reason.startswith(tool), reason
    assert "Error" in reason or "error" in reason  # the tool's own last meaningful words
    assert "%|" not in reason  # progress bars are not meaningful
    assert not (run.out / "results.json").exists()
    os.sync()
