"""`/compare [ref-or-run] [benchmark…]`: this PR's scores against the base branch (or a ref or run), per question."""

from __future__ import annotations

from ..args import ArgError, ArgSpec
from ..values import ArgValue
from .base import Context, RawCommand, VerbSpec, parse_keys, register, resolve_benchmarks, split_args

COMPARE_KEYS: tuple[ArgSpec, ...] = (
    ArgSpec("ref", "ref", "what to compare against: a branch, tag, commit or run id (default: the PR's base branch)",
            aliases=("against", "base"), example="main"),
    ArgSpec("limit", "int", "questions per subject", 1, 100_000, example="50"),
    ArgSpec("force", "bool", "re-evaluate even if identical results are stored", example="true"),
)


def _is_benchmark(text: str, ctx: Context) -> bool:
    parts = [p for p in text.split(",") if p]
    return bool(parts) and all(p.lower() in {b.lower() for b in ctx.catalog.benchmarks} for p in parts)


def validate(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, keyed = split_args(raw, SPEC, ctx)
    args = parse_keys(keyed)
    benches: list[str] = []
    for text in positionals:
        if _is_benchmark(text, ctx):
            benches.append(text)
        elif "ref" in args:
            raise ArgError(f"compare against one thing at a time: `{args['ref']}` or `{text}`? "
                           "(benchmarks known: " + ", ".join(sorted(ctx.catalog.benchmarks)) + ")")
        else:
            args["ref"] = SPEC.keys[0].parse(text)
    if benches:
        args["benchmarks"] = resolve_benchmarks(benches, ctx)
    # No benchmark named: the repository's defaults, else what this PR was last evaluated on (a fact for planning).
    return args


SPEC = register(VerbSpec(
    name="compare",
    usage="/compare [branch|tag|commit|run-id] [benchmark…] [force=true]",
    summary="Compare this PR's scores with the base branch (or another ref or run), question by question, and "
            "say whether the change is real or noise.",
    summary_zh="逐题对比本 PR 与基准分支（或指定的分支、提交、运行）的得分，并判断差异是否显著。",
    examples=("/compare", "/compare main cmmlu", "/compare v1.2 ceval cmmlu force=true"),
    gate="eval",
    positional=("benchmarks",),  # a ref is accepted first but rendered as `ref=` (it could look like a pack)
    keys=COMPARE_KEYS,
    validate=validate,
    dispatches=True,
))
