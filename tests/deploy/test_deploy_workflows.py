"""The dispatched run workflow and the leaderboard workflow: linted, schema-checked, held to tunebot's security
policy, and their shell steps executed against good and hostile inputs."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.github.port import run_name
from commands.events import sign_body
from configs import load_catalog
from tests.deploy.support import (
    LEADERBOARD_WORKFLOW,
    RUN_WORKFLOW,
    WORKFLOWS,
    load_yaml,
    run_tool,
    step_named,
    steps_of,
    tool,
)
from tests.deploy.workflow_policy import check_workflow
from tests.paths import REPO

ALL_WORKFLOWS = [RUN_WORKFLOW, LEADERBOARD_WORKFLOW]
RUN_INPUTS = {"run_id", "sha", "job", "job_sig", "callback_url", "runs_on"}
EXAMPLE_JOB = REPO / "configs" / "examples" / "tiny-train-eval.json"


@pytest.fixture(scope="module")
def run_wf() -> dict[str, Any]:
    return load_yaml(RUN_WORKFLOW)


@pytest.fixture(scope="module")
def board_wf() -> dict[str, Any]:
    return load_yaml(LEADERBOARD_WORKFLOW)


# --- linters ------------------------------------------------------------------------------------------------


def test_actionlint_with_shellcheck_passes() -> None:
    result = run_tool([tool("actionlint"), "-shellcheck", tool("shellcheck"), *map(str, ALL_WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_runs_shellcheck_and_the_injection_check(tmp_path: Path) -> None:
    # Guards the guard: a broken tool setup (no shellcheck found, say) would make the test above pass vacuously.
    text = RUN_WORKFLOW.read_text().replace(
        'tunebot agent run --job "$RUNNER_TEMP/tunebot/job.json"',
        "tunebot agent run --job $RUNNER_TEMP/tunebot/job.json --sha ${{ github.event.inputs.sha }}",
    )
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    result = run_tool([tool("actionlint"), "-shellcheck", tool("shellcheck"), str(bad)])
    assert result.returncode == 1
    assert "SC2086" in result.stdout  # from shellcheck
    assert "potentially untrusted" in result.stdout or "github.event.inputs" in result.stdout


def test_jactionlint_security_rules_pass_at_the_pedantic_profile() -> None:
    result = run_tool([tool("jactionlint"), "--profile", "pedantic", "--strict-exit", "--no-color",
                       *map(str, ALL_WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_match_the_github_workflow_schema() -> None:
    result = run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                       *map(str, ALL_WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_workflow_keeps_the_tunebot_policy(path: Path) -> None:
    assert check_workflow(load_yaml(path), path.read_text()) == []


def test_only_workflow_files_live_in_deploy_github() -> None:
    # A workflow dropped here without being added to ALL_WORKFLOWS would escape every check above.
    assert sorted(WORKFLOWS.glob("*.y*ml")) == sorted(ALL_WORKFLOWS)


# --- the policy checker catches what it claims to catch -------------------------------------------------------

MUTATIONS = {
    "expression in run": (
        'tunebot agent run --job "$RUNNER_TEMP/tunebot/job.json"',
        'tunebot agent run --job "$RUNNER_TEMP/tunebot/job.json" --sha "${{ inputs.sha }}"',
        "inside `run:`",
    ),
    "tag instead of sha": (
        "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0",
        "actions/checkout@v5",
        "not pinned",
    ),
    "pin without release comment": (
        "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0",
        "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8",
        "needs a `# vX.Y.Z` comment",
    ),
    "credentials kept": ("persist-credentials: false", "persist-credentials: true", "persist-credentials"),
    "write-all": ("permissions:\n  contents: read", "permissions:\n  contents: write", "workflow-level permission"),
    "unneeded read scope": ("  actions: read", "  packages: read", "not on the read list"),
    "cleanup not always": (
        "      - name: Clean up\n        if: ${{ always() }}",
        "      - name: Clean up\n        if: ${{ success() }}",
        "must clean up",
    ),
    "python without -I": ("python3 -I -m runner_agent.verify_job", "python3 -m runner_agent.verify_job", "without -I"),
    "job spec in env": (
        "          TUNEBOT_RUN_ID: ${{ inputs.run_id }}\n          TUNEBOT_SHA",
        "          TUNEBOT_JOB: ${{ inputs.job }}\n"
        "          TUNEBOT_RUN_ID: ${{ inputs.run_id }}\n          TUNEBOT_SHA",
        "carries the job spec",
    ),
    "no timeout": ("    timeout-minutes: 420\n", "", "no timeout-minutes"),
    "secret at job level": (
        "      TUNEBOT_REPO_DIR: ${{ github.workspace }}/checkout\n",
        "      TUNEBOT_REPO_DIR: ${{ github.workspace }}/checkout\n"
        "      KEY: ${{ secrets.TUNEBOT_JOB_SIGNING_KEY }}\n",
        "secrets in job- or workflow-level env",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_policy_rejects_a_weakened_run_workflow(name: str) -> None:
    old, new, expected = MUTATIONS[name]
    text = RUN_WORKFLOW.read_text()
    assert old in text, f"mutation {name!r} no longer applies; update it"
    mutated = text.replace(old, new, 1)
    problems = check_workflow(load_yaml(mutated), mutated)
    assert any(expected in p for p in problems), problems


# --- the run workflow's contract with the bot and the agent -------------------------------------------------


def test_run_workflow_inputs_are_the_agreed_strings(run_wf: dict[str, Any]) -> None:
    inputs = run_wf["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == RUN_INPUTS
    assert all(spec["type"] == "string" for spec in inputs.values())
    assert {name for name, spec in inputs.items() if spec.get("required")} == RUN_INPUTS - {"callback_url", "runs_on"}
    assert set(run_wf["on"]) == {"workflow_dispatch"}


def test_a_multi_gpu_job_picks_its_runner_labels_from_the_dispatch(run_wf: dict[str, Any]) -> None:
    # bot/jobs.py sends `runs_on` (the policy's labels for the job's GPU count) only for multi-GPU jobs; every other
    # job keeps the repository's TUNEBOT_RUNS_ON or the classic labels.
    runs_on = run_wf["jobs"]["run"]["runs-on"]
    assert runs_on.startswith("${{ fromJSON(inputs.runs_on != '' && inputs.runs_on || vars.TUNEBOT_RUNS_ON")


def test_run_is_named_and_grouped_by_run_id(run_wf: dict[str, Any]) -> None:
    # The bot finds the run by this exact name when the dispatch answers without a run id, and binds nothing else.
    assert run_wf["run-name"] == "tunebot ${{ inputs.run_id }}" == run_name("${{ inputs.run_id }}")
    assert "inputs.run_id" in run_wf["concurrency"]["group"]
    assert run_wf["concurrency"]["cancel-in-progress"] is False


def test_run_job_targets_gpu_runners_with_read_only_token(run_wf: dict[str, Any]) -> None:
    job = run_wf["jobs"]["run"]
    # actions: read is for the one download of an earlier run's artifact (an adapter eval); nothing writes.
    assert run_wf["permissions"] == {"contents": "read", "actions": "read"}
    assert "permissions" not in job
    default_labels = re.search(r"'(\[.*\])'", job["runs-on"])
    assert default_labels and json.loads(default_labels.group(1)) == ["self-hosted", "gpu"]
    assert job["environment"] == "tunebot"
    agent = step_named(run_wf, "run", "Run the agent")
    assert agent["timeout-minutes"] < job["timeout-minutes"]  # leaves time for upload and cleanup


def test_run_steps_come_in_the_safe_order(run_wf: dict[str, Any]) -> None:
    names = [s.get("name") for s in steps_of(run_wf, "run")]
    assert names == [
        "Check inputs",
        "Write the job spec",
        "Verify the job signature",
        "Find the adapter to evaluate",
        "Download the adapter's run",
        "Check out the approved commit (as data)",
        "Verify the checked-out commit",
        "Run the agent",
        "Note a failure in the job summary",
        "Upload the signed event log",
        "Upload results",
        "Clean up",
    ]
    checkout = step_named(run_wf, "run", "Check out the approved commit (as data)")
    assert checkout["with"]["ref"] == "${{ inputs.sha }}"
    assert checkout["with"]["persist-credentials"] is False
    upload = step_named(run_wf, "run", "Upload results")
    assert upload["if"] == "${{ always() }}"
    assert upload["with"]["name"] == "tunebot-${{ inputs.run_id }}"
    # The bot finishes a run from this artifact when the agent's final callback was lost (bot/lifecycle.py).
    log = step_named(run_wf, "run", "Upload the signed event log")
    assert log["if"] == "${{ always() }}"
    assert log["with"]["name"] == "tunebot-${{ inputs.run_id }}-events"
    assert log["with"]["path"].splitlines() == ["${{ runner.temp }}/tunebot/out/events.jsonl",
                                           "${{ runner.temp }}/tunebot/out/events.jsonl.sig"]


def test_adapter_artifact_is_downloaded_only_when_the_signed_job_names_it(
    run_wf: dict[str, Any], board_wf: dict[str, Any]
) -> None:
    find = step_named(run_wf, "run", "Find the adapter to evaluate")
    assert find["id"] == "adapter"
    assert find["run"].count("python3 -I -c") == 1 and '"$RUNNER_TEMP/tunebot/job.json"' in find["run"]
    download = step_named(run_wf, "run", "Download the adapter's run")
    assert download["if"] == "${{ steps.adapter.outputs.workflow_run_id != '' }}"
    # The same reviewed release as the leaderboard's download, not a second pin to keep up to date.
    assert download["uses"] == step_named(board_wf, "post", "Download results")["uses"]
    assert download["uses"] == "actions/download-artifact@37930b1c2abaa49bbe596cd826c3c89aef350131"
    assert download["with"] == {
        "name": "tunebot-${{ steps.adapter.outputs.run_id }}",  # what "Upload results" named it in that run
        "run-id": "${{ steps.adapter.outputs.workflow_run_id }}",
        "github-token": "${{ github.token }}",
        "path": "${{ runner.temp }}/tunebot/adapter-run",
    }
    upload = step_named(run_wf, "run", "Upload results")
    assert upload["with"]["name"].replace("inputs.run_id", "steps.adapter.outputs.run_id") == \
        download["with"]["name"]


TRACKER_SECRETS = {"WANDB_API_KEY", "SWANLAB_API_KEY", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                   "MLFLOW_TRACKING_PASSWORD"}


def test_signing_key_reaches_only_the_verify_step(run_wf: dict[str, Any]) -> None:
    holders = [s["name"] for s in steps_of(run_wf, "run") if "secrets." in json.dumps(s)]
    assert holders == ["Verify the job signature", "Run the agent"]
    assert "TUNEBOT_JOB_SIGNING_KEY" not in json.dumps(step_named(run_wf, "run", "Run the agent"))
    # The agent step holds only the experiment trackers' credentials (issue 15), each under its own name, via env:.
    agent_env = step_named(run_wf, "run", "Run the agent")["env"]
    secret_env = {k: v for k, v in agent_env.items() if "secrets." in str(v)}
    assert set(secret_env) == TRACKER_SECRETS
    assert all(v == f"${{{{ secrets.{k} }}}}" for k, v in secret_env.items())
    assert "secrets." not in step_named(run_wf, "run", "Run the agent")["run"]
    verify = step_named(run_wf, "run", "Verify the job signature")
    assert verify["env"]["TUNEBOT_JOB_SIGNING_KEY"] == "${{ secrets.TUNEBOT_JOB_SIGNING_KEY }}"


def test_every_run_step_works_outside_the_checkout(run_wf: dict[str, Any]) -> None:
    for step in steps_of(run_wf, "run"):
        if "run" in step:
            assert step.get("working-directory") == "${{ runner.temp }}", step["name"]


def test_commands_the_workflow_calls(run_wf: dict[str, Any]) -> None:
    verify = step_named(run_wf, "run", "Verify the job signature")["run"]
    assert re.search(r"python3 -I -m runner_agent\.verify_job \"\$RUNNER_TEMP/tunebot/job\.json\"", verify)
    for flag in ("--signature", "--key-env TUNEBOT_JOB_SIGNING_KEY", "--run-id", "--sha", "--callback-url"):
        assert flag in verify
    agent = step_named(run_wf, "run", "Run the agent")["run"]
    assert 'tunebot agent run --job "$RUNNER_TEMP/tunebot/job.json" --out "$RUNNER_TEMP/tunebot/out"' in agent
    # A re-run replays the signed job: both the signature step and the agent learn which attempt this is.
    for name, script in (("Verify the job signature", verify), ("Run the agent", agent)):
        assert step_named(run_wf, "run", name)["env"]["TUNEBOT_RUN_ATTEMPT"] == "${{ github.run_attempt }}"
        assert '--run-attempt "$TUNEBOT_RUN_ATTEMPT"' in script
    assert '--repo-dir "$TUNEBOT_REPO_DIR"' in agent  # the agent's default (cwd) is RUNNER_TEMP here
    assert run_wf["jobs"]["run"]["env"]["TUNEBOT_REPO_DIR"] == "${{ github.workspace }}/checkout"
    checkout = step_named(run_wf, "run", "Check out the approved commit (as data)")
    assert checkout["with"]["path"] == "checkout"


# --- the shell steps, executed --------------------------------------------------------------------------------


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # GitHub runs `shell: bash` as `bash --noprofile --norc -eo pipefail {0}`.
    base = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                          env={**base, **env}, capture_output=True, text=True, timeout=30, check=False)


GOOD = {
    "TUNEBOT_RUN_ID": "r-20260101.42_a",
    "TUNEBOT_SHA": "0123456789abcdef0123456789abcdef01234567",
    "TUNEBOT_JOB_SIG": "sha256=" + "ab" * 32,
    "TUNEBOT_CALLBACK_URL": "https://tunebot.example.com/callback/r-20260101.42_a",
}


def test_check_inputs_accepts_good_inputs_and_prepares_the_work_dir(run_wf: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "tunebot").mkdir()
    (tmp_path / "tunebot" / "stale.json").write_text("{}")
    script = step_named(run_wf, "run", "Check inputs")["run"]
    result = _bash(script, {**GOOD, "RUNNER_TEMP": str(tmp_path)}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "tunebot" / "out").is_dir()
    assert not (tmp_path / "tunebot" / "stale.json").exists()  # nothing of an earlier job survives


def test_the_bots_signature_format_passes_the_input_check(run_wf: dict[str, Any], tmp_path: Path) -> None:
    job = EXAMPLE_JOB.read_bytes()
    signature = sign_body("k" * 64, job)
    assert signature == "sha256=" + hmac.new(b"k" * 64, job, hashlib.sha256).hexdigest()
    script = step_named(run_wf, "run", "Check inputs")["run"]
    result = _bash(script, {**GOOD, "TUNEBOT_JOB_SIG": signature, "RUNNER_TEMP": str(tmp_path)}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


HOSTILE = {
    "run_id with a command": ("TUNEBOT_RUN_ID", "x$(touch PWNED)", "run_id must be"),
    "run_id with a newline": ("TUNEBOT_RUN_ID", "abc\n::add-mask::x", "run_id must be"),
    "run_id too long": ("TUNEBOT_RUN_ID", "a" * 101, "run_id must be"),
    "short sha": ("TUNEBOT_SHA", "0123456", "sha must be"),
    "uppercase sha": ("TUNEBOT_SHA", "0123456789ABCDEF0123456789abcdef01234567", "sha must be"),
    "sha with a command": ("TUNEBOT_SHA", "`touch PWNED`" + "0" * 27, "sha must be"),
    "signature without prefix": ("TUNEBOT_JOB_SIG", "ab" * 32, "job_sig must be"),
    "callback not http": ("TUNEBOT_CALLBACK_URL", "file:///etc/passwd", "callback_url must be"),
    "callback with a space": ("TUNEBOT_CALLBACK_URL", "https://a.example/x; touch PWNED", "callback_url must be"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_check_inputs_rejects_hostile_inputs_without_running_them(
    run_wf: dict[str, Any], tmp_path: Path, case: str
) -> None:
    name, value, message = HOSTILE[case]
    script = step_named(run_wf, "run", "Check inputs")["run"]
    result = _bash(script, {**GOOD, name: value, "RUNNER_TEMP": str(tmp_path)}, tmp_path)
    assert result.returncode == 1
    assert f"::error title=tunebot::{message}" in result.stdout
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "tunebot").exists()  # rejected before anything is prepared


def _event(tmp_path: Path, job_text: str) -> Path:
    payload = {"inputs": {"run_id": "r1", "sha": "0" * 40, "job": job_text, "job_sig": "sha256=" + "0" * 64},
               "ref": "refs/heads/main", "repository": {"full_name": "octo/demo"}}
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload, ensure_ascii=True), encoding="utf-8")
    return event


def test_job_spec_is_written_byte_for_byte_and_its_token_masked(run_wf: dict[str, Any], tmp_path: Path) -> None:
    job = json.loads(EXAMPLE_JOB.read_text())
    job["callback"] = {"url": "https://tunebot.example.com/callback/r1", "token": "tok-5e3f9c"}
    job["repo"] = "octo/演示-demo"  # non-ASCII must survive as the same UTF-8 bytes the bot signed
    text = json.dumps(job, ensure_ascii=False, separators=(",", ":"))
    (tmp_path / "tunebot" / "out").mkdir(parents=True)
    script = step_named(run_wf, "run", "Write the job spec")["run"]
    result = _bash(script, {"RUNNER_TEMP": str(tmp_path), "GITHUB_EVENT_PATH": str(_event(tmp_path, text))},
                   tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "tunebot" / "job.json"
    assert written.read_bytes() == text.encode("utf-8")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # holds the callback token
    assert result.stdout.splitlines() == ["::add-mask::tok-5e3f9c"]


def test_malformed_job_spec_is_left_for_the_signature_check(run_wf: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "tunebot").mkdir()
    script = step_named(run_wf, "run", "Write the job spec")["run"]
    result = _bash(script, {"RUNNER_TEMP": str(tmp_path), "GITHUB_EVENT_PATH": str(_event(tmp_path, "{not json"))},
                   tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tunebot" / "job.json").read_text() == "{not json"
    assert "add-mask" not in result.stdout


def _find_adapter(run_wf: dict[str, Any], tmp_path: Path, job: dict[str, Any]) -> tuple[
        subprocess.CompletedProcess[str], str]:
    (tmp_path / "tunebot").mkdir(exist_ok=True)
    (tmp_path / "tunebot" / "job.json").write_text(json.dumps(job), encoding="utf-8")
    output = tmp_path / "github_output"
    output.write_text("", encoding="utf-8")
    script = step_named(run_wf, "run", "Find the adapter to evaluate")["run"]
    result = _bash(script, {"RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(output)}, tmp_path)
    return result, output.read_text(encoding="utf-8")


def _adapter_job(**adapter: Any) -> dict[str, Any]:
    job = json.loads(EXAMPLE_JOB.read_text())
    job.update(kind="eval", tuner=None, datasets=[], adapter={"run_id": "tb-7f3a.1_x", "path": None, **adapter})
    return job


def test_find_adapter_outputs_the_artifact_of_the_training_run(run_wf: dict[str, Any], tmp_path: Path) -> None:
    result, output = _find_adapter(run_wf, tmp_path, _adapter_job(workflow_run_id=16489123457))
    assert result.returncode == 0, result.stdout + result.stderr
    assert output == "run_id=tb-7f3a.1_x\nworkflow_run_id=16489123457\n"
    assert "artifact tunebot-tb-7f3a.1_x of workflow run 16489123457" in result.stdout


@pytest.mark.parametrize("job", [json.loads(EXAMPLE_JOB.read_text()), _adapter_job(), _adapter_job(
    workflow_run_id=None)], ids=["no adapter", "adapter without run", "null run"])
def test_find_adapter_outputs_nothing_without_a_workflow_run(run_wf: dict[str, Any], tmp_path: Path,
                                                             job: dict[str, Any]) -> None:
    result, output = _find_adapter(run_wf, tmp_path, job)
    assert result.returncode == 0, result.stdout + result.stderr
    assert output == "" and result.stdout == ""


HOSTILE_ADAPTERS = {
    "run_id with a newline": ({"run_id": "a\nworkflow_run_id=1", "workflow_run_id": 5}, "adapter.run_id must be"),
    "run_id with a command": ({"run_id": "x$(touch PWNED)", "workflow_run_id": 5}, "adapter.run_id must be"),
    "run_id not a string": ({"run_id": 7, "workflow_run_id": 5}, "adapter.run_id must be"),
    "workflow run as text": ({"workflow_run_id": "5\nrun_id=evil"}, "adapter.workflow_run_id must be"),
    "workflow run negative": ({"workflow_run_id": -5}, "adapter.workflow_run_id must be"),
    "workflow run a boolean": ({"workflow_run_id": True}, "adapter.workflow_run_id must be"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ADAPTERS))
def test_find_adapter_rejects_hostile_values(run_wf: dict[str, Any], tmp_path: Path, case: str) -> None:
    adapter, message = HOSTILE_ADAPTERS[case]
    result, output = _find_adapter(run_wf, tmp_path, _adapter_job(**adapter))
    assert result.returncode == 1
    assert f"::error title=tunebot::{message}" in result.stdout
    assert output == ""  # nothing reaches the download step
    assert not (tmp_path / "PWNED").exists()


def _agent_args(run_wf: dict[str, Any], tmp_path: Path) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "tunebot"  # records its argv, one per line, instead of running a job
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RUNNER_TEMP/argv"\n', encoding="utf-8")
    fake.chmod(0o755)
    script = step_named(run_wf, "run", "Run the agent")["run"]
    env = {"RUNNER_TEMP": str(tmp_path), "TUNEBOT_REPO_DIR": str(tmp_path / "checkout"), "TUNEBOT_RUN_ATTEMPT": "1",
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = _bash(script, env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return (tmp_path / "argv").read_text(encoding="utf-8").splitlines()


def test_agent_gets_the_adapter_dir_only_when_one_was_downloaded(run_wf: dict[str, Any], tmp_path: Path) -> None:
    base = ["agent", "run", "--job", f"{tmp_path}/tunebot/job.json", "--out", f"{tmp_path}/tunebot/out",
            "--repo-dir", f"{tmp_path}/checkout", "--run-attempt", "1"]
    assert _agent_args(run_wf, tmp_path) == base
    (tmp_path / "tunebot" / "adapter-run").mkdir(parents=True)
    assert _agent_args(run_wf, tmp_path) == [*base, "--adapter-dir", f"{tmp_path}/tunebot/adapter-run"]


def test_verify_step_refuses_to_run_without_the_key(run_wf: dict[str, Any], tmp_path: Path) -> None:
    script = step_named(run_wf, "run", "Verify the job signature")["run"]
    result = _bash(script, {**GOOD, "TUNEBOT_JOB_SIGNING_KEY": "", "RUNNER_TEMP": str(tmp_path)}, tmp_path)
    assert result.returncode == 1
    assert "TUNEBOT_JOB_SIGNING_KEY is not set" in result.stdout


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
           "PATH": os.environ["PATH"], "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture()
def checkout(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "workspace" / "checkout"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "data.yaml").write_text("a: 1\n")
    _git(repo, "add", "data.yaml")
    _git(repo, "commit", "-qm", "one")
    first = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "data.yaml").write_text("a: 2\n")
    _git(repo, "commit", "-qam", "two")
    second = _git(repo, "rev-parse", "HEAD").strip()
    return repo, first, second


def test_commit_check_passes_on_the_approved_commit(run_wf: dict[str, Any], checkout: tuple[Path, str, str]) -> None:
    repo, _, head = checkout
    script = step_named(run_wf, "run", "Verify the checked-out commit")["run"]
    result = _bash(script, {"TUNEBOT_SHA": head, "TUNEBOT_REPO_DIR": str(repo)}, repo.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"checked out {head}" in result.stdout


def test_commit_check_fails_when_head_moved(run_wf: dict[str, Any], checkout: tuple[Path, str, str]) -> None:
    repo, approved, head = checkout
    script = step_named(run_wf, "run", "Verify the checked-out commit")["run"]
    result = _bash(script, {"TUNEBOT_SHA": approved, "TUNEBOT_REPO_DIR": str(repo)}, repo.parent)
    assert result.returncode == 1
    assert f"checked out {head}, but the run was approved for {approved}" in result.stdout


def test_cleanup_removes_the_job_spec_and_checkout_and_is_idempotent(run_wf: dict[str, Any], tmp_path: Path) -> None:
    work, checkout_dir = tmp_path / "tunebot", tmp_path / "ws" / "checkout"
    (work / "out").mkdir(parents=True)
    (work / "job.json").write_text("{}")
    checkout_dir.mkdir(parents=True)
    (checkout_dir / "x").write_text("pr data")
    script = step_named(run_wf, "run", "Clean up")["run"]
    env = {"RUNNER_TEMP": str(tmp_path), "TUNEBOT_REPO_DIR": str(checkout_dir)}
    assert _bash(script, env, tmp_path).returncode == 0
    assert not work.exists() and not checkout_dir.exists()
    assert _bash(script, env, tmp_path).returncode == 0  # runs again after a failed or cancelled job


# --- the leaderboard ------------------------------------------------------------------------------------------


def test_leaderboard_runs_daily_and_on_demand(board_wf: dict[str, Any]) -> None:
    schedule = board_wf["on"]["schedule"]
    assert len(schedule) == 1
    minute, hour, day, month, weekday = schedule[0]["cron"].split()
    assert minute.isdigit() and hour.isdigit() and (day, month, weekday) == ("*", "*", "*")
    assert "workflow_dispatch" in board_wf["on"]


def test_leaderboard_models_are_catalog_presets(board_wf: dict[str, Any]) -> None:
    models = board_wf["jobs"]["evaluate"]["strategy"]["matrix"]["model"]
    known = set(load_catalog().models)
    assert models and len(set(models)) == len(models)
    assert set(models) <= known, set(models) - known
    assert board_wf["jobs"]["evaluate"]["strategy"]["fail-fast"] is False


def test_leaderboard_posts_after_all_models_even_if_some_failed(board_wf: dict[str, Any]) -> None:
    post = board_wf["jobs"]["post"]
    assert post["needs"] == "evaluate"
    assert post["if"] == "${{ !cancelled() }}"
    assert post["permissions"] == {"contents": "read", "issues": "write"}
    assert "permissions" not in board_wf["jobs"]["evaluate"]
    assert board_wf["permissions"] == {"contents": "read"}
    download = step_named(board_wf, "post", "Download results")
    upload = step_named(board_wf, "evaluate", "Upload results")
    assert download["with"]["pattern"] == "leaderboard-*"
    assert upload["with"]["name"] == "leaderboard-${{ matrix.model }}"


def test_leaderboard_commands(board_wf: dict[str, Any]) -> None:
    spec = step_named(board_wf, "evaluate", "Write the job spec")["run"]
    assert 'tunebot parse --policy "$RUNNER_TEMP/tunebot/policy.yml" --emit-job "$RUNNER_TEMP/tunebot/job.json"' \
        in spec
    assert '"/eval $TUNEBOT_BENCHMARKS model=$TUNEBOT_MODEL"' in spec  # the /eval grammar: benchmarks, then model=
    evaluate = step_named(board_wf, "evaluate", "Evaluate")["run"]
    assert 'tunebot agent run --job "$RUNNER_TEMP/tunebot/job.json" --out "$RUNNER_TEMP/tunebot/out"' in evaluate
    post = step_named(board_wf, "post", "Post the ranking")["run"]
    assert 'tunebot runs leaderboard --post --results "$RUNNER_TEMP/tunebot/results"' in post


@pytest.mark.parametrize("model", ["glm4-9b-chat", "qwen2.5-7b-instruct"])
def test_leaderboard_runs_hub_code_only_for_the_presets_it_names(board_wf: dict[str, Any], tmp_path: Path,
                                                                 model: str) -> None:
    """The real `tunebot parse` behind the step: hub code only where the workflow opts in, like .tunebot.yml."""
    script = step_named(board_wf, "evaluate", "Write the job spec")["run"]
    trusted = board_wf["env"]["TUNEBOT_TRUST_REMOTE_CODE"].split()
    catalog = load_catalog()
    matrix = board_wf["jobs"]["evaluate"]["strategy"]["matrix"]["model"]
    assert sorted(trusted) == sorted(m for m in matrix if catalog.models[m].trust_remote_code)
    env = {"RUNNER_TEMP": str(tmp_path), "TUNEBOT_MODEL": model, "TUNEBOT_BENCHMARKS": "cmmlu",
           "GITHUB_RUN_ID": "1", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_SHA": "0" * 40, "GITHUB_REPOSITORY": "o/r",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    ok = _bash(script, {**env, "TUNEBOT_TRUST_REMOTE_CODE": " ".join(trusted)}, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    job = json.loads((tmp_path / "tunebot" / "job.json").read_text(encoding="utf-8"))
    assert job["model"]["trust_remote_code"] is catalog.models[model].trust_remote_code
    refused = _bash(script, {**env, "TUNEBOT_TRUST_REMOTE_CODE": ""}, tmp_path)
    if catalog.models[model].trust_remote_code:
        assert refused.returncode != 0 and "models.trust_remote_code" in refused.stdout + refused.stderr
    else:
        assert refused.returncode == 0, refused.stdout + refused.stderr
