"""`/status`, `/cancel` and `/retry`: verbs about runs that already exist, named by id or defaulting to the latest."""

from __future__ import annotations

from ..args import ArgSpec
from ..values import ArgValue
from .base import Context, Gate, RawCommand, Validator, VerbSpec, register, split_args, too_many

_RUN = ArgSpec("run", "run", "a run id (default: this PR's latest run)", example="r-1a2b3c")


def _validator(verb: str) -> Validator:
    def validate(raw: RawCommand, ctx: Context) -> dict[str, ArgValue]:
        spec = SPECS[verb]
        positionals, keyed = split_args(raw, spec, ctx)
        if len(positionals) + len(keyed) > 1:
            raise too_many(positionals[1:] or positionals, verb, "at most one run id")
        text = positionals[0] if positionals else keyed["run"][1] if keyed else None
        if text is None:
            return {}
        return {"run": _RUN.parse(text.removeprefix("#"))}

    return validate


SPECS: dict[str, VerbSpec] = {}


def _register(name: str, gate: Gate, summary: str, summary_zh: str, *, dispatches: bool = False) -> None:
    SPECS[name] = register(VerbSpec(
        name=name,
        usage=f"/{name} [run-id]",
        summary=summary,
        summary_zh=summary_zh,
        examples=(f"/{name}", f"/{name} r-1a2b3c"),
        gate=gate,
        positional=("run",),
        keys=(_RUN,),
        validate=_validator(name),
        dispatches=dispatches,
    ))


_register("status", "read", "Show the state of this PR's latest run (or the named run): phase, progress, scores; "
          "a named run also shows its identities (recipe and result keys, adapter sha256, the model revision and "
          "training data as the runner resolved and read them).",
          "显示本 PR 最新运行（或指定运行）的状态：阶段、进度、得分；指定运行时还显示其身份（配方与结果键、"
          "适配器 sha256、运行器解析的模型版本与实际读取的训练数据）。")
_register("cancel", "eval", "Cancel this PR's running job (or the named run); the runner stops it within seconds. "
          "Whoever started a run may cancel it.",
          "取消本 PR 正在运行的任务（或指定运行）；发起者本人也可取消。")
_register("retry", "eval", "Run a failed or cancelled run again with exactly the same job spec, under a new run id "
          "(retrying a training run needs training permission).",
          "以完全相同的任务配置、新的运行编号重新运行失败或已取消的运行（重试训练需要训练权限）。", dispatches=True)
