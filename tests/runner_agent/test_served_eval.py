"""Served evaluation (runner_agent/served.py): one `swift deploy` for base + adapter, EvalScope over its API, the
adapter-routing check, the backend in the config hash, and the fallback to the native path when no server starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from commands.jobspec import SpecError, job_from_dict
from runner_agent import served
from runner_agent.context import AgentConfig, RunContext
from runner_agent.errors import AgentError
from runner_agent.evaluation import EvalOutcome
from runner_agent.models import ResolvedModel
from runner_agent.procs import Watchdog
from runner_agent.sinks import EventBus, JsonlSink, read_events
from tests.runner_agent.conftest import AgentRun, run_agent, tiny_job


def _model(path: Path) -> ResolvedModel:
    return ResolvedModel(name="tiny", source="builtin", repo="tiny", revision="r", path=path)


def test_deploy_argv_serves_loopback_with_a_key_base_and_named_adapters(tmp_path: Path) -> None:
    argv = served.deploy_argv("swift", _model(tmp_path / "m"), "qwen2", "qwen", {"adapter": tmp_path / "a"},
                              backend="transformers", torch_dtype="float32", port=4242, api_key="k" * 32,
                              max_batch_size=8)
    joined = " ".join(argv)
    assert argv[:2] == ["swift", "deploy"]
    assert "--host 127.0.0.1" in joined and "--port 4242" in joined and f"--api_key {'k' * 32}" in joined
    assert f"--served_model_name {served.BASE_NAME}" in joined
    assert f"--adapters adapter={tmp_path / 'a'}" in joined
    # ms-swift 4.6's transformers engine cannot batch once an adapter is loaded (see deploy_argv).
    assert argv[argv.index("--max_batch_size") + 1] == "1"
    base_only = served.deploy_argv("swift", _model(tmp_path / "m"), "qwen2", "qwen", {}, backend="transformers",
                                   torch_dtype="float32", port=1, api_key="k", max_batch_size=8)
    assert base_only[base_only.index("--max_batch_size") + 1] == "8" and "--adapters" not in base_only
    vllm = served.deploy_argv("swift", _model(tmp_path / "m"), "qwen2", "qwen", {"a": tmp_path / "a", "b": tmp_path},
                              backend="vllm", torch_dtype="bfloat16", port=1, api_key="k", max_batch_size=8)
    # ms-swift enables vLLM's LoRA itself when adapters are given; only the rank limit is ours (no adapter_config
    # here: the default 16). Flags deploy does not know would stop it ("remaining_argv").
    assert vllm[vllm.index("--vllm_max_lora_rank") + 1] == "16" and "--vllm_enable_lora" not in vllm
    assert "--max_batch_size" not in vllm
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_config.json").write_text('{"r": 48}', encoding="utf-8")
    assert served.lora_rank_limit([tmp_path / "a"]) == 64


def test_backend_choice_and_config_hash_keep_backends_apart() -> None:
    assert served.served_backend(gpu=True, vllm_installed=True) == "vllm"
    assert served.served_backend(gpu=True, vllm_installed=False) == "transformers"
    assert served.served_backend(gpu=False, vllm_installed=True) == "transformers"
    plan_hash = "p" * 64
    hashes = {plan_hash, served.served_config_hash(plan_hash, "transformers"),
              served.served_config_hash(plan_hash, "vllm")}
    assert len(hashes) == 3  # native, served-transformers and served-vllm scores are never one config


def test_job_spec_eval_backend_and_eval_base_are_checked() -> None:
    job = tiny_job("s1", eval_backend="served", eval_base=True)
    parsed = job_from_dict(job)
    assert parsed.eval_backend == "served" and parsed.eval_base is True
    with pytest.raises(SpecError, match="eval_backend"):
        job_from_dict(tiny_job("s2", eval_backend="vllm-please"))
    with pytest.raises(SpecError, match="eval_base"):
        job_from_dict(tiny_job("s3", kind="train", eval_base=True, benchmarks=[]))
    with pytest.raises(SpecError, match="eval_base"):
        job_from_dict(tiny_job("s4", tuner="full", eval_base=True))


class _Job:
    def __init__(self) -> None:
        self.eval_backend = "served"
        self.eval_base = True
        self.model = type("M", (), {"model_type": "qwen2", "template": "qwen"})()
        self.hyper = type("H", (), {"torch_dtype": "float32", "seed": 42})()


def test_a_server_that_cannot_start_falls_back_to_the_native_path_and_says_so(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    cfg = AgentConfig(out=tmp_path / "out", cache=tmp_path / "cache", swift="/bin/false", base_env={"PATH": "/bin"})
    events = tmp_path / "events.jsonl"
    bus = EventBus("fallback", [JsonlSink(events)], heartbeat_s=0)
    bus.start()
    (tmp_path / "scratch").mkdir()
    ctx = RunContext(cfg, bus, Watchdog(None), tmp_path / "scratch", tmp_path / "logs")
    calls: list[tuple[Path | None, str]] = []

    def native(a: Path | None, work_name: str) -> EvalOutcome:
        calls.append((a, work_name))
        return EvalOutcome({}, tmp_path / work_name, 0.0, {})

    try:
        got = served.evaluate_job(ctx, _Job(), [], _model(tmp_path / "m"), adapter, gpu=False, offline=True,
                                  native=native)
    finally:
        bus.close()
    assert calls == [(adapter, "eval"), (None, "eval-base")]  # adapter, then the base model it was asked for
    assert got.manifest["eval_backend"] == "native" and got.manifest["eval_backend_requested"] == "served"
    assert "swift deploy exited" in got.manifest["eval_backend_note"]
    assert got.backend == "native"  # what every eval_result event of the run reports: the bot keys it natively
    notes = [e.get("detail") for e in read_events(events) if e["type"] == "phase"]
    assert any("native path instead" in (n or "") for n in notes), notes


def test_routing_check_refuses_an_adapter_that_answers_like_the_base_model() -> None:
    class FakeServer:
        def first_token_logprobs(self, name: str, prompt: str) -> dict[str, float]:
            return {"A": -0.5, "B": -1.5}  # every name gives the same distribution: the adapter was not applied

    with pytest.raises(AgentError, match="answers exactly like the base model"):
        served.check_routing(FakeServer(), ["adapter"])  # type: ignore[arg-type]


def _predictions(out: Path, folder: str) -> dict[str, list[Any]]:
    preds: dict[str, list[Any]] = {}
    for path in sorted((out / folder / "reviews").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows.sort(key=lambda r: r["index"])
        preds[path.stem] = [r["sample_score"]["score"].get("prediction") for r in rows]
    return preds


@pytest.mark.slow  # 106 s on the shared 2-core machine (plus the shared lora_run fixture)
def test_served_eval_scores_base_and_adapter_from_one_server(lora_run: AgentRun, agent_cache: Path,
                                                             tmp_path: Path) -> None:
    """The real agent, a real `swift deploy` (transformers engine on CPU) and EvalScope over its API: the adapter
    trained by `lora_run` and the base model, both in one server start; the adapter's answers agree with the native
    path's and differ from the base model's."""
    assert lora_run.code == 0, lora_run.stderr[-3000:]
    job = tiny_job("served-eval", kind="eval", tuner=None, datasets=[], eval_backend="served", eval_base=True,
                   adapter={"run_id": "e2e-lora", "path": str(lora_run.out)})
    run = run_agent(tmp_path, agent_cache, job)
    assert run.code == 0, run.stderr[-3000:]
    results = run.results
    manifest = results["manifest"]
    assert manifest["eval_backend"] == "served-transformers"
    assert set(manifest["eval_adapter_check"]) == {"adapter"}
    starts = [e for e in run.events if e["type"] == "phase" and "swift deploy" in (e.get("detail") or "")]
    assert len(starts) == 1 and "base, adapter" in starts[0]["detail"]  # one server for both models
    log = (run.out / "logs" / "swift-deploy.log").read_text(encoding="utf-8", errors="replace")
    assert "adapter" in log
    # Per-question results for both models, checked against EvalScope's report as on the native path.
    assert set(results["scores"]) == set(results["base_scores"]) == {"ceval", "cmmlu"}
    # Every score says which path produced it (the bot keys it on that backend).
    reported = [(e.get("model"), e["benchmark"], e.get("backend")) for e in run.events if e["type"] == "eval_result"]
    assert sorted(reported, key=str) == sorted([(m, b, "served") for m in (None, "base") for b in ("ceval", "cmmlu")],
                                               key=str)
    for name, score in results["scores"].items():
        assert score["n"] == lora_run.results["scores"][name]["n"] == results["base_scores"][name]["n"]
        assert score["config_hash"] != lora_run.results["scores"][name]["config_hash"]  # served ≠ native
    progress = [e for e in run.events if e["type"] == "progress" and e.get("phase") == "eval"]
    assert progress and progress[-1]["step"] == progress[-1]["total"] == 2 * sum(
        s["n"] for s in results["scores"].values())
    # The adapter really answered: its replies are the native path's, and not the base model's.
    adapter_preds = _predictions(run.out, "eval")
    base_preds = _predictions(run.out, "eval-base")
    native_preds = _predictions(lora_run.out, "eval")
    assert adapter_preds.keys() == native_preds.keys() == base_preds.keys()
    pairs = [(a, n) for k in adapter_preds for a, n in zip(adapter_preds[k], native_preds[k], strict=True)]
    agree = sum(a == n for a, n in pairs) / len(pairs)
    assert agree >= 0.9, (adapter_preds, native_preds)
    differ = sum(a != b for k in adapter_preds for a, b in zip(adapter_preds[k], base_preds[k], strict=True))
    assert differ >= len(pairs) // 2, (adapter_preds, base_preds)
