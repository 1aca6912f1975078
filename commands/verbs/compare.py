"""`/compare [ref|run:<id>|base-model] [benchmark…]`: this PR's trained recipe against the same recipe at a ref (default
the base branch), a stored run, or the untuned base model, question by question."""

from __future__ import annotations

from ..args import ArgError, ArgSpec
from ..values import ArgValue
from .base import Context, RawCommand, VerbSpec, check_seeds, parse_keys, register, resolve_benchmarks, split_args

COMPARE_KEYS: tuple[ArgSpec, ...] = (
    ArgSpec("ref", "ref", "what to compare against: a branch, tag or commit (the same recipe trained there), "
            "`run:<id>`, or `base-model` (default: the PR's base branch)",
            aliases=("against", "base"), example="main"),
    ArgSpec("limit", "int", "questions per subject", 1, 100_000, example="50"),
    ArgSpec("force", "bool", "re-evaluate even if identical results are stored", example="true"),
    ArgSpec("backend", "choice", "how this PR's side is evaluated: `native` or `served` (one ms-swift server); only "
            "scores of the same backend are compared or reused", choices=("native", "served"), example="served"),
    ArgSpec("seeds", "int", "train with this many seeds (seed, seed+1, …) to measure training noise (default: "
            "`seeds.default` of .tunebot.yml, at most `seeds.max`)", 1, 16, example="3"),
)


def _is_benchmark(text: str, ctx: Context) -> bool:
    parts = [p for p in text.split(",") if p]
    return bool(parts) and all(p.lower() in {b.lower() for b in ctx.catalog.benchmarks} for p in parts)


def validate(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, keyed = split_args(raw, SPEC, ctx)
    args = parse_keys(keyed)
    check_seeds(args, ctx)
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


DETAILS = (
    "What is compared with what: your PR's latest `/train` (its adapter, evaluated) against the *same* `/train` "
    "(same model, settings and dataset names) run on the ref's commit with that commit's data files. A stored "
    "result of that recipe is reused (every PR against the same main commit shares one); otherwise it is trained "
    "and evaluated first (the card says `baseline main@abc1234: training`) and the report follows, naming both "
    "commits and what differed (e.g. `data/train.jsonl: blob 1a2b3c4 → 9f8e7d6`). If your PR changed nothing the "
    "training reads, it says \"same recipe\" and posts no delta. `run:<id>` compares with a stored run; `base-model` "
    "with the untuned model on the same questions."
)

SPEC = register(VerbSpec(
    name="compare",
    usage="/compare [branch|tag|commit|run:<id>|base-model] [benchmark…] [force=true]",
    summary="Compare what this PR trains with what the base branch (or another ref) trains from the same `/train` "
            "recipe, question by question, and say whether the change is real or noise.",
    summary_zh="用相同的 `/train` 配方，逐题对比本 PR 与基准分支（或指定的分支、标签、提交）训练出的模型，"
               "并判断差异是否显著。",
    examples=("/compare", "/compare main cmmlu", "/compare v1.2 ceval cmmlu", "/compare run:tb-1a2b3c4d5e6f",
              "/compare base-model"),
    details=DETAILS,
    gate="eval",
    positional=("benchmarks",),  # a ref is accepted first but rendered as `ref=` (it could look like a pack)
    keys=COMPARE_KEYS,
    validate=validate,
    dispatches=True,
))
