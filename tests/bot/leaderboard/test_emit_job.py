"""`tunebot parse --emit-job`: the leaderboard workflow's job spec is exactly what `/eval` plans, and bad comments
write nothing and say why in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from commands import Parsed, parse_comment
from commands.jobspec import job_from_json, job_to_json
from commands.plan import PRFacts, plan
from commands.policy import Policy, parse_policy
from configs import load_catalog
from tests.deploy.support import LEADERBOARD_WORKFLOW, load_yaml, step_named
from tunebot import parse_cmd

SHA = "0123456789abcdef0123456789abcdef01234567"
REPO_NAME = "octo/lb"


def emit(capsys: pytest.CaptureFixture[str], dest: Path, comment: str, *extra: str,
         run_id: str = "leaderboard-7-1-qwen3-8b") -> tuple[int, str, str]:
    code = parse_cmd.main(["--emit-job", str(dest), "--run-id", run_id, "--sha", SHA, "--repo", REPO_NAME,
                           *extra, comment])
    out, err = capsys.readouterr()
    return code, out, err


def planned(comment: str, run_id: str, policy: Policy | None = None) -> str:
    catalog = load_catalog()
    pol = policy or parse_policy(None)
    assert isinstance(pol, Policy)
    decision = parse_comment(comment, catalog=catalog, policy=pol)
    assert isinstance(decision, Parsed)
    (job,) = plan(decision.commands[0], PRFacts(repo=REPO_NAME, head_sha=SHA), pol, catalog, [run_id])
    return job_to_json(job.job)


def test_emitted_eval_job_is_what_eval_plans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "job.json"
    code, out, err = emit(capsys, dest, "/eval cmmlu ceval model=qwen3-8b")
    assert (code, out, err) == (0, "", "")
    text = dest.read_text(encoding="utf-8")
    job = job_from_json(text)  # the agent's strict reader accepts it
    assert job.run_id == "leaderboard-7-1-qwen3-8b" and job.repo == REPO_NAME and job.sha == SHA
    assert job.kind == "eval" and job.model.name == "qwen3-8b" and job.adapter is None and job.callback is None
    assert [b.name for b in job.benchmarks] == ["ceval", "cmmlu"]
    pack = load_catalog().benchmarks["cmmlu"]
    assert job.benchmarks[1].subsets == tuple(sorted(pack.default_subsets))
    assert text.strip() == planned("/eval cmmlu ceval model=qwen3-8b", job.run_id)


def test_eval_options_and_policy_flow_into_the_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy_file = tmp_path / ".tunebot.yml"
    policy_file.write_text("models:\n  allowed: [qwen3-8b, tiny]\nquotas:\n  max_run_hours: 2\n", encoding="utf-8")
    dest = tmp_path / "job.json"
    code, _, err = emit(capsys, dest, "/eval cmmlu limit=50 subsets=anatomy model=tiny", "--policy", str(policy_file))
    assert code == 0, err
    job = job_from_json(dest.read_text(encoding="utf-8"))
    assert job.limits.wall_clock_s == 2 * 3600
    assert job.benchmarks[0].limit == 50 and job.benchmarks[0].subsets == ("anatomy",)
    # The policy's model allow-list holds for the workflow too.
    code, _, err = emit(capsys, tmp_path / "other.json", "/eval cmmlu model=llama3-8b-instruct",
                        "--policy", str(policy_file))
    assert code == 1 and "llama3-8b-instruct" in err and not (tmp_path / "other.json").exists()


def test_sha_is_stored_lowercase_and_stdout_target(capsys: pytest.CaptureFixture[str]) -> None:
    code = parse_cmd.main(["--emit-job", "-", "--run-id", "r1", "--sha", SHA.upper(), "--repo", REPO_NAME,
                           "/eval ceval model=tiny"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert job_from_json(out).sha == SHA


@pytest.mark.parametrize(("comment", "extra", "says"), [
    # The workflow's old word order: the grammar is `/eval <benchmark…> model=<preset>`.
    ("/eval qwen3-8b cmmlu ceval", (), "unknown benchmark `qwen3-8b`"),
    ("/eval cmmlu model=no-such-model", (), "no-such-model"),
    ("/eval cmmlu model=tiny\n/eval ceval model=tiny", (), "exactly one /train or /eval"),
    ("/status", (), "exactly one /train or /eval"),
    ("/compare main", (), "`/compare` needs the bot"),
    ("/eval cmmlu model=tiny adapter=latest", (), "no successful training run"),
    ("just a comment", (), "no tunebot command"),
    ("/eval cmmlu model=tiny", ("--run-id", "bad id"), "--run-id 'bad id'"),
    ("/eval cmmlu model=tiny", ("--sha", "abc123"), "--sha 'abc123': expected a full commit SHA"),
    ("/eval cmmlu model=tiny", ("--repo", "not-a-repo"), "--repo 'not-a-repo': expected owner/name"),
])
def test_bad_input_writes_nothing_and_says_why_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], comment: str, extra: tuple[str, ...], says: str) -> None:
    dest = tmp_path / "job.json"
    dest.write_text("previous job\n", encoding="utf-8")  # a failed emit must not touch an existing file
    args = {"--run-id": "r1", "--sha": SHA, "--repo": REPO_NAME}
    args.update(dict(zip(extra[::2], extra[1::2], strict=True)))
    code = parse_cmd.main(["--emit-job", str(dest), *[x for kv in args.items() for x in kv], comment])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("tunebot parse: ") and err.count("\n") == 1, err
    assert says in err
    assert dest.read_text(encoding="utf-8") == "previous job\n"
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]  # no temporary file left behind


def test_emit_needs_run_id_sha_and_repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = parse_cmd.main(["--emit-job", str(tmp_path / "job.json"), "/eval cmmlu model=tiny"])
    _, err = capsys.readouterr()
    assert code == 1 and err.strip() == "tunebot parse: --emit-job needs --run-id, --sha, --repo"
    assert not (tmp_path / "job.json").exists()


def test_plan_output_is_unchanged_by_the_new_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_cmd.main(["--plan", "/eval cmmlu model=tiny"]) == 0
    data = json.loads(capsys.readouterr().out)
    job = data["plan"][0]["job"]
    assert job["repo"] == parse_cmd.PLACEHOLDER_REPO and job["sha"] == "0" * 40 and job["run_id"] == "local-1"


def _workflow() -> dict[str, Any]:
    wf: dict[str, Any] = load_yaml(LEADERBOARD_WORKFLOW)
    return wf


def test_the_workflow_step_emits_a_valid_job_for_every_model(tmp_path: Path) -> None:
    """Run the workflow's own `Write the job spec` script in bash, with `tunebot` on PATH, for each matrix model."""
    wf = _workflow()
    script = step_named(wf, "evaluate", "Write the job spec")["run"]
    models = wf["jobs"]["evaluate"]["strategy"]["matrix"]["model"]
    names = [w for w in wf["env"]["TUNEBOT_BENCHMARKS"].split() if "=" not in w]
    assert models and names  # something to run the step for
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tunebot"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tunebot "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    repo_root = Path(__file__).resolve().parents[3]
    for model in models:
        temp = tmp_path / model
        # GitHub sets the workflow's env for every step: the step reads it (models, benchmarks, trusted presets).
        temp.mkdir()
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "PYTHONPATH": str(repo_root), "RUNNER_TEMP": str(temp), "GITHUB_RUN_ID": "12345",
               "GITHUB_RUN_ATTEMPT": "2", "GITHUB_SHA": SHA, "GITHUB_REPOSITORY": REPO_NAME,
               "TUNEBOT_MODEL": model, **{k: str(v) for k, v in wf["env"].items()}}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=temp,
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        text = (temp / "tunebot" / "job.json").read_text(encoding="utf-8")
        job = job_from_json(text)
        assert job.run_id == f"leaderboard-12345-2-{model}" and job.model.name == model
        assert sorted(b.name for b in job.benchmarks) == sorted(names)
        policy = parse_policy((temp / "tunebot" / "policy.yml").read_text(encoding="utf-8"))
        assert isinstance(policy, Policy)
        trusted = wf["env"]["TUNEBOT_TRUST_REMOTE_CODE"].split()
        assert trusted and set(policy.trust_remote_code) == set(trusted)  # the step's policy opts in to those only
        assert text.strip() == planned(f"/eval {wf['env']['TUNEBOT_BENCHMARKS']} model={model}", job.run_id, policy)
