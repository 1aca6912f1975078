"""`tunebot parse`: show, as JSON, how tunebot reads a comment (and optionally which jobs it would plan), or write
the one job a comment starts as a job spec file (`--emit-job`, for workflows that run without the bot)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from commands import Parsed, parse_comment
from commands.catalog import Catalog
from commands.decision import Decision, Reply
from commands.jobspec import SpecError, job_from_json, job_to_json, to_dict
from commands.plan import PlanError, PRFacts, plan
from commands.policy import Policy, PolicyError, parse_policy
from configs import load_catalog

PLACEHOLDER_REPO = "octo-org/example"
PLACEHOLDER_SHA = "0" * 40
# The same shapes the run workflow checks its inputs against (deploy/github/tunebot-run.yml).
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# Verbs whose single job means something on its own; /compare needs the bot to pair it with a baseline run.
_EMITTABLE = ("train", "eval")


class EmitError(Exception):
    """Why no job file was written; one line for the user."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunebot parse",
        description="Print the decision for a comment as JSON: "
                    '{"outcome": "parsed" | "reply" | "ignore", ...}; or, with --emit-job, write the job spec '
                    "the comment's one job-starting command plans.",
    )
    p.add_argument("comment", help='the comment text ("-" reads it from stdin)')
    p.add_argument("--policy", metavar="FILE", help="a .tunebot.yml to apply (default: built-in defaults)")
    p.add_argument("--bot-login", default="tunebot", help="the bot's login, for `@login verb` (default: tunebot)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="also print the job specs the commands would dispatch")
    mode.add_argument("--emit-job", metavar="FILE",
                      help="write the job spec (JSON) of the comment's one /train or /eval command to FILE "
                           '("-" for stdout); needs --run-id, --sha and --repo')
    p.add_argument("--run-id", help="run id of the emitted job (letters, digits, '.', '_', '-'; at most 100)")
    p.add_argument("--repo", default=None, help=f"owner/name (--plan default: {PLACEHOLDER_REPO})")
    p.add_argument("--sha", default=None, help="the commit the job runs at, 40 hex digits (--plan default: zeros)")
    p.add_argument("--base-ref", default="main", help="PR base branch for --plan")
    p.add_argument("--latest-train-run", default=None, help="the PR's latest training run id (adapter=latest)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    catalog = load_catalog()
    text = sys.stdin.read() if args.comment == "-" else args.comment
    policy: Policy | PolicyError = parse_policy(None)
    if args.policy:
        try:
            policy_text = Path(args.policy).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"tunebot parse: cannot read {args.policy}: {exc}", file=sys.stderr)
            return 2
        policy = parse_policy(policy_text, catalog=catalog)
        if isinstance(policy, PolicyError):
            if args.emit_job:
                print(f"tunebot parse: {Path(args.policy).name}: {_one_line(policy.render(Path(args.policy).name))}",
                      file=sys.stderr)
                return 1
            _print({"outcome": "reply", "text": policy.render(Path(args.policy).name), "policy_error": True})
            return 1
    assert isinstance(policy, Policy)
    decision = parse_comment(text, catalog=catalog, policy=policy, bot_login=args.bot_login)
    if args.emit_job:
        try:
            job_json = emit_job(decision, args, policy, catalog)
            _write(args.emit_job, job_json)
        except EmitError as exc:
            print(f"tunebot parse: {exc}", file=sys.stderr)
            return 1
        return 0
    out: dict[str, Any] = decision.to_dict()
    if args.plan and isinstance(decision, Parsed):
        pr = PRFacts(repo=args.repo or PLACEHOLDER_REPO, head_sha=args.sha or PLACEHOLDER_SHA,
                     base_ref=args.base_ref, latest_train_run=args.latest_train_run)
        ids = (f"local-{i}" for i in itertools.count(1))
        planned: list[dict[str, Any]] = []
        for command in decision.commands:
            try:
                jobs = plan(command, pr, policy, catalog, ids)
            except PlanError as exc:
                planned.append({"command": command.render(), "error": str(exc)})
                continue
            planned.extend({"command": command.render(), "job": to_dict(j.job), "result_key": j.result_key,
                            "benchmark_keys": dict(j.benchmark_keys), "force": j.force,
                            "compare_ref": j.compare_ref} for j in jobs)
        out["plan"] = planned
    _print(out)
    return 0


def emit_job(decision: Decision, args: argparse.Namespace, policy: Policy, catalog: Catalog) -> str:
    """The job spec JSON of the decision's one job-starting command, planned exactly as the bot would."""
    missing = [flag for flag, value in (("--run-id", args.run_id), ("--sha", args.sha), ("--repo", args.repo))
               if not value]
    if missing:
        raise EmitError(f"--emit-job needs {', '.join(missing)}")
    if not _RUN_ID.match(args.run_id):
        raise EmitError(f"--run-id {args.run_id!r}: use letters, digits, '.', '_' and '-' (at most 100, starting "
                        "with a letter or digit)")
    if not _SHA.match(args.sha):
        raise EmitError(f"--sha {args.sha!r}: expected a full commit SHA (40 hex digits)")
    if not _REPO.match(args.repo):
        raise EmitError(f"--repo {args.repo!r}: expected owner/name")
    if isinstance(decision, Reply):
        raise EmitError(f"nothing to run: {_one_line(decision.text)}")
    if not isinstance(decision, Parsed):
        raise EmitError(f"no tunebot command in the comment ({decision.reason}); expected e.g. "
                        "`/eval cmmlu model=qwen2.5-7b-instruct`")
    starting = [c for c in decision.commands if c.verb in ("train", "eval", "compare")]
    if len(decision.commands) != 1 or len(starting) != 1:
        shown = ", ".join(f"`{c.render()}`" for c in decision.commands)
        raise EmitError(f"--emit-job writes one job: give exactly one /train or /eval command (got {shown})")
    command = starting[0]
    if command.verb not in _EMITTABLE:
        raise EmitError(f"`/{command.verb}` needs the bot (it pairs the run with a baseline); --emit-job takes "
                        "one /train or /eval command")
    pr = PRFacts(repo=args.repo, head_sha=args.sha.lower(), base_ref=args.base_ref,
                 latest_train_run=args.latest_train_run)
    try:
        jobs = plan(command, pr, policy, catalog, [args.run_id])
    except PlanError as exc:
        raise EmitError(f"`{command.render()}`: {exc}") from None
    if len(jobs) != 1:  # pragma: no cover - train and eval always plan one job
        raise EmitError(f"`{command.render()}` planned {len(jobs)} jobs; --emit-job writes exactly one")
    text = job_to_json(jobs[0].job)
    try:
        job_from_json(text)  # what the agent will read must pass its strict reader
    except SpecError as exc:  # pragma: no cover - the planner only builds valid specs
        raise EmitError(f"internal: the planned job does not validate ({exc})") from None
    return text


def _write(dest: str, text: str) -> None:
    """The whole job file or nothing, so a workflow never starts the agent on half a spec."""
    if dest == "-":
        sys.stdout.write(text + "\n")
        return
    path = Path(dest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EmitError(f"cannot write {dest}: {exc.strerror or exc}") from None


def _one_line(text: str) -> str:
    """A reply meant for a comment, as one log line: its bullet points (the problems), else its first line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    bullets = [ln[2:] for ln in lines if ln.startswith("- ")]
    chosen = bullets or lines[:1] or ["(no detail)"]
    return "; ".join(chosen)


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))
