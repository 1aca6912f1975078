"""Decides whether a dispatched job may run on this runner: its HMAC signature (made by the bot with the shared
job-signing key) must match the exact bytes, and its run id, head SHA and callback URL must be the ones the
workflow was dispatched with; it must not have expired (`not_after`), and it must be the workflow run's first
attempt: an Actions "Re-run" replays the same signed job with the same callback token.

    python -I -m runner_agent.verify_job JOB.json --signature "sha256=..." --key-env TUNEBOT_JOB_SIGNING_KEY \
        --run-id ID --sha SHA [--callback-url URL] [--run-attempt N]

Exit 0 when the job may run; otherwise 1 with one line on stderr saying why (2 for a bad command line).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from commands.events import verify_body
from commands.jobspec import JobSpec, SpecError, job_from_json


def expired(job: JobSpec, now: float) -> str | None:
    """Why a signed job is too old to start (None when it is not): shared by this check and the agent itself."""
    if job.not_after is not None and now > job.not_after:
        age = now - job.not_after
        ago = f"{age / 3600:.1f} h" if age >= 3600 else f"{max(age, 1) / 60:.0f} min" if age >= 60 else f"{age:.0f} s"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(job.not_after))
        return f"the signed job expired {ago} ago (not_after {when}); ask tunebot again for a fresh job"
    return None


def replayed(run_attempt: int | None) -> str | None:
    """Why a workflow run attempt must not run the job (None for the first attempt, or when unknown)."""
    if run_attempt is not None and run_attempt > 1:
        return (f"this is attempt {run_attempt} of the workflow run: a re-run replays a job that already ran, with "
                "the same callback token; ask tunebot instead (`/retry <run-id>`), which signs a new job")
    return None


def check(job_bytes: bytes, signature: str, key: str, *, run_id: str, sha: str, callback_url: str | None,
          now: float | None = None, run_attempt: int | None = None) -> str | None:
    """None when the job is authentic, current and matches the dispatch; else the reason it must not run."""
    if not key:
        return "the job-signing key is empty: set TUNEBOT_JOB_SIGNING_KEY in the `tunebot` environment's secrets"
    if not verify_body(key, job_bytes, signature):
        return "the job's signature does not match: it was not dispatched by this repository's tunebot"
    try:
        job = job_from_json(job_bytes.decode("utf-8"))
    except (SpecError, UnicodeDecodeError) as exc:
        return f"the signed job is not a valid job spec: {exc}"
    if job.run_id != run_id:
        return f"the job is for run {job.run_id}, but the workflow was dispatched for run {run_id}"
    if job.sha.lower() != sha.lower():
        return f"the job pins commit {job.sha}, but the workflow was dispatched for {sha}"
    if callback_url and (job.callback is None or job.callback.url != callback_url):
        return "the callback URL input differs from the one inside the signed job"
    return expired(job, time.time() if now is None else now) or replayed(run_attempt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runner_agent.verify_job", description=__doc__.splitlines()[0])
    p.add_argument("job", type=Path)
    p.add_argument("--signature", required=True)
    p.add_argument("--key-env", default="TUNEBOT_JOB_SIGNING_KEY")
    p.add_argument("--run-id", required=True)
    p.add_argument("--sha", required=True)
    p.add_argument("--callback-url", default="")
    p.add_argument("--run-attempt", type=int, default=None,
                   help="the workflow run's attempt (${{ github.run_attempt }}); attempts after the first are refused")
    args = p.parse_args(argv)
    try:
        data = args.job.read_bytes()
    except OSError as exc:
        print(f"verify_job: cannot read {args.job}: {exc.strerror}", file=sys.stderr)
        return 1
    reason = check(data, args.signature, os.environ.get(args.key_env, ""), run_id=args.run_id, sha=args.sha,
                   callback_url=args.callback_url or None, run_attempt=args.run_attempt)
    if reason is not None:
        print(f"verify_job: refusing to run: {reason}", file=sys.stderr)
        return 1
    print(f"verify_job: job for run {args.run_id} at {args.sha[:12]} is authentic")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
