"""`/train <model> [key=value…]`: fine-tune a model preset with LoRA, QLoRA or full training."""

from __future__ import annotations

from ..args import HYPER_ARGS, ArgError, ArgSpec
from ..values import ArgValue
from .base import (
    Context,
    RawCommand,
    VerbSpec,
    allowed_models,
    check_hub,
    check_seeds,
    default_datasets,
    lookup,
    names_of,
    parse_keys,
    register,
    resolve_benchmarks,
    resolve_datasets,
    resolve_model,
    split_args,
    too_many,
)

TRAIN_KEYS: tuple[ArgSpec, ...] = (
    ArgSpec("model", "name", "model preset (or its hub id); usually given first, without `model=`"),
    ArgSpec("tuner", "choice", "how to train (default: the catalog's recommendation for the model size)",
            choices=("lora", "qlora", "full"), example="qlora"),
    ArgSpec("dataset", "names", "training data: registry names or files under the dataset folder, comma-separated",
            aliases=("datasets", "data"), example="alpaca-zh"),
    ArgSpec("preset", "name", "training preset from configs/training.yaml", example="quick"),
    *HYPER_ARGS,
    ArgSpec("max_samples", "int", "use at most this many rows of each dataset", 1, 10_000_000, example="1000"),
    ArgSpec("eval", "names", "benchmarks to run after training (default: the repo's default benchmarks; "
            "`none` to skip)", aliases=("benchmarks",), example="cmmlu,ceval"),
    ArgSpec("hub", "choice", "where to download the model", choices=("modelscope", "huggingface"),
            example="huggingface"),
    ArgSpec("plan", "bool", "show the plan and its cost (memory, tokens, GPU-hours) and start nothing",
            example="true"),
    ArgSpec("revision", "revision", "model revision: a branch, tag or full commit SHA on the hub (no "
            "`refs/pr/…`)", example="master"),
    ArgSpec("seeds", "int", "train with this many seeds (seed, seed+1, …) to measure training noise (default: "
            "`seeds.default` of .tunebot.yml, at most `seeds.max`)", 1, 16, example="3"),
    ArgSpec("gpus", "int", "GPUs per node, a power of two up to the repository's `runners.max_gpus` (default 1)",
            1, 16, example="4"),
    ArgSpec("nodes", "int", "nodes (one runner each) up to `runners.max_nodes` (default 1)", 1, 16, example="2"),
    ArgSpec("deepspeed", "choice", "shard the model with DeepSpeed ZeRO across the GPUs",
            choices=("zero2", "zero3", "zero2_offload", "zero3_offload"), example="zero3"),
    ArgSpec("fsdp", "choice", "shard the model with PyTorch FSDP2 across the GPUs", choices=("fsdp2",),
            example="fsdp2"),
    ArgSpec("backend", "choice", "how the evaluation after training runs the model: `native` (EvalScope loads it) "
            "or `served` (one ms-swift server: vLLM on GPU)", choices=("native", "served"), example="served"),
)
_LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout")


def validate(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, keyed = split_args(raw, SPEC, ctx)
    if len(positionals) > 1:
        raise too_many(positionals[1:], "train", "one model")
    if positionals and "model" in keyed:
        raise ArgError("the model is given twice (as the first word and as `model=`)")
    model_text = positionals[0] if positionals else (keyed["model"][1] if "model" in keyed else None)
    args = parse_keys(keyed, skip=("model", "dataset", "preset", "eval"))
    if args.get("plan") is False:
        del args["plan"]  # `plan=false` is a plain /train
    check_seeds(args, ctx)
    if model_text is None:
        if ctx.policy.default_model is None:
            raise ArgError(f"which model? `/train <model>`; allowed: {', '.join(allowed_models(ctx))}")
        model_text = ctx.policy.default_model
        ctx.notes.append(f"no model named: using the repository default `{model_text}`")
    name, implied_hub = resolve_model(model_text, ctx)
    args["model"] = name
    if implied_hub is not None and "hub" not in args:
        args["hub"] = implied_hub
    hub = args.get("hub")
    check_hub(ctx.catalog.models[name], hub if isinstance(hub, str) else None)
    if "preset" in keyed:
        args["preset"] = lookup(keyed["preset"][1], list(ctx.catalog.training), "training preset")
    tuner = args.get("tuner")
    if tuner == "full":
        given = [k for k in _LORA_ONLY if k in args]
        if given:
            raise ArgError(f"`{given[0]}` does not apply to `tuner=full`")
    if "quant_bits" in args and tuner not in (None, "qlora"):
        raise ArgError("`quant_bits` applies to `tuner=qlora` only")
    if "deepspeed" in args and "fsdp" in args:
        raise ArgError("`deepspeed` and `fsdp` are two ways to shard the model: choose one")
    gpus = args.get("gpus", 1)
    if isinstance(gpus, int) and (gpus & (gpus - 1) or gpus > ctx.policy.runners.max_gpus):
        raise ArgError(f"`gpus` must be a power of two up to {ctx.policy.runners.max_gpus} (this repository's "
                       f"`runners.max_gpus` in .tunebot.yml), not {gpus}")
    nodes = args.get("nodes", 1)
    if isinstance(nodes, int) and nodes > ctx.policy.runners.max_nodes:
        raise ArgError(f"`nodes` may be at most {ctx.policy.runners.max_nodes} here (`runners.max_nodes` in "
                       f".tunebot.yml), not {nodes}")
    if "dataset" in keyed:
        args["dataset"] = resolve_datasets(names_of(keyed, "dataset"), ctx)
    elif not default_datasets(ctx.catalog.models[name], ctx.catalog, ctx.policy):
        raise ArgError(
            "which data? add `dataset=<name>` (known: " + ", ".join(sorted(ctx.policy.datasets(ctx.catalog)))
            + f", or a file under `{ctx.policy.dataset_dir}/`), or set `datasets.default` in .tunebot.yml"
        )
    if "eval" in keyed:
        names = names_of(keyed, "eval")
        if [n.lower() for n in names] == ["none"]:
            args["eval"] = ("none",)
        else:
            args["eval"] = resolve_benchmarks(list(names), ctx)
    return args


SPEC = register(VerbSpec(
    name="train",
    usage="/train <model> [key=value…]",
    summary="Fine-tune a model on this PR's head commit (LoRA, QLoRA or full); evaluates afterwards when the "
            "repository has default benchmarks.",
    summary_zh="在本 PR 的最新提交上微调模型（LoRA、QLoRA 或全参）；若仓库配置了默认评测集，训练后自动评测。",
    examples=(
        "/train tiny max_steps=20",
        "/train qwen2.5-7b-instruct lora_rank=16 learning_rate=1e-4 dataset=alpaca-zh",
        "/train qwen2.5-0.5b-instruct preset=quick dataset=data/train.jsonl eval=cmmlu,ceval",
    ),
    gate="train",
    positional=("model",),
    keys=TRAIN_KEYS,
    validate=validate,
    dispatches=True,
    details="Unspecified settings come from, in order: the model's size defaults, the training preset "
            "(`preset=`, default `default`), then your `key=value` arguments. QLoRA is chosen for models of 7B "
            "and more unless you say `tuner=`.",
))
