"""The shared contracts under commands/: job specs, events, results and the catalog reject bad data clearly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from commands.catalog import build_catalog
from commands.events import event_from_dict, event_from_json, make_event
from commands.jobspec import (
    AdapterRef,
    BenchmarkSpec,
    DatasetRef,
    JobSpec,
    ModelRef,
    SpecError,
    content_hash,
    job_from_dict,
    job_from_json,
    job_to_json,
    to_dict,
    validate_job,
)
from commands.results import (
    BenchmarkResult,
    Results,
    SubsetScore,
    benchmark_from_dict,
    results_from_dict,
    results_from_events,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((REPO / "configs" / "examples" / "tiny-train-eval.json").read_text())
MODEL = ModelRef(name="tiny", source="builtin", id="tiny", model_type="qwen2", template="qwen")


def example() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)


JOB_ERRORS = [
    (lambda d: d.update(run_id=None), "run_id: must not be null"),
    (lambda d: d.update(run_id=5), "run_id: expected str, got int"),
    (lambda d: d.update(model="tiny"), "model: expected an object"),
    (lambda d: d["model"].update(source="s3"), "model.source: 's3' is not one of"),
    (lambda d: d["model"].update(trust_remote_code="yes"), "model.trust_remote_code: expected bool"),
    (lambda d: d["hyper"].update(learning_rate="fast"), "hyper.learning_rate: expected float, got str"),
    (lambda d: d["hyper"].update(max_steps=0), "hyper.max_steps: must be positive"),
    (lambda d: d.update(datasets="tiny-mcq"), "datasets: expected a list"),
    (lambda d: d["datasets"].append({"name": "x", "source": "local", "id": "/etc/passwd"}), "inside the repository"),
    (lambda d: d["datasets"].append({"name": "x", "source": "ftp", "id": "x"}), "datasets[1].source"),
    (lambda d: d["benchmarks"][0].update(subsets=["a", 1]), "benchmarks[0].subsets: expected a list of strings"),
    (lambda d: d.update(adapter={"run_id": "r-0"}), "adapter: only an eval job evaluates an existing adapter"),
    (lambda d: d.update(limits={"wall_clock_s": 0}), "limits.wall_clock_s: must be positive"),
    (lambda d: d.update(callback={"url": "http://x"}), "callback.token: required field is missing"),
    (lambda d: d.update(kind="eval", tuner=None, datasets=[], benchmarks=[]), "needs at least one benchmark"),
    (lambda d: d["datasets"][0].update(blob="main"), "blob must be a git object id"),
    (lambda d: d["benchmarks"][0].update(content_hash="abc"), "content_hash must be 64 hex digits"),
    (lambda d: d.update(toolchain={"ms_swift": "4.6.0"}), "toolchain.evalscope: required field is missing"),
    (lambda d: d.update(not_after="tomorrow"), "not_after: expected float, got str"),
]


@pytest.mark.parametrize(("mutate", "message"), JOB_ERRORS)
def test_job_spec_errors(mutate, message: str) -> None:
    data = example()
    mutate(data)
    with pytest.raises(SpecError) as err:
        job_from_dict(data)
    assert message in str(err.value)


def test_job_spec_accepts_what_it_writes() -> None:
    data = example()
    data["callback"] = {"url": "http://127.0.0.1:1/cb", "token": "t"}
    data["hyper"]["learning_rate"] = 1  # an int where a float is expected is widened, not refused
    job = job_from_dict(data)
    assert job.hyper.learning_rate == 1.0 and isinstance(job.hyper.learning_rate, float)
    assert job.callback is not None and job_from_json(job_to_json(job)) == job
    assert job.trains and job.evaluates
    with pytest.raises(SpecError, match="expected a JSON object"):
        job_from_dict([1])
    eval_job = JobSpec(run_id="e1", repo="o/r", sha="0" * 40, kind="eval", model=MODEL,
                       benchmarks=(BenchmarkSpec("cmmlu"),), adapter=AdapterRef("r-1"))
    validate_job(eval_job)
    assert not eval_job.trains and eval_job.evaluates
    train_job = JobSpec(run_id="t1", repo="o/r", sha="0" * 40, kind="train", model=MODEL, tuner="lora",
                        datasets=(DatasetRef("d", "builtin", "d"),))
    assert train_job.trains and not train_job.evaluates


def test_provenance_fields_are_written_only_when_set() -> None:
    """The recipe's checkable facts ride in the signed job; a job without them is byte-identical to before."""
    plain = job_from_dict(example())
    assert not {"toolchain", "not_after"} & set(json.loads(job_to_json(plain)))
    data = example()
    data["datasets"][0]["blob"] = "a" * 40
    data["benchmarks"][0]["content_hash"] = "b" * 64
    data.update(toolchain={"ms_swift": "4.6.0", "evalscope": "1.14.1"}, not_after=1_900_000_000)
    job = job_from_dict(data)
    assert job.toolchain is not None and job.toolchain.evalscope == "1.14.1" and job.not_after == 1.9e9
    assert job_from_json(job_to_json(job)) == job


def test_content_hash_is_stable_and_order_free() -> None:
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": (1, 2)}) == content_hash({"a": [1, 2]})
    assert content_hash({"a": 1}) != content_hash({"a": 1.5})
    assert to_dict({"m": MODEL})["m"]["id"] == "tiny"


EVENT_ERRORS = [
    ("not a dict", "expected a JSON object"),
    ({"v": 1, "type": "progress", "run_id": "", "seq": 0, "ts": 0}, "run_id: must be a non-empty string"),
    ({"v": 1, "type": "heartbeat", "run_id": "r", "seq": -1, "ts": 0}, "seq: must be a non-negative integer"),
    ({"v": 1, "type": "heartbeat", "run_id": "r", "seq": True, "ts": 0}, "seq: must be a non-negative integer"),
    ({"v": 1, "type": "heartbeat", "run_id": "r", "seq": 0, "ts": "now"}, "ts: must be a number"),
    ({"v": 1, "type": "heartbeat", "run_id": "r", "seq": 0, "ts": False}, "ts: must be a number"),
    ({"v": 1, "type": "progress", "run_id": "r", "seq": 0, "ts": 0, "step": 1}, "missing field 'total'"),
    ({"v": 1, "type": "progress", "run_id": "r", "seq": 0, "ts": 0, "step": 1.5, "total": 2}, "progress.step: wrong"),
    ({"v": 1, "type": "progress", "run_id": "r", "seq": 0, "ts": 0, "step": True, "total": 2}, "wrong type bool"),
    ({"v": 1, "type": "phase", "run_id": "r", "seq": 0, "ts": 0, "phase": "nap"}, "unknown phase 'nap'"),
]


@pytest.mark.parametrize(("raw", "message"), EVENT_ERRORS)
def test_event_errors(raw: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        event_from_dict(raw)
    assert message in str(err.value)


def test_events_round_trip() -> None:
    ev = make_event("r1", 0, 1.0, "eval_result", benchmark="cmmlu", score=0.5, n=10, subsets={"a": 0.5})
    assert event_from_json(ev.to_json().encode()) == ev and not ev.is_final
    done = make_event("r1", 1, 2.0, "finished", status="succeeded")
    assert done.is_final and done.to_dict()["v"] == 1
    with pytest.raises(SpecError, match="not valid JSON"):
        event_from_json(b"\xff")
    with pytest.raises(SpecError, match="not valid JSON"):
        event_from_json("{")


def test_results_round_trip_and_scores() -> None:
    bench = BenchmarkResult("cmmlu", {"arts": SubsetScore(4, 3), "anatomy": SubsetScore(0, 0)},
                            {"arts/1": True, "arts/2": False}, config_hash="k")
    assert (bench.n, bench.correct, bench.score) == (4, 3, 0.75)
    assert bench.subsets["anatomy"].score == 0.0 and BenchmarkResult("x", {}, {}).score == 0.0
    results = Results("r1", "succeeded", {"cmmlu": bench}, train={"loss": 1.0}, manifest={"sha": "x"},
                      artifacts=({"name": "adapter"},))
    again = results_from_dict(json.loads(results.to_json()))
    assert again.to_dict() == results.to_dict()
    assert again.benchmarks["cmmlu"].questions == {"arts/1": True, "arts/2": False}


RESULT_ERRORS = [
    ([], "expected a JSON object"),
    ({"version": 2}, "unsupported version 2"),
    ({"version": 1, "scores": []}, "results.scores: expected an object"),
    ({"version": 1, "scores": {"x": {"benchmark": "x"}}}, "malformed benchmark entry"),
    ({"version": 1, "scores": {"x": {"benchmark": "x", "subsets": {"a": {"n": "many", "correct": 1}}}}},
     "malformed benchmark entry"),
]


@pytest.mark.parametrize(("raw", "message"), RESULT_ERRORS)
def test_results_errors(raw: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        results_from_dict(raw)
    with pytest.raises(SpecError):
        benchmark_from_dict({"benchmark": "x", "subsets": None})


def _docs() -> list[Any]:
    return [yaml.safe_load((REPO / "configs" / f"{n}.yaml").read_text())
            for n in ("models", "training", "benchmarks", "datasets")]


CATALOG_ERRORS = [
    (0, lambda d: d.update(presets=[]), "models.yaml: missing mapping 'presets'"),
    (0, lambda d: d["presets"].update(bad="x"), "models.yaml: bad: expected a mapping"),
    (0, lambda d: d["presets"]["tiny"].update(source="s3"), "tiny.source: 's3' is not one of"),
    (0, lambda d: d["presets"]["tiny"].pop("template"), "tiny: missing 'template'"),
    (0, lambda d: d["presets"]["tiny"].update(size_b="big"), "tiny.size_b: wrong type str"),
    (0, lambda d: d["presets"]["tiny"].update(size_b=True), "tiny.size_b: wrong type bool"),
    (1, lambda d: d.clear(), "training.yaml: missing mapping 'presets'"),
    (2, lambda d: d["packs"]["cmmlu"].update(default_subsets=["nope"]), "default_subsets not among subjects: nope"),
    (3, lambda d: d["datasets"]["alpaca-zh"].update(source="ftp"), "alpaca-zh.source: 'ftp' is not one of"),
    (2, lambda d: d["packs"]["general_mcq"].update(repo_folder="../x"), "general_mcq.repo_folder: must be one folder"),
    (2, lambda d: d["packs"]["cmmlu"].update(repo_folder="mcq"),
     "cmmlu: a pack whose questions come from the repository lists no subjects"),
]


@pytest.mark.parametrize(("index", "mutate", "message"), CATALOG_ERRORS)
def test_catalog_errors(index: int, mutate, message: str) -> None:
    docs = _docs()
    mutate(docs[index])
    with pytest.raises(SpecError) as err:
        build_catalog(*docs)
    assert message in str(err.value)


def test_catalog_sections_must_be_mappings() -> None:
    docs = _docs()
    docs[1] = ["not", "a", "mapping"]
    with pytest.raises(SpecError, match=r"training\.yaml: expected a mapping"):
        build_catalog(*docs)


def test_catalog_defaults_and_recommendations() -> None:
    catalog = build_catalog(*_docs())
    big = catalog.models["qwen-7b"]
    assert catalog.recommended_tuner(big) == "qlora"
    huge = type(big)(**{**vars(big), "size_b": 5000.0, "torch_dtype": None})
    assert catalog.recommended_tuner(huge) == "lora"  # beyond every bracket: no recommendation, plain LoRA
    assert "lora_rank" not in catalog.model_defaults(huge)


MORE_JOB_ERRORS = [
    (lambda d: d.update(version=2), "unsupported version 2"),
    (lambda d: d.update(run_id="a b"), "run_id: must be non-empty"),
    (lambda d: d.update(tuner=None), "tuner: required for kind 'train+eval'"),
    (lambda d: d.update(datasets=[]), "needs at least one training dataset"),
    (lambda d: d["hyper"].update(seed=True), "hyper.seed: expected int, got a boolean"),
    (lambda d: d.update(extra=1), "unknown field(s) extra"),
]


@pytest.mark.parametrize(("mutate", "message"), MORE_JOB_ERRORS)
def test_more_job_spec_errors(mutate, message: str) -> None:
    data = example()
    mutate(data)
    with pytest.raises(SpecError) as err:
        job_from_json(json.dumps(data))
    assert message in str(err.value)
    with pytest.raises(SpecError, match="not valid JSON"):
        job_from_json("nope")


def test_more_event_errors_and_signatures() -> None:
    from commands.events import sign_body, verify_body

    base = {"v": 1, "run_id": "r", "seq": 0, "ts": 0.0, "type": "heartbeat"}
    for change, message in (({"v": 2}, "unsupported version"), ({"type": "nap"}, "unknown type"),
                            ({"extra": 1}, "unknown field"), ({"type": "finished", "status": "meh"},
                                                               "unknown status")):
        with pytest.raises(SpecError, match=message):
            event_from_dict({**base, **change})
    body = b'{"v":1}'
    assert verify_body("k", body, sign_body("k", body))
    assert not verify_body("k", body, "md5=x") and not verify_body("k", body, None)
    assert not verify_body("other", body, sign_body("k", body))


def test_catalog_size_brackets() -> None:
    catalog = build_catalog(*_docs())
    qwen = catalog.models["qwen-7b"]  # 7.7B: the `max_size_b: 10` bracket of configs/models.yaml
    assert qwen.torch_dtype is None and "torch_dtype" not in catalog.model_defaults(qwen)
    assert catalog.model_defaults(qwen)["lora_rank"] == 16 and catalog.recommended_tuner(qwen) == "qlora"
    small = catalog.models["qwen2.5-0.5b-instruct"]  # under 2B: the first bracket
    assert (catalog.model_defaults(small)["lora_rank"], catalog.recommended_tuner(small)) == (8, "lora")


def test_results_from_events_keep_every_benchmarks_data_record() -> None:
    """The bot's copy of a run's results: each eval_result's manifest part is kept, nested records merged."""
    def result(seq: int, bench: str, data: dict[str, Any]) -> Any:
        return make_event("r-1", seq, 1.0, "eval_result", benchmark=bench, score=0.5, n=2, correct=1,
                          subsets={"s": {"n": 2, "correct": 1}}, questions={"s/1": True, "s/2": False},
                          config_hash="c" * 64, manifest={"benchmark_data": data, "seen": bench})

    mine = {"general_mcq": {"data_sha256": "a" * 64, "files": {"data/mcq/s.csv": "b" * 64}}}
    other = {"my_mcq": {"data_sha256": "d" * 64}}
    res = results_from_events("r-1", "succeeded", [result(0, "general_mcq", mine), result(1, "my_mcq", other)])
    assert res.manifest == {"benchmark_data": {**mine, **other}, "seen": "my_mcq"}
    assert res.benchmarks["general_mcq"].questions == {"s/1": True, "s/2": False}
    assert res.benchmarks["general_mcq"].config_hash == "c" * 64
