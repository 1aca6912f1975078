"""The plan of a command before anything runs: each planned job's cost estimate, whether it needs `/approve`
(`approval.above_gpu_hours`), the content hash an approval binds to, and the reply that shows all of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .catalog import Catalog, ModelPreset
from .estimate import ACCURACY, Arch, Estimate, TrainShape, arch_for_size, estimate, gpu_type
from .jobspec import HyperParams, JobSpec, content_hash, to_dict
from .plan import PlannedJob
from .policy import Policy
from .render.i18n import Language, t


@dataclass(frozen=True)
class JobCost:
    job: JobSpec
    estimate: Estimate | None  # None for jobs that do not train (an evaluation's cost is not estimated)
    arch_known: bool  # the preset declares its architecture (else it was guessed from size_b)


@dataclass(frozen=True)
class CostPlan:
    jobs: tuple[JobCost, ...]
    plan_hash: str  # what `/approve` binds to: the jobs' content (run ids and callbacks aside) and the head commit
    head_sha: str
    queue_ahead: int
    needs_approval: bool
    approval_reason: str  # why it needs approval ("" when it does not)

    @property
    def gpu_hours(self) -> float | None:
        hours = [c.estimate.gpu_hours for c in self.jobs if c.estimate is not None]
        return None if any(h is None for h in hours) else sum(h for h in hours if h is not None)


def arch_of(preset: ModelPreset) -> tuple[Arch, bool]:
    """The preset's declared architecture, or one guessed from its size (and False)."""
    if preset.arch:
        a = preset.arch
        return Arch(int(a["hidden"]), int(a["layers"]), int(a["intermediate"]), int(a["vocab"]), int(a["heads"]),
                    int(a["kv_heads"]), bool(a.get("tied", False))), True
    return arch_for_size(preset.size_b), False


def shape_of(job: JobSpec, policy: Policy) -> TrainShape:
    """The cost-deciding settings of a training job: its hyper-parameters and the GPUs it runs on (the job's
    `resources` when it asks for several, else the policy's `gpu.count`); ZeRO and FSDP shard like ZeRO-2/3."""
    h: HyperParams = job.hyper
    res = job.resources
    gpus = res.world_size if res is not None else policy.gpu_count
    sharding = (res.sharding or "") if res is not None else ""
    zero = 3 if ("zero3" in sharding or "fsdp" in sharding) else 2 if "zero2" in sharding else 0
    samples = [d.max_samples for d in job.datasets]
    rows = sum(s for s in samples if s is not None) if samples and all(s is not None for s in samples) else None
    return TrainShape(tuner=str(job.tuner or "lora"), dtype=h.torch_dtype, quant_bits=h.quant_bits,
                      lora_rank=h.lora_rank, max_length=h.max_length, batch=h.per_device_train_batch_size,
                      grad_accum=h.gradient_accumulation_steps, gpus=max(1, gpus), zero=zero,
                      max_steps=h.max_steps, epochs=h.num_train_epochs, rows=rows)


def plan_hash(planned: Sequence[PlannedJob], head_sha: str) -> str:
    """The content hash of what would run: each job without its run id, callback and expiry, plus the commit."""
    jobs: list[Any] = [to_dict(replace(pj.job, run_id="-", callback=None, not_after=None)) for pj in planned]
    return content_hash({"head_sha": head_sha.lower(), "jobs": jobs,
                         "compare": [pj.compare_ref or "" for pj in planned]})


def cost_plan(planned: Sequence[PlannedJob], head_sha: str, policy: Policy, catalog: Catalog,
              queue_ahead: int = 0) -> CostPlan:
    gpu = gpu_type(policy.gpu_type)
    costs: list[JobCost] = []
    for pj in planned:
        preset = catalog.models.get(pj.job.model.name)
        if not pj.job.trains or preset is None:
            costs.append(JobCost(pj.job, None, False))
            continue
        arch, known = arch_of(preset)
        costs.append(JobCost(pj.job, estimate(arch, shape_of(pj.job, policy), gpu), known))
    limit = policy.approval_above_gpu_hours
    reason = ""
    training = [c.estimate for c in costs if c.estimate is not None]
    if limit is not None and training:
        hours = [e.gpu_hours for e in training]
        if any(h is None for h in hours):
            reason = (f"its cost cannot be estimated (no `max_steps=` or `max_samples=`), and this repository "
                      f"asks for approval above {limit:g} GPU-hours")
        elif sum(h for h in hours if h is not None) > limit:
            total = sum(h for h in hours if h is not None)
            reason = (f"it is estimated at {total:.1f} GPU-hours, above this repository's "
                      f"`approval.above_gpu_hours` ({limit:g})")
    return CostPlan(tuple(costs), plan_hash(planned, head_sha), head_sha, queue_ahead, bool(reason), reason)


def _n(value: float) -> str:
    """12 345 678 → `12.3M`; readable magnitudes for tokens and parameters."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def render_plan(cp: CostPlan, command: str, language: Language, policy: Policy) -> str:
    """The plan reply: the resolved recipe and cost of each job, the queue, and what happens next."""
    lines = [t(language, "plan.title", command=command), ""]
    for c in cp.jobs:
        job, h = c.job, c.job.hyper
        datasets = ", ".join(d.name + (f" (≤{d.max_samples} rows)" if d.max_samples else "") for d in job.datasets)
        benches = ", ".join(b.name for b in job.benchmarks) or "—"
        lines.append(t(language, "plan.recipe", kind=job.kind, model=job.model.name, tuner=job.tuner or "—",
                       datasets=datasets or "—", benchmarks=benches))
        if job.trains:
            steps = f"max_steps={h.max_steps}" if h.max_steps else f"epochs={h.num_train_epochs:g}"
            lines.append(t(language, "plan.hyper", rank=h.lora_rank, alpha=h.lora_alpha, lr=f"{h.learning_rate:g}",
                           batch=h.per_device_train_batch_size, accum=h.gradient_accumulation_steps,
                           length=h.max_length, steps=steps, dtype=h.torch_dtype,
                           quant=f", quant_bits={h.quant_bits}" if job.tuner == "qlora" else "", seed=h.seed))
        est = c.estimate
        if est is None:
            lines.append(t(language, "plan.no_estimate"))
            lines.append("")
            continue
        m = est.memory
        fits = t(language, "plan.fits" if est.fits else "plan.no_fit", gpu=est.gpu.name, mem=f"{est.gpu.memory_gib:g}")
        lines.append(t(language, "plan.memory", total=f"{m.total:.1f}", weights=f"{m.weights:.1f}",
                       trainable=f"{m.trainable:.2f}", activations=f"{m.activations:.1f}",
                       overhead=f"{m.overhead:.1f}", fits=fits, acc=f"{ACCURACY * 100:.0f}"))
        if not c.arch_known:
            lines.append(t(language, "plan.arch_guessed"))
        lines.append(t(language, "plan.params", params=_n(est.params), trainable=_n(est.trainable_params)))
        if est.tokens is None or est.gpu_hours is None or est.flops is None or est.steps is None:
            lines.append(t(language, "plan.tokens_unknown"))
        else:
            batch = h.per_device_train_batch_size * h.gradient_accumulation_steps * est.gpus
            lines.append(t(language, "plan.tokens", tokens=_n(est.tokens), steps=est.steps, batch=batch,
                           length=h.max_length))
            lines.append(t(language, "plan.hours", hours=f"{est.gpu_hours:.3g}", wall=f"{est.wall_hours or 0:.3g}",
                           n=est.gpus, gpu=est.gpu.name, flops=f"{est.flops:.3g}", mfu=f"{est.mfu * 100:.0f}",
                           declared="" if policy.gpu_type else t(language, "plan.gpu_assumed")))
        lines.append("")
    lines.append(t(language, "plan.queue", queue=cp.queue_ahead))
    if cp.needs_approval:
        lines.append(t(language, "plan.needs_approval", reason=cp.approval_reason, hash=cp.plan_hash[:12]))
    lines.append(t(language, "plan.hash", hash=cp.plan_hash[:12], sha=cp.head_sha[:7]))
    return "\n".join(lines)
