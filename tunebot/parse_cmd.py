"""`tunebot parse`: show, as JSON, how tunebot reads a comment (and optionally which jobs it would plan)."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from commands import Parsed, parse_comment
from commands.jobspec import to_dict
from commands.plan import PlanError, PRFacts, plan
from commands.policy import Policy, PolicyError, parse_policy


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunebot parse",
        description="Print the decision for a comment as JSON: "
                    '{"outcome": "parsed" | "reply" | "ignore", ...}.',
    )
    p.add_argument("comment", help='the comment text ("-" reads it from stdin)')
    p.add_argument("--policy", metavar="FILE", help="a .tunebot.yml to apply (default: built-in defaults)")
    p.add_argument("--bot-login", default="tunebot", help="the bot's login, for `@login verb` (default: tunebot)")
    p.add_argument("--plan", action="store_true", help="also print the job specs the commands would dispatch")
    p.add_argument("--repo", default="octo-org/example", help="repository for --plan (default: octo-org/example)")
    p.add_argument("--sha", default="0" * 40, help="PR head SHA for --plan")
    p.add_argument("--base-ref", default="main", help="PR base branch for --plan")
    p.add_argument("--latest-train-run", default=None, help="the PR's latest training run id (adapter=latest)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from configs import load_catalog

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
            _print({"outcome": "reply", "text": policy.render(Path(args.policy).name), "policy_error": True})
            return 1
    assert isinstance(policy, Policy)
    decision = parse_comment(text, catalog=catalog, policy=policy, bot_login=args.bot_login)
    out: dict[str, Any] = decision.to_dict()
    if args.plan and isinstance(decision, Parsed):
        pr = PRFacts(repo=args.repo, head_sha=args.sha, base_ref=args.base_ref,
                     latest_train_run=args.latest_train_run)
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


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))
