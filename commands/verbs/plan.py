"""`/plan <command>`, `/approve [plan]` and `/resume <run-id>`: cost before a job runs, approval of a costly plan,
and continuing a stopped training run from its last checkpoint."""

from __future__ import annotations

import re

from ..args import ArgError, ArgSpec
from ..values import ArgValue, quote_user
from .base import Context, RawCommand, VerbSpec, get_spec, register, render_command, split_args, too_many

PLANNABLE = ("train", "eval", "compare")
_HASH = re.compile(r"^[0-9a-f]{6,64}$")
_RUN = ArgSpec("run", "run", "the training run to continue", example="r-1a2b3c")


def _plan(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    if not raw.words or raw.words[0].key is not None:
        raise ArgError("which command? `/plan /train <model> [key=value…]` shows its cost and starts nothing")
    verb_text = raw.words[0].text.removeprefix("/").lower()
    spec = get_spec(verb_text)
    if spec is None or spec.name not in PLANNABLE:
        raise ArgError(f"{quote_user(raw.words[0].text)}: `/plan` plans {', '.join('/' + v for v in PLANNABLE)}")
    inner = RawCommand(spec.name, raw.words[1:], raw.line, raw.lineno)
    args = dict(spec.validate(inner, ctx))
    args.pop("plan", None)
    # The canonical text of the inner command: the handler plans exactly what the parser validated.
    return {"command": render_command(spec.name, args)}


PLAN = register(VerbSpec(
    name="plan",
    usage="/plan /train <model> [key=value…]",
    summary="Show what a /train, /eval or /compare would run and what it costs (peak GPU memory per device, tokens, "
            "GPU-hours, the queue ahead, whether it fits the runner's GPU); starts nothing. `/train … plan=true` is "
            "the same.",
    summary_zh="显示 /train、/eval 或 /compare 将运行的内容及其开销（每卡峰值显存、token 数、GPU 时、排队情况、"
               "是否放得下 runner 的 GPU），不启动任何任务。`/train … plan=true` 等价。",
    examples=("/plan /train qwen2.5-7b-instruct max_steps=500 dataset=alpaca-zh", "/plan /train tiny max_steps=20"),
    gate="read",
    positional=("command",),
    keys=(),
    validate=_plan,
    details="Memory is calibrated against ms-swift's published benchmark (docs/source/LLM/Benchmark.md: "
            "qwen-1.8b/7b/14b, LoRA, bnb-4bit QLoRA and full, max_length 512-8192, batch 1-8): within ±15% for "
            "LoRA and QLoRA, and for full fine-tuning up to max_length 2048 (above it, full fine-tuning is "
            "overestimated by up to 30%). Expect real runs to differ with other attention kernels or without "
            "gradient checkpointing. GPU-hours are 6·N·tokens at an assumed MFU of 35% (25% for QLoRA), with tokens "
            "an upper bound (steps × global batch × max_length), on the GPU `gpu.type` in .tunebot.yml declares. "
            "With `approval.above_gpu_hours` set, a bigger /train waits for `/approve`.",
))


def _approve(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, _ = split_args(raw, APPROVE, ctx)
    if len(positionals) > 1:
        raise too_many(positionals[1:], "approve", "at most the plan it approves")
    if not positionals:
        return {}
    text = positionals[0].lower()
    if not _HASH.match(text):
        raise ArgError(f"{quote_user(positionals[0])} is not a plan hash (6 or more hex digits, as `/plan` shows)")
    return {"plan": text}


APPROVE = register(VerbSpec(
    name="approve",
    usage="/approve [plan-hash]",
    summary="Start a /train that waits for approval because its estimate is above `approval.above_gpu_hours`: "
            "exactly the planned job, at the commit it was planned on. Naming the plan hash guards against a "
            "different plan in between.",
    summary_zh="批准因估算超过 `approval.above_gpu_hours` 而等待的 /train：按原计划、在原提交上启动。写明计划哈希可防止"
               "中途换成其他计划。",
    examples=("/approve", "/approve 3f786850e387"),
    gate="approve",
    positional=("plan",),
    keys=(),
    validate=_approve,
))


def _resume(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
    positionals, keyed = split_args(raw, RESUME, ctx)
    if len(positionals) + len(keyed) > 1:
        raise too_many(positionals[1:] or positionals, "resume", "at most one run id")
    text = positionals[0] if positionals else keyed["run"][1] if keyed else None
    return {} if text is None else {"run": _RUN.parse(text.removeprefix("#"))}


RESUME = register(VerbSpec(
    name="resume",
    usage="/resume [run-id]",
    summary="Continue a cancelled or failed training run from its last uploaded checkpoint (the step count goes on "
            "from there), under a new run id.",
    summary_zh="从最后上传的检查点继续已取消或失败的训练运行（步数接着计），使用新的运行编号。",
    examples=("/resume", "/resume r-1a2b3c"),
    gate="train",
    positional=("run",),
    keys=(_RUN,),
    validate=_resume,
    dispatches=True,
))
