"""Issue 14 in the command language: `/train … gpus= nodes= deepspeed= fsdp=` checked against the repository's
`runners` policy, the job's resources and runner labels, and `backend=served` as part of every score's identity."""

from __future__ import annotations

import pytest

from commands.decision import Command, Parsed, Reply
from commands.plan import PlanError, PRFacts, TrainedRun, plan
from commands.policy import DEFAULT_POLICY, Policy, PolicyError, Runners, parse_policy
from configs import load_catalog

CATALOG = load_catalog()
HEAD = "1" * 40
RUNNERS = ("runners:\n  max_gpus: 8\n  max_nodes: 2\n  labels:\n    1: [self-hosted, gpu]\n"
           "    4: [self-hosted, gpu-4]\n    8: [self-hosted, gpu-8]\n")


def _policy(text: str = RUNNERS) -> Policy:
    pol = parse_policy(text, catalog=CATALOG)
    assert isinstance(pol, Policy), pol
    return pol


def _plan(verb: str, pol: Policy = DEFAULT_POLICY, **args: object):
    base: dict[str, object] = {"model": "tiny", "dataset": ("data/train.jsonl",), "max_steps": 20} \
        if verb == "train" else {"model": "tiny", "benchmarks": ("cmmlu",)}
    facts = PRFacts(repo="o/r", head_sha=HEAD, blobs={"data/train.jsonl": "a" * 40})
    [pj] = plan(Command(verb, {**base, **args}), facts, pol, CATALOG, ["run-1"])
    return pj


def test_runner_labels_follow_the_gpu_count() -> None:
    runners = _policy().runners
    assert runners == Runners(max_gpus=8, max_nodes=2, labels={1: ("self-hosted", "gpu"), 4: ("self-hosted", "gpu-4"),
                                                               8: ("self-hosted", "gpu-8")})
    assert runners.runs_on(1) == ("self-hosted", "gpu")
    assert runners.runs_on(2) == ("self-hosted", "gpu-4")  # the smallest class that fits
    assert runners.runs_on(4) == ("self-hosted", "gpu-4")
    assert runners.runs_on(8) == ("self-hosted", "gpu-8")
    assert Runners().runs_on(2) is None  # no labels: the workflow's defaults
    bad = parse_policy("runners:\n  max_gpus: 6\n")
    assert isinstance(bad, PolicyError) and "power of two" in bad.message and bad.line == 2


def test_train_with_gpus_and_zero3_plans_resources(parse) -> None:  # type: ignore[no-untyped-def]
    pol = _policy()
    decision = parse("/train tiny max_steps=20 dataset=data/train.jsonl gpus=4 deepspeed=zero3", pol)
    assert isinstance(decision, Parsed), decision
    args = decision.commands[0].args
    assert (args["gpus"], args["deepspeed"]) == (4, "zero3")
    pj = _plan("train", pol, gpus=4, nodes=2, deepspeed="zero3")
    assert pj.job.resources is not None
    assert (pj.job.resources.gpus, pj.job.resources.nodes, pj.job.resources.sharding) == (4, 2, "zero3")
    assert _plan("train", pol).job.resources is None  # one GPU: the job is exactly as before
    # More processes, a larger effective batch: another recipe. Sharding alone does not change the weights' maths.
    assert _plan("train", pol, gpus=4).result_key != _plan("train", pol).result_key
    assert _plan("train", pol, gpus=4).result_key == _plan("train", pol, gpus=4, deepspeed="zero2").result_key


@pytest.mark.parametrize(("text", "message"), [
    ("gpus=3", "power of two"),
    ("gpus=16", "power of two up to 8"),
    ("nodes=3", "at most 2"),
    ("gpus=2 deepspeed=zero3 fsdp=fsdp2", "choose one"),
    ("gpus=2 deepspeed=zero4", "zero3"),
])
def test_bad_resources_get_a_clear_reply(parse, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    decision = parse(f"/train tiny max_steps=20 dataset=data/train.jsonl {text}", _policy())
    assert isinstance(decision, Reply), decision
    assert message in decision.text


def test_the_default_policy_allows_one_gpu_only() -> None:
    with pytest.raises(PlanError, match="power of two up to 1"):
        _plan("train", DEFAULT_POLICY, gpus=2)


def test_served_backend_is_part_of_the_eval_identity() -> None:
    native = _plan("eval")
    served = _plan("eval", backend="served")
    assert served.job.eval_backend == "served" and native.job.eval_backend is None
    assert served.benchmark_keys["cmmlu"] != native.benchmark_keys["cmmlu"]
    assert _plan("eval", backend="native").benchmark_keys == native.benchmark_keys  # native is the old key
    trained = _plan("train", DEFAULT_POLICY, eval=("cmmlu",), backend="served")
    assert trained.job.eval_backend == "served"
    assert trained.result_key == _plan("train", DEFAULT_POLICY, eval=("cmmlu",)).result_key  # same weights
    assert trained.benchmark_keys != _plan("train", DEFAULT_POLICY, eval=("cmmlu",)).benchmark_keys


def test_served_adapter_jobs_score_the_base_model_too_and_its_events_stay_apart() -> None:
    from commands.events import Event, event_from_json
    from commands.results import results_from_events

    assert _plan("eval", adapter="run-0", backend="served").job.eval_base is True
    assert _plan("eval", adapter="run-0").job.eval_base is None
    assert _plan("train", DEFAULT_POLICY, eval=("cmmlu",), backend="served").job.eval_base is True
    common = {"benchmark": "cmmlu", "n": 2, "subsets": {"agronomy": {"n": 2, "correct": 0}},
              "questions": {"agronomy/1": False, "agronomy/2": False}, "config_hash": "h"}
    events = [Event("r", 0, 0.0, "eval_result", {**common, "score": 1.0, "correct": 2,
                                                  "subsets": {"agronomy": {"n": 2, "correct": 2}},
                                                  "questions": {"agronomy/1": True, "agronomy/2": True}}),
              Event("r", 1, 0.0, "eval_result", {**common, "score": 0.0, "correct": 0, "model": "base"})]
    for ev in events:  # the protocol accepts the marker
        assert event_from_json(__import__("json").dumps(ev.to_dict())).data == ev.data
    res = results_from_events("r", "succeeded", events)
    assert res.benchmarks["cmmlu"].score == 1.0 and res.base_benchmarks["cmmlu"].score == 0.0


def test_a_fallback_result_is_keyed_on_the_backend_that_really_ran() -> None:
    """A served job whose server could not start was scored natively: its result takes the key a native job of the
    same evaluation gets (never the served one), and the base model's scores the keys of a plain `/eval` of it."""
    from commands.plan import adapter_identities, base_result_keys, stored_result_keys

    for verb, args, trained_key in [("eval", {"adapter": "run-0"}, None),
                                    ("eval", {}, None),
                                    ("train", {"eval": ("cmmlu",)}, "")]:
        served = _plan(verb, backend="served", **args)
        native = _plan(verb, **args)
        key = served.result_key if verb == "train" else trained_key
        adapters = adapter_identities(served.job, key)
        for used, expected in [({"cmmlu": "native"}, native.benchmark_keys),
                               ({"cmmlu": "served"}, served.benchmark_keys),
                               ({}, served.benchmark_keys)]:  # an agent that does not say: the planned backend
            assert stored_result_keys(served.job, CATALOG, "run-1", ["cmmlu"], served.benchmark_keys, used,
                                      adapters) == expected
        assert native.benchmark_keys != served.benchmark_keys
        # The other way round too: a native job whose result says served is not stored under the native key.
        back = stored_result_keys(native.job, CATALOG, "run-1", ["cmmlu"], native.benchmark_keys,
                                  {"cmmlu": "served"}, adapters)
        assert back == served.benchmark_keys
    # An adapter the planner knew by its training key is found by it (the run-id identity does not reproduce it).
    facts = PRFacts(repo="o/r", head_sha=HEAD, trained_runs={"run-0": TrainedRun("run-0", "tiny", "k" * 64)})
    [served] = plan(Command("eval", {"model": "tiny", "benchmarks": ("cmmlu",), "adapter": "run-0",
                                     "backend": "served"}), facts, DEFAULT_POLICY, CATALOG, ["run-1"])
    [native] = plan(Command("eval", {"model": "tiny", "benchmarks": ("cmmlu",), "adapter": "run-0"}), facts,
                    DEFAULT_POLICY, CATALOG, ["run-1"])
    assert stored_result_keys(served.job, CATALOG, "run-1", ["cmmlu"], served.benchmark_keys, {"cmmlu": "native"},
                              adapter_identities(served.job, "k" * 64)) == native.benchmark_keys
    # Keys that no identity reproduces (planned by another version): this run's own key, reused by nobody.
    assert stored_result_keys(served.job, CATALOG, "run-1", ["cmmlu"], {"cmmlu": "old"}, {"cmmlu": "native"},
                              adapter_identities(served.job, None)) == {"cmmlu": "run:run-1:cmmlu:native"}

    # The base model's scores of an eval_base job: the keys of `/eval tiny backend=served` (or native, if it fell back).
    job = _plan("train", eval=("cmmlu",), backend="served").job
    assert job.eval_base is True
    assert base_result_keys(job, CATALOG, ["cmmlu"], {"cmmlu": "served"}) \
        == _plan("eval", backend="served").benchmark_keys
    assert base_result_keys(job, CATALOG, ["cmmlu"], {}) == _plan("eval", backend="served").benchmark_keys
    assert base_result_keys(job, CATALOG, ["cmmlu"], {"cmmlu": "native"}) == _plan("eval").benchmark_keys


def test_the_eval_result_event_names_a_known_backend() -> None:
    from commands.events import make_event
    from commands.jobspec import SpecError

    ev = make_event("r", 0, 0.0, "eval_result", benchmark="cmmlu", score=0.5, n=2, backend="native")
    assert ev.data["backend"] == "native"
    with pytest.raises(SpecError, match="unknown backend 'vllm'; allowed: native, served"):
        make_event("r", 0, 0.0, "eval_result", benchmark="cmmlu", score=0.5, n=2, backend="vllm")
