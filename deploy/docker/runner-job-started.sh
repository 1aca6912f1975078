#!/usr/bin/env bash
# tunebot GPU runners: the job-started hook (ACTIONS_RUNNER_HOOK_JOB_STARTED, set by runner.Dockerfile and
# k8s/arc/values.yaml). The runner runs it before a job's first step; when it exits non-zero the job fails and none
# of its steps run.
#
# Why: a runner label is not a permission. Any workflow of the repository, including a fork PR's own
# `pull_request` workflow, may say `runs-on: [self-hosted, gpu]` and so run anything on these GPUs (and next to their
# shared cache) without any tunebot approval. This hook admits only:
#   - the run workflow (TUNEBOT_RUNNER_WORKFLOW, default .github/workflows/tunebot-run.yml), started by
#     `workflow_dispatch` on the default branch (the bot's dispatch), first attempt only (a re-run replays a job);
#   - the leaderboard workflow (TUNEBOT_RUNNER_LEADERBOARD, default .github/workflows/tunebot-leaderboard.yml; set
#     it empty to admit none), by `schedule` or `workflow_dispatch` on the default branch;
#   - and, when TUNEBOT_RUNNER_REPOSITORY is set (owner/name), only that repository's workflows.
# Everything it reads comes from the runner, not from the workflow: GITHUB_WORKFLOW_REF
# (owner/repo/.github/workflows/file.yml@refs/heads/main), GITHUB_EVENT_NAME, GITHUB_REF, GITHUB_RUN_ATTEMPT and the
# repository's default branch in the event payload (GITHUB_EVENT_PATH). See
# https://docs.github.com/en/actions/hosting-your-own-runners/running-scripts-before-or-after-a-job
set -euo pipefail

refuse() {
  echo "::error title=tunebot runner::this runner only runs tunebot's own workflows: $1"
  echo "tunebot runner: refusing the job: $1" >&2
  exit 1
}

run_wf="${TUNEBOT_RUNNER_WORKFLOW-.github/workflows/tunebot-run.yml}"
board_wf="${TUNEBOT_RUNNER_LEADERBOARD-.github/workflows/tunebot-leaderboard.yml}"
repo="${GITHUB_REPOSITORY:-}"
workflow_ref="${GITHUB_WORKFLOW_REF:-}"
event="${GITHUB_EVENT_NAME:-}"
ref="${GITHUB_REF:-}"
attempt="${GITHUB_RUN_ATTEMPT:-1}"

[[ -n "$repo" && -n "$workflow_ref" && -n "$event" ]] \
  || refuse "GITHUB_REPOSITORY, GITHUB_WORKFLOW_REF and GITHUB_EVENT_NAME must be set (is this an Actions job?)"
if [[ -n "${TUNEBOT_RUNNER_REPOSITORY:-}" && "${repo,,}" != "${TUNEBOT_RUNNER_REPOSITORY,,}" ]]; then
  refuse "the job belongs to $repo; this runner serves ${TUNEBOT_RUNNER_REPOSITORY} only"
fi

# The default branch as GitHub states it in the event payload.
default_branch="$(python3 -I -c '
import json, os, sys
try:
    with open(os.environ["GITHUB_EVENT_PATH"], encoding="utf-8") as fh:
        branch = json.load(fh)["repository"]["default_branch"]
except (KeyError, OSError, TypeError, ValueError):
    sys.exit(1)
print(branch if isinstance(branch, str) else "")
')" || refuse "cannot read the repository's default branch from the event payload (GITHUB_EVENT_PATH)"
[[ -n "$default_branch" ]] || refuse "the event payload names no default branch"
main_ref="refs/heads/$default_branch"

# The workflow file must be this repository's own, at the default branch: not a copy on a branch or a PR merge ref.
prefix="$repo/"
[[ "${workflow_ref,,}" == "${prefix,,}"* ]] || refuse "workflow $workflow_ref is not a workflow of $repo"
file_at="${workflow_ref:${#prefix}}"
file="${file_at%@*}"
file_ref="${file_at##*@}"
[[ "$file_at" == *@* && "$file_ref" == "$main_ref" && "$ref" == "$main_ref" ]] \
  || refuse "$file runs from ${file_ref:-?} (GITHUB_REF ${ref:-?}); only the default branch ($default_branch) may use these runners"

if [[ -n "$run_wf" && "$file" == "$run_wf" ]]; then
  [[ "$event" == "workflow_dispatch" ]] || refuse "$file was started by '$event'; only tunebot's workflow_dispatch may run it here"
  [[ "$attempt" == "1" ]] || refuse "attempt $attempt of a tunebot run: a re-run replays a signed job; ask tunebot (/retry) instead"
elif [[ -n "$board_wf" && "$file" == "$board_wf" ]]; then
  [[ "$event" == "schedule" || "$event" == "workflow_dispatch" ]] \
    || refuse "$file was started by '$event'; the leaderboard runs on its schedule or by workflow_dispatch"
else
  refuse "$file is not a tunebot workflow (allowed: ${run_wf:-none}${board_wf:+, $board_wf})"
fi
echo "tunebot runner: admitted $file ($event on $default_branch, attempt $attempt)"
