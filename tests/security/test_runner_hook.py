"""Finding 2 (issue 11): a workflow other than tunebot's cannot use the GPU runners. The job-started hook the runner
image ships (deploy/docker/runner-job-started.sh) is run as the runner runs it, with the environment GitHub gives a
job, for the attacks and for tunebot's own jobs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.paths import REPO

HOOK = REPO / "deploy" / "docker" / "runner-job-started.sh"
OWNER_REPO = "octo-org/models"
RUN_WF = ".github/workflows/tunebot-run.yml"
BOARD_WF = ".github/workflows/tunebot-leaderboard.yml"


def _job_env(tmp_path: Path, *, workflow: str, event: str, ref: str, attempt: str = "1",
             repo: str = OWNER_REPO, default_branch: str = "main") -> dict[str, str]:
    """The variables the runner sets for a job (and the hook sees), with its event payload on disk."""
    payload = tmp_path / f"event-{event}.json"
    payload.write_text(json.dumps({"repository": {"full_name": repo, "default_branch": default_branch}}),
                       encoding="utf-8")
    return {"GITHUB_REPOSITORY": repo, "GITHUB_WORKFLOW_REF": f"{repo}/{workflow}@{ref}",
            "GITHUB_EVENT_NAME": event, "GITHUB_REF": ref, "GITHUB_RUN_ATTEMPT": attempt,
            "GITHUB_EVENT_PATH": str(payload), "GITHUB_ACTIONS": "true"}


def _hook(env: dict[str, str], tmp_path: Path, **runner_env: str) -> subprocess.CompletedProcess[str]:
    # The runner runs a .sh hook as `bash -e {path}` in the job's environment.
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "-e", str(HOOK)], env={**base, **runner_env, **env}, capture_output=True,
                          text=True, timeout=30, check=False, cwd=tmp_path)


ATTACKS = {
    # A fork PR's own workflow asking for the GPU label: the attack of the finding.
    "fork pull_request workflow": dict(workflow=".github/workflows/mine.yml", event="pull_request",
                                       ref="refs/pull/7/merge"),
    # The same PR editing tunebot's workflow to run on pull_request.
    "tunebot workflow on pull_request": dict(workflow=RUN_WF, event="pull_request", ref="refs/pull/7/merge"),
    "pull_request_target": dict(workflow=".github/workflows/mine.yml", event="pull_request_target",
                                ref="refs/heads/main"),
    # A collaborator dispatching an edited copy of the run workflow from a branch.
    "dispatch from a branch": dict(workflow=RUN_WF, event="workflow_dispatch", ref="refs/heads/evil"),
    "another workflow on the default branch": dict(workflow=".github/workflows/ci.yml", event="push",
                                                   ref="refs/heads/main"),
    "run workflow on push": dict(workflow=RUN_WF, event="push", ref="refs/heads/main"),
    "re-run of a tunebot run": dict(workflow=RUN_WF, event="workflow_dispatch", ref="refs/heads/main", attempt="2"),
    "leaderboard on pull_request": dict(workflow=BOARD_WF, event="pull_request", ref="refs/pull/7/merge"),
    # A reusable workflow file of another repository presenting tunebot's file name.
    "another repository's workflow": dict(workflow=RUN_WF, event="workflow_dispatch", ref="refs/heads/main",
                                          repo="eve/models"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_hook_refuses_jobs_that_are_not_tunebots(tmp_path: Path, attack: str) -> None:
    result = _hook(_job_env(tmp_path, **ATTACKS[attack]), tmp_path, TUNEBOT_RUNNER_REPOSITORY=OWNER_REPO)
    assert result.returncode != 0, (attack, result.stdout, result.stderr)
    assert "::error title=tunebot runner::this runner only runs tunebot's own workflows" in result.stdout
    assert "admitted" not in result.stdout


@pytest.mark.parametrize("case", [dict(workflow=RUN_WF, event="workflow_dispatch"),
                                  dict(workflow=BOARD_WF, event="schedule"),
                                  dict(workflow=BOARD_WF, event="workflow_dispatch")])
def test_the_hook_admits_tunebots_own_jobs_on_the_default_branch(tmp_path: Path, case: dict[str, str]) -> None:
    result = _hook(_job_env(tmp_path, ref="refs/heads/trunk", default_branch="trunk", **case), tmp_path,
                   TUNEBOT_RUNNER_REPOSITORY=OWNER_REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"admitted {case['workflow']} ({case['event']} on trunk, attempt 1)" in result.stdout


def test_a_missing_or_unreadable_event_payload_fails_closed(tmp_path: Path) -> None:
    env = _job_env(tmp_path, workflow=RUN_WF, event="workflow_dispatch", ref="refs/heads/main")
    env["GITHUB_EVENT_PATH"] = str(tmp_path / "missing.json")
    result = _hook(env, tmp_path)
    assert result.returncode != 0 and "default branch" in result.stdout


def test_the_leaderboard_can_be_turned_off(tmp_path: Path) -> None:
    env = _job_env(tmp_path, workflow=BOARD_WF, event="schedule", ref="refs/heads/main")
    assert _hook(env, tmp_path).returncode == 0
    assert _hook(env, tmp_path, TUNEBOT_RUNNER_LEADERBOARD="").returncode != 0


def test_the_runner_image_and_the_arc_values_install_the_hook() -> None:
    import yaml

    dockerfile = (REPO / "deploy" / "docker" / "runner.Dockerfile").read_text(encoding="utf-8")
    assert "COPY deploy/docker/runner-job-started.sh /opt/tunebot-runner/job-started.sh" in dockerfile
    assert "ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/tunebot-runner/job-started.sh" in dockerfile
    values = yaml.safe_load((REPO / "deploy" / "k8s" / "arc" / "values.yaml").read_text(encoding="utf-8"))
    runner = next(c for c in values["template"]["spec"]["containers"] if c["name"] == "runner")
    env = {e["name"]: e.get("value") for e in runner["env"]}
    assert env["ACTIONS_RUNNER_HOOK_JOB_STARTED"] == "/opt/tunebot-runner/job-started.sh"
    repo_url = values["githubConfigUrl"].rstrip("/")
    assert repo_url.endswith("/" + env["TUNEBOT_RUNNER_REPOSITORY"])  # the same repository the scale set serves
