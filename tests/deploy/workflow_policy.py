"""tunebot's own rules for workflow files, beyond what actionlint knows: what may reach a shell, what is pinned,
which permissions and secrets a job may hold, and that every job cleans up after itself."""

from __future__ import annotations

import re
from typing import Any

PINNED_USES = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[^@\s]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"\buses:\s*\S+@[0-9a-f]{40}\s+#\s*v\d+(?:\.\d+){0,2}\s*$")
# Scopes a job may write, with the one reason it may; anything else stays read-only.
WRITE_ALLOWED = {"issues"}
# Scopes a workflow or job may read, each with the reason it must; any other scope is `none`.
READ_ALLOWED = {
    "contents": "check out a private repository",
    "actions": "download an earlier run's artifact (the adapter an `/eval ... adapter=` job evaluates)",
}
# A `python` call in a `run:` script must be isolated (-I), or it would import modules from the current directory.
PYTHON_CALL = re.compile(r"(?:^|[\s;&|(])(python3?)((?:\s+-[A-Za-z]+)*)\s")


def _steps(workflow: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (job_id, index, step)
        for job_id, job in (workflow.get("jobs") or {}).items()
        for index, step in enumerate(job.get("steps") or [])
    ]


def check_workflow(workflow: dict[str, Any], text: str) -> list[str]:
    """Every violation of the policy, one line each; empty when the workflow complies."""
    problems: list[str] = []
    triggers = workflow.get("on")
    names = set(triggers) if isinstance(triggers, dict) else {triggers} if isinstance(triggers, str) else set(triggers)
    for bad in ("pull_request_target", "issue_comment", "workflow_run"):
        if bad in names:
            problems.append(f"trigger {bad!r} runs with secrets on events outsiders can cause; dispatch instead")

    permissions = workflow.get("permissions")
    if not isinstance(permissions, dict):
        problems.append("workflow-level `permissions:` must be an explicit mapping (the default token is too wide)")
    else:
        for scope, level in permissions.items():
            if level not in ("read", "none"):
                problems.append(f"workflow-level permission {scope}: {level}; grant writes per job, and only those")
            elif level == "read" and scope not in READ_ALLOWED:
                problems.append(f"workflow-level permission {scope}: read is not on the read list (no step needs it)")

    for job_id, job in (workflow.get("jobs") or {}).items():
        if "timeout-minutes" not in job:
            problems.append(f"job {job_id}: no timeout-minutes (a hung GPU job costs money until GitHub's 5 days)")
        for scope, level in (job.get("permissions") or {}).items():
            if level == "write" and scope not in WRITE_ALLOWED:
                problems.append(f"job {job_id}: permission {scope}: write is not on the allowed list")
            if level == "read" and scope not in READ_ALLOWED:
                problems.append(f"job {job_id}: permission {scope}: read is not on the read list (no step needs it)")
        if "secrets." in str(job.get("env", "")) or "secrets." in str(workflow.get("env", "")):
            problems.append(f"job {job_id}: secrets in job- or workflow-level env reach every step; give them to one")
        steps = job.get("steps") or []
        if steps:
            last = steps[-1]
            if "always()" not in str(last.get("if", "")) or "rm -rf" not in str(last.get("run", "")):
                problems.append(f"job {job_id}: the last step must clean up (`rm -rf ...`) with `if: always()`")

    for job_id, index, step in _steps(workflow):
        where = f"job {job_id} step {index + 1} ({step.get('name', step.get('uses', 'run'))})"
        uses = step.get("uses")
        if uses is not None and not str(uses).startswith("./") and not PINNED_USES.match(str(uses)):
            problems.append(f"{where}: `uses: {uses}` is not pinned to a full 40-hex commit SHA")
        if (
            uses is not None
            and str(uses).startswith("actions/checkout@")
            and (step.get("with") or {}).get("persist-credentials") is not False
        ):
            problems.append(f"{where}: actions/checkout must set `persist-credentials: false`")
        script = step.get("run")
        if script is not None:
            if "${{" in str(script):
                problems.append(f"{where}: `${{{{ }}}}` inside `run:`; pass the value through `env:` and quote it")
            for match in PYTHON_CALL.finditer(str(script)):
                flags = match.group(2).split()
                if not any(flag.startswith("-") and "I" in flag[1:] for flag in flags):
                    problems.append(f"{where}: `{match.group(1)}` without -I may import modules from the checkout")
        for key, value in (step.get("env") or {}).items():
            if "inputs.job }}" in str(value) or "github.event.inputs.job" in str(value):
                problems.append(f"{where}: env {key} carries the job spec; the runner prints env values in the log")

    for number, line in enumerate(text.splitlines(), 1):
        if re.search(r"\buses:\s*[^.\s][^\s]*@[0-9a-f]{40}", line) and not VERSION_COMMENT.search(line):
            problems.append(f"line {number}: a pinned `uses:` needs a `# vX.Y.Z` comment naming the release")
    return problems
