"""Decides whether a dispatched job may run on this runner: its HMAC signature (made by the bot with the shared
job-signing key) must match the exact bytes, and its run id, head SHA and callback URL must be the ones the
workflow was dispatched with.

    python -I -m runner_agent.verify_job JOB.json --signature "sha256=..." --key-env TUNEBOT_JOB_SIGNING_KEY \
        --run-id ID --sha SHA [--callback-url URL]

Exit 0 when the job may run; otherwise 1 with one line on stderr saying why (2 for a bad command line).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from commands.events import verify_body
from commands.jobspec import SpecError, job_from_json


def check(job_bytes: bytes, signature: str, key: str, *, run_id: str, sha: str, callback_url: str | None) -> str | None:
    """None when the job is authentic and matches the dispatch; else the reason it must not run."""
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
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runner_agent.verify_job", description=__doc__.splitlines()[0])
    p.add_argument("job", type=Path)
    p.add_argument("--signature", required=True)
    p.add_argument("--key-env", default="TUNEBOT_JOB_SIGNING_KEY")
    p.add_argument("--run-id", required=True)
    p.add_argument("--sha", required=True)
    p.add_argument("--callback-url", default="")
    args = p.parse_args(argv)
    try:
        data = args.job.read_bytes()
    except OSError as exc:
        print(f"verify_job: cannot read {args.job}: {exc.strerror}", file=sys.stderr)
        return 1
    reason = check(data, args.signature, os.environ.get(args.key_env, ""), run_id=args.run_id, sha=args.sha,
                   callback_url=args.callback_url or None)
    if reason is not None:
        print(f"verify_job: refusing to run: {reason}", file=sys.stderr)
        return 1
    print(f"verify_job: job for run {args.run_id} at {args.sha[:12]} is authentic")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
