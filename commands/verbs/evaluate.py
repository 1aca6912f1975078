"""`/eval <benchmark…> [model=… adapter=<run-id>|latest limit=…]`: score a model or a trained adapter."""

from __future__ import annotations

from ..args import ArgError, ArgSpec, did_you_mean
from ..values import ArgValue, quote_user
from .base import (
    Context,
    RawCommand,
    VerbSpec,
    allowed_models,
    check_hub,
    names_of,
    parse_keys,
    register,
    resolve_benchmarks,
    resolve_model,
    split_args,
)

EVAL_KEYS: tuple[ArgSpec, ...] = (
    ArgSpec("model", "name", "model preset to evaluate (default: the adapter's base model, or the repo default)",
            example="qwen2.5-7b-instruct"),
    ArgSpec("adapter", "run", "evaluate the adapter of an earlier training run: a run id, or `latest` (this PR's "
            "latest successful training run)", example="latest"),
    ArgSpec("subsets", "names", "subjects to run (one benchmark only; `all` for every subject; for general_mcq: "
            "your question files' names)",
            aliases=("subset",), example="logic,law"),
    ArgSpec("limit", "int", "questions per subject", 1, 100_000, example="50"),
    ArgSpec("few_shot", "int", "examples in the prompt", 0, 10, aliases=("shots",), example="5"),
    ArgSpec("force", "bool", "rerun even if an identical result is stored", example="true"),
    ArgSpec("hub", "choice", "where to download the model", choices=("modelscope", "huggingface"),
            example="huggingface"),
    ArgSpec("revision", "revision", "model revision: a branch, tag or full commit SHA on the hub (no "
            "`refs/pr/…`)", example="master"),
    ArgSpec("backend", "choice", "how the model is run: `native` (EvalScope loads it) or `served` (one ms-swift "
            "server for the job: vLLM on GPU); scores of different backends are kept apart",
            choices=("native", "served"), example="served"),
)


def check_subsets(args: dict[str, ArgValue], keyed_subsets: tuple[str, ...], ctx: Context) -> None:
    benches = args.get("benchmarks") or ctx.policy.default_benchmarks
    assert isinstance(benches, tuple)
    if len(benches) != 1:
        raise ArgError("`subsets=` needs exactly one benchmark, e.g. `/eval ceval subsets=logic,law`")
    pack = ctx.catalog.benchmarks[benches[0]]
    if [s.lower() for s in keyed_subsets] == ["all"]:
        args["subsets"] = ("all",)
        return
    out: list[str] = []
    for s in keyed_subsets:
        if pack.repo_folder is not None and "/" in s:
            raise ArgError(f"{pack.name} subsets are file names in `{ctx.policy.dataset_dir}/{pack.repo_folder}/` "
                           f"without the extension (no folders), got {quote_user(s)}")
        if pack.subjects:
            match = next((x for x in pack.subjects if x.lower() == s.lower()), None)
            if match is None:
                raise ArgError(f"{pack.name} has no subject {quote_user(s)}{did_you_mean(s, list(pack.subjects))} "
                               f"(`/help {pack.name}` lists them)")
            s = match
        if s not in out:
            out.append(s)
    args["subsets"] = tuple(sorted(out))


def validate(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, keyed = split_args(raw, SPEC, ctx)
    args = parse_keys(keyed, skip=("model", "subsets"))
    if positionals:
        args["benchmarks"] = resolve_benchmarks(positionals, ctx)
    elif not ctx.policy.default_benchmarks:
        raise ArgError(f"which benchmark? `/eval <benchmark>`; known: {', '.join(sorted(ctx.catalog.benchmarks))}")
    if "model" in keyed:
        name, implied_hub = resolve_model(keyed["model"][1], ctx)
        args["model"] = name
        if implied_hub is not None and "hub" not in args:
            args["hub"] = implied_hub
        hub = args.get("hub")
        check_hub(ctx.catalog.models[name], hub if isinstance(hub, str) else None)
    elif "adapter" not in args and ctx.policy.default_model is None:
        raise ArgError(f"which model? add `model=<preset>` (allowed: {', '.join(allowed_models(ctx))}) "
                       "or `adapter=latest` for this PR's latest trained adapter")
    if "subsets" in keyed:
        check_subsets(args, names_of(keyed, "subsets"), ctx)
    return args


SPEC = register(VerbSpec(
    name="eval",
    usage="/eval <benchmark…> [model=<preset>] [adapter=<run-id>|latest] [limit=N] [subsets=a,b] [force=true]",
    summary="Evaluate a model, or an adapter trained by an earlier run, on benchmark packs (CMMLU, C-Eval, your "
            "own MCQ); an identical stored result is reused unless `force=true`.",
    summary_zh="在评测集（CMMLU、C-Eval、自定义选择题）上评测模型或已训练的适配器；相同配置的结果会复用，"
               "除非指定 `force=true`。",
    examples=(
        "/eval cmmlu model=tiny limit=10",
        "/eval cmmlu ceval adapter=latest",
        "/eval ceval subsets=logic,law model=qwen2.5-7b-instruct force=true",
    ),
    gate="eval",
    positional=("benchmarks",),
    keys=EVAL_KEYS,
    validate=validate,
    dispatches=True,
))
