"""Training with ms-swift: the `swift sft` argument list built from the typed job, and a supervised run that
follows `logging.jsonl` as it grows and turns each line into a progress event while the model trains.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commands.jobspec import HyperParams, JobSpec

from .context import RunContext
from .datasets import PreparedDataset
from .errors import AgentError
from .models import ResolvedModel
from .procs import Supervised, describe_exit, headline, run_supervised
from .tracking import TRACKED, TrackerWatch

TORCH_DTYPES = ("float32", "bfloat16", "float16")
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def validate_hyper(h: HyperParams, tuner: str) -> None:
    """Reject values ms-swift would choke on (or silently misuse) before any work starts."""
    problems: list[str] = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            problems.append(msg)

    need(h.lora_rank >= 1, f"lora_rank must be >= 1, got {h.lora_rank}")
    need(h.lora_alpha >= 1, f"lora_alpha must be >= 1, got {h.lora_alpha}")
    need(0.0 <= h.lora_dropout < 1.0, f"lora_dropout must be in [0, 1), got {h.lora_dropout}")
    need(math.isfinite(h.learning_rate) and 0.0 < h.learning_rate < 1.0,
         f"learning_rate must be in (0, 1), got {h.learning_rate}")
    need(math.isfinite(h.num_train_epochs) and h.num_train_epochs > 0,
         f"num_train_epochs must be > 0, got {h.num_train_epochs}")
    need(h.max_steps is None or h.max_steps >= 1, f"max_steps must be >= 1, got {h.max_steps}")
    need(h.per_device_train_batch_size >= 1,
         f"per_device_train_batch_size must be >= 1, got {h.per_device_train_batch_size}")
    need(h.gradient_accumulation_steps >= 1,
         f"gradient_accumulation_steps must be >= 1, got {h.gradient_accumulation_steps}")
    need(16 <= h.max_length <= 1_048_576, f"max_length must be in [16, 1048576], got {h.max_length}")
    need(0.0 <= h.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {h.warmup_ratio}")
    need(h.logging_steps >= 1, f"logging_steps must be >= 1, got {h.logging_steps}")
    need(h.save_steps >= 1, f"save_steps must be >= 1, got {h.save_steps}")
    need(0 <= h.seed < 2**32, f"seed must be in [0, 2^32), got {h.seed}")
    need(h.torch_dtype in TORCH_DTYPES, f"torch_dtype must be one of {', '.join(TORCH_DTYPES)}, got {h.torch_dtype!r}")
    need(h.quant_bits in (4, 8), f"quant_bits must be 4 or 8, got {h.quant_bits}")
    modules = target_modules(h.target_modules)
    need(bool(modules) and all(_MODULE_NAME.fullmatch(m) and not m.startswith("-") for m in modules),
         f"target_modules must be module names or 'all-linear', got {h.target_modules!r}")
    if problems:
        raise AgentError("bad hyper-parameter: " + "; ".join(problems))


def target_modules(spec: str) -> list[str]:
    return [m for m in re.split(r"[,\s]+", spec.strip()) if m]


def tracker(job: JobSpec) -> str:
    """ms-swift's `--report_to`: the repository's choice, TensorBoard (files in the artifact) by default."""
    return job.tracking.tool if job.tracking is not None else "tensorboard"


# The project name goes to each tracker through its own environment variable; credentials (WANDB_API_KEY,
# SWANLAB_API_KEY, MLFLOW_TRACKING_URI/…) come from the runner's secrets, passed by the workflow through `env:`.
_PROJECT_ENV = {"wandb": "WANDB_PROJECT", "swanlab": "SWANLAB_PROJECT", "mlflow": "MLFLOW_EXPERIMENT_NAME"}


def tracker_env(job: JobSpec) -> dict[str, str]:
    tracking = job.tracking
    if tracking is None or tracking.project is None or tracking.tool not in _PROJECT_ENV:
        return {}
    return {_PROJECT_ENV[tracking.tool]: tracking.project}


def sft_argv(
    job: JobSpec,
    model: ResolvedModel,
    datasets: Sequence[PreparedDataset],
    output_dir: Path,
    *,
    gpu: bool,
    logging_dir: Path | None = None,
) -> list[str]:
    """The `swift sft` arguments (without the executable): only typed, validated job fields ever reach ms-swift."""
    if job.tuner is None:
        raise AgentError("tuner: a training job needs lora, qlora or full")
    h = job.hyper
    m = job.model
    argv = [
        "sft",
        "--model", str(model.path),
        "--model_type", m.model_type,
        "--template", m.template,
        "--tuner_type", "full" if job.tuner == "full" else "lora",
        "--torch_dtype", h.torch_dtype,
        "--dataset", *[d.swift_arg for d in datasets],
        "--num_train_epochs", repr(float(h.num_train_epochs)),
        "--per_device_train_batch_size", str(h.per_device_train_batch_size),
        "--gradient_accumulation_steps", str(h.gradient_accumulation_steps),
        "--learning_rate", repr(float(h.learning_rate)),
        "--warmup_ratio", repr(float(h.warmup_ratio)),
        "--max_length", str(h.max_length),
        "--logging_steps", str(h.logging_steps),
        "--save_steps", str(h.save_steps),
        "--save_total_limit", "1",
        "--save_only_model", "true",
        "--seed", str(h.seed),
        "--data_seed", str(h.seed),
        "--split_dataset_ratio", "0",
        "--output_dir", str(output_dir),
        "--add_version", "false",
        "--check_model", "false",
        "--report_to", tracker(job),
        "--dataset_num_proc", "1",
        "--dataloader_num_workers", "2" if gpu else "0",
    ]  # fmt: skip
    if logging_dir is not None and tracker(job) == "tensorboard":
        argv += ["--logging_dir", str(logging_dir)]
    if h.max_steps is not None:
        argv += ["--max_steps", str(h.max_steps)]
    if job.tuner in ("lora", "qlora"):
        argv += [
            "--lora_rank", str(h.lora_rank),
            "--lora_alpha", str(h.lora_alpha),
            "--lora_dropout", repr(float(h.lora_dropout)),
            "--target_modules", *target_modules(h.target_modules),
        ]  # fmt: skip
    if job.tuner == "qlora":
        argv += ["--quant_method", "bnb", "--quant_bits", str(h.quant_bits)]
        if h.quant_bits == 4:
            # bitsandbytes' CPU backend computes in float32; on a GPU the model's own dtype is the usual choice.
            compute = h.torch_dtype if gpu else "float32"
            argv += ["--bnb_4bit_compute_dtype", compute, "--bnb_4bit_quant_type", "nf4",
                     "--bnb_4bit_use_double_quant", "true"]
    # No --trust_remote_code: ms-swift 4.x has no such argument (it refuses the run: "remaining_argv") and its model
    # loaders trust hub code by default. Whether hub code may run is decided by the job (model.trust_remote_code)
    # through the tool environment instead (runner_agent/hub_code.py), in every process ms-swift starts.
    if any(d.source == "huggingface" for d in datasets):
        argv += ["--use_hf", "true"]
    return argv


_TIME = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")


def parse_duration(text: object) -> float | None:
    """ms-swift's `format_time` strings ("56s", "1m 2s", "1h 2m 3s", "1d 2h") in seconds."""
    if not isinstance(text, str):
        return None
    parts = _TIME.findall(text)
    if not parts:
        return None
    mult = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(sum(float(n) * mult[u] for n, u in parts))


def _num(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


@dataclass
class TrainLog:
    """What `logging.jsonl` said: the loss curve, the summary line and the final checkpoint."""

    points: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    summary: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 0
    last_step: int = 0


class LogTail:
    """Reads the complete lines appended to a file since the last call (the file may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pos = 0
        self._partial = b""

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._pos)
                data = fh.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        self._pos += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [ln.decode("utf-8", errors="replace") for ln in lines if ln.strip()]


def handle_log_line(line: str, log: TrainLog, emit: Callable[..., Any]) -> None:
    """One line of `logging.jsonl`: a step line becomes a progress event; summary lines are kept."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return
    if not isinstance(rec, dict):
        return
    if "last_model_checkpoint" in rec or "log_history" in rec:
        log.final = {k: v for k, v in rec.items() if k != "log_history"}
        return
    steps = rec.get("global_step/max_steps")
    step = total = None
    if isinstance(steps, str) and "/" in steps:
        a, _, b = steps.partition("/")
        if a.strip().isdigit() and b.strip().isdigit():
            step, total = int(a), int(b)
    if "train_runtime" in rec:
        log.summary = dict(rec)
        return
    if step is None or total is None:
        return
    loss = _num(rec.get("loss"))
    log.total_steps = total
    log.last_step = step
    if loss is not None:
        log.points.append((step, loss))
    emit(
        "progress",
        phase="train",
        step=step,
        total=total,
        loss=loss,
        learning_rate=_num(rec.get("learning_rate")),
        epoch=_num(rec.get("epoch")),
        eta_s=parse_duration(rec.get("remaining_time")),
    )


@dataclass(frozen=True)
class TrainOutcome:
    output_dir: Path
    checkpoint: Path
    args_json: Path
    log: TrainLog
    argv: list[str]
    wall_s: float


def find_checkpoint(output_dir: Path, final: dict[str, Any]) -> Path:
    reported = final.get("last_model_checkpoint")
    if isinstance(reported, str) and Path(reported).is_dir():
        return Path(reported)
    link = output_dir / "last-checkpoint"
    if link.exists():
        return link.resolve()
    def step_of(p: Path) -> int:
        tail = p.name.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    ckpts = sorted(output_dir.glob("checkpoint-*"), key=step_of)
    if not ckpts:
        raise AgentError(f"ms-swift finished but wrote no checkpoint under {output_dir}")
    return ckpts[-1]


def train(
    ctx: RunContext,
    job: JobSpec,
    model: ResolvedModel,
    datasets: Sequence[PreparedDataset],
    *,
    gpu: bool,
    offline: bool,
    on_first_step: Callable[[], None] | None = None,
) -> TrainOutcome:
    """Run `swift sft`, turning logging.jsonl lines into progress events as they appear (polled every 0.1 s)."""
    import time

    output_dir = ctx.scratch / "swift-out"
    # TensorBoard's event files go straight into the run's outputs, so they are part of its artifact.
    argv = [ctx.config.swift_exe, *sft_argv(job, model, datasets, output_dir, gpu=gpu,
                                            logging_dir=ctx.config.out / "tensorboard")]
    log = TrainLog()
    tail = LogTail(output_dir / "logging.jsonl")

    started = [False]
    env = ctx.tool_env(offline=offline, extra=tracker_env(job))
    # wandb, SwanLab and MLflow print their run page in the training output: the card links to it.
    watch = TrackerWatch(tracker(job), env) if tracker(job) in TRACKED else None
    linked = [False]

    def tick() -> None:
        for line in tail.read():
            handle_log_line(line, log, ctx.bus.emit)
        if not started[0] and log.last_step and on_first_step is not None:
            started[0] = True
            on_first_step()
        if watch is not None and watch.url is not None and not linked[0]:
            linked[0] = True  # events leave from this thread only, in order; the reader thread just found it
            ctx.bus.emit("tracker", tool=watch.tool, url=watch.url)

    proc = Supervised(argv, env=env, log_path=ctx.logs / "swift-sft.log",
                      on_line=watch.feed if watch is not None else None)
    t0 = time.monotonic()
    rc = run_supervised(proc, ctx.watchdog, what="training", tick=tick, tick_s=0.1, grace_s=ctx.config.grace_s)
    wall = time.monotonic() - t0
    if rc != 0:
        lines = proc.tail()
        raise AgentError(f"ms-swift training failed ({describe_exit(rc)}): {headline(lines)}", detail="\n".join(lines))
    checkpoint = find_checkpoint(output_dir, log.final)
    args_json = output_dir / "args.json"
    if not args_json.is_file():
        args_json = checkpoint / "args.json"
    return TrainOutcome(output_dir, checkpoint, args_json, log, argv, wall)
