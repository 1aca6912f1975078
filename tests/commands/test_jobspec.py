"""The job spec and event contract: strict parsing, clear errors, stable round trips."""

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from commands.events import event_from_dict, event_from_json, make_event, sign_body, verify_body
from commands.jobspec import SpecError, job_from_dict, job_from_json, job_to_json

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "examples" / "tiny-train-eval.json"


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def test_example_parses_and_round_trips() -> None:
    job = job_from_json(EXAMPLE.read_text())
    assert job.kind == "train+eval" and job.model.name == "tiny" and job.tuner == "lora"
    assert [b.name for b in job.benchmarks] == ["ceval", "cmmlu"]
    assert job_from_json(job_to_json(job)) == job


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=2), "unsupported version 2"),
        (lambda d: d.pop("version"), "unsupported version None"),
        (lambda d: d.update(colour="red"), "unknown field(s) colour"),
        (lambda d: d["hyper"].update(lora_rnak=8), "hyper: unknown field(s) lora_rnak"),
        (lambda d: d["hyper"].update(lora_rank="8"), "hyper.lora_rank: expected int, got str"),
        (lambda d: d["hyper"].update(lora_rank=True), "hyper.lora_rank: expected int, got a boolean"),
        (lambda d: d.update(kind="deploy"), "kind: 'deploy' is not one of"),
        (lambda d: d.update(tuner=None), "tuner: required for kind"),
        (lambda d: d.update(datasets=[]), "needs at least one training dataset"),
        (lambda d: d.update(benchmarks=[]), "needs at least one benchmark"),
        (lambda d: d.pop("model"), "model: required field is missing"),
        (lambda d: d.update(run_id="a b;rm"), "run_id: must be non-empty"),
        (
            lambda d: d["datasets"].append({"name": "x", "source": "local", "id": "../../etc/passwd"}),
            "inside the repository",
        ),
        (lambda d: d["benchmarks"][0].update(subsets="logic"), "expected a list of strings"),
        (lambda d: d["benchmarks"][0].update(data_dir="../other/mcq"),
         "benchmarks: 'ceval' data_dir must be a folder inside the repository, got '../other/mcq'"),
        (lambda d: d["benchmarks"][0].update(data_dir="/etc"), "data_dir must be a folder inside the repository"),
        (lambda d: d["benchmarks"][0].update(data_dir=3), "benchmarks[0].data_dir: expected str, got int"),
    ],
)
def test_malformed_jobs_are_rejected_with_a_reason(mutate, message) -> None:
    data = example()
    mutate(data)
    with pytest.raises(SpecError) as err:
        job_from_dict(data)
    assert message in str(err.value)


def test_data_dir_is_written_only_when_set() -> None:
    """Jobs without repository questions stay byte-identical to what runners older than `data_dir` accept."""
    text = EXAMPLE.read_text()
    job = job_from_json(text)
    assert '"data_dir"' not in job_to_json(job)
    assert json.loads(job_to_json(job)) == json.loads(text)
    data = example()
    data["benchmarks"].append({"name": "general_mcq", "subsets": ["all"], "data_dir": "data/mcq"})
    mcq = job_from_dict(data)
    assert mcq.benchmarks[2].data_dir == "data/mcq" and job_from_json(job_to_json(mcq)) == mcq
    assert job_to_json(mcq).count('"data_dir"') == 1


def eval_with_adapter(**adapter: object) -> dict:
    data = example()
    data.update(kind="eval", tuner=None, datasets=[], adapter={"run_id": "tb-train-1", **adapter})
    return data


def test_adapter_carries_the_workflow_run_that_trained_it() -> None:
    job = job_from_dict(eval_with_adapter(workflow_run_id=7123456789))
    assert job.adapter is not None and job.adapter.workflow_run_id == 7123456789
    assert job_from_json(job_to_json(job)) == job
    # Specs written before the field existed still parse: it is optional and defaults to None.
    old = job_from_dict(eval_with_adapter())
    assert old.adapter is not None and old.adapter.workflow_run_id is None
    assert '"workflow_run_id": null' in job_to_json(old)


@pytest.mark.parametrize(
    ("value", "message"), [("7123", "expected int, got str"), (True, "expected int, got a boolean")]
)
def test_adapter_workflow_run_id_must_be_an_integer(value: object, message: str) -> None:
    with pytest.raises(SpecError, match=f"adapter.workflow_run_id: {message}"):
        job_from_dict(eval_with_adapter(workflow_run_id=value))


def test_not_json_says_where() -> None:
    with pytest.raises(SpecError, match=r"not valid JSON .* line 1"):
        job_from_json("{nope")


def test_events_validate_and_round_trip() -> None:
    ev = make_event("r1", 3, 1.5, "progress", step=5, total=20, loss=2.5, eta_s=3.0)
    assert event_from_json(ev.to_json()) == ev
    with pytest.raises(SpecError, match="unknown type"):
        event_from_dict({**ev.to_dict(), "type": "explode"})
    with pytest.raises(SpecError, match="unknown field"):
        event_from_dict({**ev.to_dict(), "bogus": 1})
    with pytest.raises(SpecError, match="unsupported version"):
        event_from_dict({**ev.to_dict(), "v": 9})
    with pytest.raises(SpecError, match="unknown status"):
        make_event("r1", 4, 2.0, "finished", status="exploded")


def test_callback_signature() -> None:
    body = b'{"a":1}'
    sig = sign_body("tok", body)
    assert sig == "sha256=" + hmac.new(b"tok", body, hashlib.sha256).hexdigest()  # the header the bot checks
    assert verify_body("tok", body, sig)
    assert not verify_body("tok", body + b" ", sig)
    assert not verify_body("other", body, sig)
    assert not verify_body("tok", body, None)
