"""`/leaderboard`, `/help` and `/ok-to-train`: the verbs that start no GPU work of their own."""

from __future__ import annotations

import re

from ..args import ArgError, did_you_mean
from ..values import ArgValue, quote_user
from .base import REGISTRY, Context, RawCommand, VerbSpec, get_spec, lookup, register, split_args, too_many

HELP_TOPICS = ("models", "benchmarks", "datasets", "presets")
_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")
_FULL_SHA = re.compile(r"^[0-9a-fA-F]{40}$")


def _leaderboard(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, _ = split_args(raw, LEADERBOARD, ctx)
    if len(positionals) > 1:
        raise too_many(positionals[1:], "leaderboard", "at most one benchmark")
    if not positionals:
        return {}
    return {"benchmark": lookup(positionals[0], list(ctx.catalog.benchmarks), "benchmark")}


LEADERBOARD = register(VerbSpec(
    name="leaderboard",
    usage="/leaderboard [benchmark]",
    summary="The best stored scores in this repository, per benchmark (or for one benchmark).",
    summary_zh="本仓库各评测集（或指定评测集）的最佳得分排行。",
    examples=("/leaderboard", "/leaderboard cmmlu"),
    gate="read",
    positional=("benchmark",),
    keys=(),
    validate=_leaderboard,
))


def _help(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, _ = split_args(raw, HELP, ctx)
    if len(positionals) > 1:
        raise too_many(positionals[1:], "help", "at most one topic")
    if not positionals:
        return {}
    topic = positionals[0].removeprefix("/").lower()
    spec = get_spec(topic)
    if spec is not None:
        return {"topic": spec.name}
    if topic in HELP_TOPICS or topic in ctx.catalog.benchmarks:
        return {"topic": topic}
    known = [*REGISTRY, *HELP_TOPICS]
    raise ArgError(f"no help on {quote_user(positionals[0])}{did_you_mean(topic, known)}; "
                   f"topics: {', '.join(known)}")


HELP = register(VerbSpec(
    name="help",
    usage="/help [verb|models|benchmarks|datasets|presets]",
    summary="List the commands, or explain one (its settings, their ranges, examples, who may use it).",
    summary_zh="列出所有命令，或详细说明某个命令（参数、取值范围、示例、权限）。",
    examples=("/help", "/help train", "/help models"),
    gate="read",
    positional=("topic",),
    keys=(),
    validate=_help,
    parser_replies=True,
))


def _ok_to_train(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, _ = split_args(raw, OK_TO_TRAIN, ctx)
    if len(positionals) > 1:
        raise too_many(positionals[1:], "ok-to-train", "at most the commit you reviewed")
    if not positionals:
        return {}
    if not _FULL_SHA.match(positionals[0]):
        # A short prefix can be matched by a commit pushed in between (7 hex digits are 28 bits to brute-force).
        what = "a short SHA" if _HEX.match(positionals[0]) else "not a commit SHA"
        raise ArgError(f"{quote_user(positionals[0])} is {what}; `/ok-to-train` approves the PR's current head, or "
                       "the commit you reviewed, named by its full 40-hex-digit SHA")
    return {"sha": positionals[0].lower()}


OK_TO_TRAIN = register(VerbSpec(
    name="ok-to-train",
    usage="/ok-to-train [sha]",
    summary="Approve training and evaluation of an untrusted (fork) PR at its current head commit; a new push "
            "needs a new approval. Naming the full SHA you reviewed guards against a push in between.",
    summary_zh="批准对来自 fork 的 PR 在当前最新提交上训练和评测；新的推送需要重新批准。",
    examples=("/ok-to-train", "/ok-to-train 3f786850e387550fdab836ed7e6dc881de23001b"),
    gate="approve",
    positional=("sha",),
    keys=(),
    validate=_ok_to_train,
    aliases=("ok-to-test", "oktotrain", "ok2train"),
))
