"""Training with ms-swift: the `swift sft` argument list built from the typed job, and a supervised run that
follows `logging.jsonl` as it grows and turns each line into a progress event while the model trains.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commands.jobspec import HyperParams, JobSpec

from . import checkpoints
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
    resume_from: Path | None = None,
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
        # Adapter checkpoints keep their optimizer, scheduler and RNG state (megabytes for LoRA): they are uploaded as
        # written, and `/resume` (or a resume after a lost runner) continues from the exact step. A full model's
        # optimizer state would double a checkpoint that is too big to upload anyway.
        "--save_only_model", "true" if job.tuner == "full" else "false",
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
    if resume_from is not None:
        # Weights, optimizer, scheduler, RNG and global_step from the checkpoint; data already seen is skipped
        # (`resume_only_model` stays false: that would restart the step count).
        argv += ["--resume_from_checkpoint", str(resume_from)]
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
    res = job.resources
    if res is not None and res.world_size > 1 and not gpu:
        # torch's default backend is NCCL, which needs GPUs: CPU processes talk over gloo (how CI tests this path).
        argv += ["--ddp_backend", "gloo"]
    if res is not None and res.sharding is not None:
        argv += ["--fsdp", res.sharding] if res.sharding.startswith("fsdp") else ["--deepspeed", res.sharding]
    return argv


@dataclass(frozen=True)
class NodePlace:
    """Where this agent's processes sit in a distributed job: its node's rank and the rendezvous (node 0's address,
    e.g. a Kubernetes headless Service name, and a port). Given by the runner (flags/environment), not the job."""

    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None


def distributed_env(job: JobSpec, place: NodePlace, *, gpu: bool) -> dict[str, str]:
    """The variables with which `swift sft` starts torchrun itself (one process per GPU, `nodes` nodes).

    Empty for a one-GPU, one-node job, which then runs exactly as before (one process, no torchrun)."""
    res = job.resources
    if res is None or res.world_size <= 1:
        if place.node_rank:
            raise AgentError(f"this runner is node {place.node_rank} of a distributed job, but job {job.run_id} "
                             f"asks for one node")
        return {}
    if res.sharding is not None and not gpu:
        raise AgentError(f"resources.sharding {res.sharding}: DeepSpeed and FSDP need GPUs, and this runner has none")
    if not 0 <= place.node_rank < res.nodes:
        raise AgentError(f"node rank {place.node_rank} is outside this job's {res.nodes} node(s)")
    env = {"NPROC_PER_NODE": str(res.gpus), "NNODES": str(res.nodes), "NODE_RANK": str(place.node_rank)}
    if res.nodes > 1:
        if not place.master_addr or not place.master_port:
            raise AgentError(f"job {job.run_id} trains on {res.nodes} nodes: this runner needs the rendezvous "
                             f"address and port of node 0 (--master-addr/--master-port, or TUNEBOT_MASTER_ADDR/"
                             f"TUNEBOT_MASTER_PORT; on Kubernetes the job's headless Service)")
        env["MASTER_ADDR"] = place.master_addr
        env["MASTER_PORT"] = str(place.master_port)
    else:
        env["MASTER_ADDR"] = "127.0.0.1"
        env["MASTER_PORT"] = str(place.master_port or _free_port())
    return env


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _copy_regular_files(src: Path, dest: Path) -> None:
    """Copy the regular files under `src` (written by a confined tool) to `dest`; links are left behind, so a tool
    cannot have the agent copy a file it points at into the artifact."""
    if not src.is_dir() or src.is_symlink():
        return
    for root, _, files in os.walk(src, followlinks=False):  # never descends into a linked directory
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def train(
    ctx: RunContext,
    job: JobSpec,
    model: ResolvedModel,
    datasets: Sequence[PreparedDataset],
    *,
    gpu: bool,
    offline: bool,
    on_first_step: Callable[[], None] | None = None,
    place: NodePlace | None = None,
    resume_from: Path | None = None,
) -> TrainOutcome:
    """Run `swift sft`, turning logging.jsonl lines into progress events as they appear (polled every 0.1 s), and
    uploading each checkpoint as soon as it is complete.

    With several processes only global rank 0 writes logging.jsonl and the checkpoint, so progress is rank 0's."""
    import time

    output_dir = ctx.tool_dir / "swift-out"
    # TensorBoard's event files are written where the tools may write, then copied into the run's outputs (its
    # artifact) once training ends: the confined tools cannot write the outputs themselves.
    tensorboard = ctx.tool_dir / "tensorboard"
    argv = [ctx.config.swift_exe, *sft_argv(job, model, datasets, output_dir, gpu=gpu, logging_dir=tensorboard,
                                            resume_from=resume_from)]
    uploader = checkpoints.Uploader(output_dir, job.callback if job.tuner != "full" else None, ctx.bus.emit)
    if resume_from is not None:
        uploader.last_step = checkpoints.step_of(resume_from)
    log = TrainLog()
    tail = LogTail(output_dir / "logging.jsonl")

    started = [False]
    dist = distributed_env(job, place or NodePlace(), gpu=gpu)
    env = ctx.tool_env(offline=offline, extra={**tracker_env(job), **dist})
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
        uploader.poll()

    proc = Supervised(ctx.tool_argv(argv), env=env, log_path=ctx.logs / "swift-sft.log",
                      on_line=watch.feed if watch is not None else None)
    t0 = time.monotonic()
    rc = run_supervised(proc, ctx.watchdog, what="training", tick=tick, tick_s=0.1, grace_s=ctx.config.grace_s)
    wall = time.monotonic() - t0
    if rc == 0:
        uploader.poll(force=True)  # the last checkpoint, written as training ended
    _copy_regular_files(tensorboard, ctx.config.out / "tensorboard")
    if rc != 0:
        lines = proc.tail()
        raise AgentError(f"ms-swift training failed ({describe_exit(rc)}): {headline(lines)}", detail="\n".join(lines))
    if dist and int(dist["NODE_RANK"]) > 0:
        # Another node holds global rank 0: its agent reports progress, the checkpoint and the results.
        return TrainOutcome(output_dir, output_dir, output_dir / "args.json", log, argv, wall)
    checkpoint = find_checkpoint(output_dir, log.final)
    args_json = output_dir / "args.json"
    if not args_json.is_file():
        args_json = checkpoint / "args.json"
    return TrainOutcome(output_dir, checkpoint, args_json, log, argv, wall)
