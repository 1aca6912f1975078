"""Finding 3 (issue 11): hub refs and hub code. A model revision is a commit SHA, tag or branch (never a hub pull
request such as `refs/pr/7`), and a model's hub code (`trust_remote_code`) runs only for presets that need it, only
when the repository's policy opted in, and otherwise cannot run in ms-swift's or EvalScope's processes although
both ask for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from commands import Parsed, Reply, parse_comment
from commands.jobspec import SpecError, job_from_json, job_to_json
from commands.plan import PlanError, PRFacts, TrainedRun, plan
from commands.policy import DEFAULT_POLICY, Policy, parse_policy
from configs import load_catalog
from runner_agent.context import AgentConfig, RunContext
from runner_agent.procs import Watchdog
from runner_agent.sinks import EventBus

CATALOG = load_catalog()
PR = PRFacts(repo="octo/demo", head_sha="1" * 40, base_ref="main", number=7)
TRUSTING = parse_policy("models: {trust_remote_code: [qwen-7b]}\n", catalog=CATALOG)
assert isinstance(TRUSTING, Policy)


def _reply(text: str, policy: Policy = DEFAULT_POLICY) -> str:
    decision = parse_comment(text, catalog=CATALOG, policy=policy)
    assert isinstance(decision, Reply), decision
    return decision.text


@pytest.mark.parametrize("ref", ["refs/pr/7", "refs/PR/7", "refs/convert/parquet", "refs/heads/main"])
def test_a_hub_ref_outside_branches_and_tags_is_refused_when_parsed(ref: str) -> None:
    text = _reply(f"/train qwen2.5-7b-instruct dataset=alpaca-zh revision={ref}")
    assert "`revision` takes a commit SHA, a tag or a branch name" in text and ref in text
    if ref.lower().startswith("refs/pr/"):
        assert "a pull request on the hub" in text
    assert "`revision` takes a commit SHA" in _reply(f"/eval cmmlu model=qwen2.5-7b-instruct revision={ref}")
    # What is accepted: a branch, a tag, a full commit SHA.
    for good in ("main", "v1.1.4", "0123456789abcdef0123456789abcdef01234567"):
        decision = parse_comment(f"/train qwen2.5-7b-instruct dataset=alpaca-zh revision={good}", catalog=CATALOG,
                                 policy=DEFAULT_POLICY)
        assert isinstance(decision, Parsed) and decision.commands[0].args["revision"] == good


def test_a_signed_job_naming_a_hub_pull_request_is_not_a_valid_job() -> None:
    decision = parse_comment("/train tiny max_steps=2", catalog=CATALOG, policy=DEFAULT_POLICY)
    assert isinstance(decision, Parsed)
    job = plan(decision.commands[0], PR, DEFAULT_POLICY, CATALOG, ["r-1"])[0].job
    raw = json.loads(job_to_json(job))
    raw["model"]["revision"] = "refs/pr/7"
    with pytest.raises(SpecError, match=r"model\.revision: .*refs/pr/7"):
        job_from_json(json.dumps(raw))


def test_hub_code_needs_the_policys_opt_in_on_every_path() -> None:
    text = _reply("/train qwen-7b dataset=alpaca-zh")
    assert "runs Python code from its hub repository" in text and "`models.trust_remote_code`" in text
    assert "runs Python code" in _reply("/eval cmmlu model=qwen-7b")
    # An adapter's base model is not named in the comment: the planner refuses it too.
    trained = PRFacts(**{**PR.__dict__, "latest_train_run": "r-0",
                         "trained_runs": {"r-0": TrainedRun("r-0", "qwen-7b", "k")}})
    decision = parse_comment("/eval cmmlu adapter=latest", catalog=CATALOG, policy=DEFAULT_POLICY)
    assert isinstance(decision, Parsed)
    with pytest.raises(PlanError, match="runs Python code from its hub repository"):
        plan(decision.commands[0], trained, DEFAULT_POLICY, CATALOG, ["r-1"])
    # Opted in: the signed job says so, and only for the preset that needs it.
    decision = parse_comment("/train qwen-7b dataset=alpaca-zh", catalog=CATALOG, policy=TRUSTING)
    assert isinstance(decision, Parsed)
    assert plan(decision.commands[0], PR, TRUSTING, CATALOG, ["r-1"])[0].job.model.trust_remote_code is True
    decision = parse_comment("/train qwen2.5-7b-instruct dataset=alpaca-zh", catalog=CATALOG, policy=TRUSTING)
    assert isinstance(decision, Parsed)
    assert plan(decision.commands[0], PR, TRUSTING, CATALOG, ["r-1"])[0].job.model.trust_remote_code is False


# A checkpoint whose config maps to a Python file in its own repository: loading it with trust_remote_code=True
# imports that file, which here leaves a marker (a real attacker's file would do anything the runner can).
EVIL = """
import os, pathlib
pathlib.Path(os.environ["TUNEBOT_TEST_PWNED"]).write_text("hub code ran", encoding="utf-8")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil"
"""
LOADERS = """
import json, sys
path, which = sys.argv[1], sys.argv[2]
try:
    if which == "evalscope":  # EvalScope's own checkpoint loader (eval_type llm_ckpt), trust_remote_code=True inside
        from evalscope.models.modelscope import ModelScopeAPI
        ModelScopeAPI(model_name=path, device_map="cpu", precision="torch.float32")
    else:  # what ms-swift's ModelLoader does first (default_trust_remote_code = True)
        from transformers import AutoConfig
        AutoConfig.from_pretrained(path, trust_remote_code=True)
    print(json.dumps({"loaded": True}))
except Exception as exc:
    print(json.dumps({"loaded": False, "error": f"{type(exc).__name__}: {exc}"}))
"""


def _evil_model(root: Path) -> Path:
    model = root / "evil-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}), encoding="utf-8")
    (model / "evil.py").write_text(EVIL, encoding="utf-8")
    return model


def _load(tmp_path: Path, which: str, *, trusted: bool) -> tuple[dict[str, Any], bool]:
    marker = tmp_path / f"pwned-{which}-{trusted}"
    cfg = AgentConfig(out=tmp_path / "out", cache=tmp_path / "cache", base_env={**os.environ,
                                                                                "TUNEBOT_TEST_PWNED": str(marker)})
    ctx = RunContext(cfg, EventBus("t", []), Watchdog(None), tmp_path / "scratch", tmp_path / "logs",
                     trust_remote_code=trusted)
    env = ctx.tool_env(offline=True)  # the environment every tool process of the run gets
    model = tmp_path / "evil-model" if (tmp_path / "evil-model").is_dir() else _evil_model(tmp_path)
    proc = subprocess.run([sys.executable, "-c", LOADERS, str(model), which], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, marker.exists()


@pytest.mark.parametrize("which", ["evalscope", "ms-swift"])
def test_tools_cannot_run_hub_code_unless_the_job_allows_it(tmp_path: Path, which: str) -> None:
    result, ran = _load(tmp_path, which, trusted=False)
    assert not ran, "the model's own Python file ran although the job does not allow hub code"
    assert result["loaded"] is False and "custom code" in result["error"], result
    # The positive control: with the job's permission the same call imports the file (so the attack is real).
    _, ran = _load(tmp_path, which, trusted=True)
    assert ran
