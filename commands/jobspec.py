"""The job spec: the versioned JSON contract that tells a runner agent exactly what one run must do."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Literal, cast, get_args

from .args import revision_problem

JOB_SPEC_VERSION = 1

JobKind = Literal["train", "eval", "train+eval"]
Tuner = Literal["lora", "qlora", "full"]
ModelSource = Literal["modelscope", "huggingface", "local", "builtin"]
DatasetSource = Literal["local", "modelscope", "huggingface", "builtin"]

JOB_KINDS: tuple[str, ...] = get_args(JobKind)
TUNERS: tuple[str, ...] = get_args(Tuner)
MODEL_SOURCES: tuple[str, ...] = get_args(ModelSource)
DATASET_SOURCES: tuple[str, ...] = get_args(DatasetSource)


class SpecError(ValueError):
    """A job spec (or event) that does not match the contract; the message says where and why."""


@dataclass(frozen=True)
class ModelRef:
    """Which base model to use, resolved from a preset: where to get it and how ms-swift must treat it."""

    name: str
    source: ModelSource
    id: str
    model_type: str
    template: str
    revision: str | None = None
    hf_id: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class HyperParams:
    """Typed training hyper-parameters; only these ever reach `swift sft`."""

    lora_rank: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    learning_rate: float = 1e-4
    num_train_epochs: float = 1.0
    max_steps: int | None = None
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.0
    logging_steps: int = 5
    save_steps: int = 500
    seed: int = 42
    torch_dtype: str = "bfloat16"
    quant_bits: int = 4


@dataclass(frozen=True)
class DatasetRef:
    """A training dataset: a repo-local file (path relative to the checkout), a hub id, or a built-in set."""

    name: str
    source: DatasetSource
    id: str
    max_samples: int | None = None
    # What the recipe was keyed on, for the runner to check (written only when set): a repo-local file's git blob
    # SHA at the job's commit; a hub dataset's requested revision.
    blob: str | None = field(default=None, metadata={"omit_if_none": True})
    revision: str | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark to evaluate: which pack, which subsets, how many questions, how many shots.

    `data_dir` is set for packs whose questions come from the repository (general_mcq): the folder of the checkout,
    at `sha`, that holds them. `subsets` `("all",)` then means every question file found there.
    """

    name: str
    subsets: tuple[str, ...] = ()
    limit: int | None = None
    few_shot: int = 0
    max_tokens: int = 16
    # Written only when set: every other job stays byte-identical to what runners older than this field accept.
    data_dir: str | None = field(default=None, metadata={"omit_if_none": True})
    # The content hash of the question files the result key was computed with; the runner refuses other files.
    content_hash: str | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True)
class AdapterRef:
    """An adapter produced by an earlier run, to evaluate on top of the base model."""

    run_id: str
    path: str | None = None
    sha256: str | None = None
    # The GitHub Actions run that trained it: its output (with `adapter/`) is that run's `tunebot-<run_id>`
    # artifact, which the dispatched workflow downloads. None in local mode, where `path` is filled instead.
    workflow_run_id: int | None = None


@dataclass(frozen=True)
class ResumeRef:
    """Continue training from a checkpoint an earlier run of the same recipe uploaded (ms-swift
    `--resume_from_checkpoint`: weights, optimizer, scheduler, RNG and the step count). `sha256` is the archive's,
    as that run's signed `artifact` event reported it; the runner refuses an archive that hashes otherwise. `auto`:
    started by the bot after the runner died (it does that once per run, never for an automatic resume)."""

    run_id: str
    step: int
    sha256: str
    auto: bool = False


@dataclass(frozen=True)
class Limits:
    wall_clock_s: int = 6 * 3600


SHARDINGS: tuple[str, ...] = ("zero2", "zero3", "zero2_offload", "zero3_offload", "fsdp2")
MAX_GPUS_PER_NODE = 16
MAX_NODES = 16


@dataclass(frozen=True)
class Resources:
    """What a training job runs on: GPUs per node, nodes, and how the model is sharded across them (ms-swift's
    `--deepspeed zero2|zero3[_offload]` or `--fsdp fsdp2`; None: plain data parallel)."""

    gpus: int = 1
    nodes: int = 1
    sharding: str | None = field(default=None, metadata={"omit_if_none": True})

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes


EVAL_BACKENDS: tuple[str, ...] = ("native", "served")


@dataclass(frozen=True)
class Callback:
    """Where the agent reports events; `token` is the per-run HMAC key (never logged)."""

    url: str
    token: str


@dataclass(frozen=True)
class Toolchain:
    """The versions a result key assumes; a runner with other versions refuses the job rather than mislabel it."""

    ms_swift: str
    evalscope: str


TRACKERS = ("tensorboard", "swanlab", "wandb", "mlflow")
TRACKER_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Tracking:
    """Where training curves go: ms-swift's `--report_to` (TensorBoard files in the run's artifact by default).
    Credentials never travel in the job: the runner's workflow passes them to the agent through `env:`."""

    tool: str = "tensorboard"
    project: str | None = None  # the tracker's project / experiment name (wandb, SwanLab, MLflow)


@dataclass(frozen=True)
class JobSpec:
    run_id: str
    repo: str
    sha: str
    kind: JobKind
    model: ModelRef
    tuner: Tuner | None = None
    hyper: HyperParams = field(default_factory=HyperParams)
    datasets: tuple[DatasetRef, ...] = ()
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    adapter: AdapterRef | None = None
    limits: Limits = field(default_factory=Limits)
    callback: Callback | None = None
    version: int = JOB_SPEC_VERSION
    toolchain: Toolchain | None = field(default=None, metadata={"omit_if_none": True})
    # Seconds since the epoch after which a runner must not start this job (a signed job is not valid forever).
    not_after: float | None = field(default=None, metadata={"omit_if_none": True})
    resume: ResumeRef | None = field(default=None, metadata={"omit_if_none": True})
    # The repository's `tracking:` choice; None: TensorBoard into the artifact. Not part of any result key.
    tracking: Tracking | None = field(default=None, metadata={"omit_if_none": True})
    # Written only when set (older runners refuse unknown fields): GPUs and nodes of a distributed training job.
    resources: Resources | None = field(default=None, metadata={"omit_if_none": True})
    # How scores are produced: "native" (EvalScope loads the model; the default) or "served" (one `swift deploy` per
    # job, EvalScope over its API). Part of every score's identity.
    eval_backend: str | None = field(default=None, metadata={"omit_if_none": True})
    # An adapter eval that also scores the untuned base model in the same server start (a /compare base-model).
    eval_base: bool | None = field(default=None, metadata={"omit_if_none": True})

    @property
    def trains(self) -> bool:
        return self.kind in ("train", "train+eval")

    @property
    def evaluates(self) -> bool:
        return self.kind in ("eval", "train+eval")


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready data for any spec dataclass (tuples become lists)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)
                if not (f.metadata.get("omit_if_none") and getattr(obj, f.name) is None)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def job_to_json(job: JobSpec) -> str:
    return json.dumps(to_dict(job), sort_keys=True, ensure_ascii=False)


# --- strict parsing -------------------------------------------------------------------------------------------------

_NESTED: dict[str, type] = {
    "model": ModelRef,
    "hyper": HyperParams,
    "adapter": AdapterRef,
    "limits": Limits,
    "callback": Callback,
    "toolchain": Toolchain,
    "resume": ResumeRef,
    "tracking": Tracking,
    "resources": Resources,
}
_NESTED_LISTS: dict[str, type] = {"datasets": DatasetRef, "benchmarks": BenchmarkSpec}
_LITERALS: dict[tuple[type, str], tuple[str, ...]] = {
    (JobSpec, "kind"): JOB_KINDS,
    (JobSpec, "tuner"): TUNERS,
    (ModelRef, "source"): MODEL_SOURCES,
    (DatasetRef, "source"): DATASET_SOURCES,
    (Tracking, "tool"): TRACKERS,
    (Resources, "sharding"): SHARDINGS,
    (JobSpec, "eval_backend"): EVAL_BACKENDS,
}
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def _check_scalar(where: str, value: Any, annotation: str) -> Any:
    optional = annotation.endswith("| None")
    base = annotation.replace("| None", "").strip()
    if value is None:
        if optional:
            return None
        raise SpecError(f"{where}: must not be null")
    if base.startswith("tuple[str"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(f"{where}: expected a list of strings")
        return tuple(value)
    if base.startswith(("Literal", "JobKind", "Tuner", "ModelSource", "DatasetSource")):
        base = "str"
    expected = _TYPES.get(base)
    if expected is None:
        return value
    # bool is an int in Python; a spec that says 1 for a flag, or true for a count, is a mistake.
    if isinstance(value, bool) and base != "bool":
        raise SpecError(f"{where}: expected {base}, got a boolean")
    if not isinstance(value, expected):
        raise SpecError(f"{where}: expected {base}, got {type(value).__name__}")
    return float(cast(float, value)) if base == "float" else value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected an object")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        path = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise SpecError(f"{path}: required field is missing")
            continue
        value = data[name]
        if name in _NESTED and cls is not BenchmarkSpec:
            kwargs[name] = None if value is None and "None" in str(f.type) else _build(_NESTED[name], value, path)
        elif name in _NESTED_LISTS and cls is JobSpec:
            if not isinstance(value, list):
                raise SpecError(f"{path}: expected a list")
            kwargs[name] = tuple(_build(_NESTED_LISTS[name], v, f"{path}[{i}]") for i, v in enumerate(value))
        else:
            checked = _check_scalar(path, value, str(f.type))
            allowed = _LITERALS.get((cls, name))
            if allowed is not None and checked is not None and checked not in allowed:
                raise SpecError(f"{path}: {checked!r} is not one of {', '.join(allowed)}")
            kwargs[name] = checked
    return cls(**kwargs)


def job_from_dict(data: Any) -> JobSpec:
    """Parse a job spec strictly: unknown fields, wrong types or another version are errors, never guesses."""
    if not isinstance(data, Mapping):
        raise SpecError("job spec: expected a JSON object")
    version = data.get("version", None)
    if version != JOB_SPEC_VERSION:
        raise SpecError(f"job spec: unsupported version {version!r}; this tunebot speaks version {JOB_SPEC_VERSION}")
    job = cast(JobSpec, _build(JobSpec, data, ""))
    validate_job(job)
    return job


def job_from_json(text: str) -> JobSpec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"job spec: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return job_from_dict(data)


def validate_job(job: JobSpec) -> None:
    """Cross-field rules that types alone cannot say."""
    if not job.run_id or not all(c.isalnum() or c in "-_." for c in job.run_id):
        raise SpecError("run_id: must be non-empty and use only letters, digits, '-', '_' and '.'")
    if job.trains:
        if job.tuner is None:
            raise SpecError(f"tuner: required for kind {job.kind!r}")
        if not job.datasets:
            raise SpecError(f"datasets: kind {job.kind!r} needs at least one training dataset")
    if job.model.revision is not None:
        problem = revision_problem(job.model.revision)
        if problem is not None:
            raise SpecError(f"model.revision: {problem}")
    if job.evaluates and not job.benchmarks:
        raise SpecError(f"benchmarks: kind {job.kind!r} needs at least one benchmark")
    if job.adapter is not None and job.trains:
        raise SpecError("adapter: only an eval job evaluates an existing adapter")
    for ds in job.datasets:
        if ds.source == "local" and not _inside_repo(ds.id):
            raise SpecError(f"datasets: {ds.name!r} must be a path inside the repository, got {ds.id!r}")
    for bench in job.benchmarks:
        if bench.data_dir is not None and not _inside_repo(bench.data_dir):
            raise SpecError(f"benchmarks: {bench.name!r} data_dir must be a folder inside the repository, "
                            f"got {bench.data_dir!r}")
    for ds in job.datasets:
        if ds.blob is not None and not _GIT_OBJECT.fullmatch(ds.blob):
            raise SpecError(f"datasets: {ds.name!r} blob must be a git object id (40 or 64 hex digits)")
    for bench in job.benchmarks:
        if bench.content_hash is not None and not _SHA256.fullmatch(bench.content_hash):
            raise SpecError(f"benchmarks: {bench.name!r} content_hash must be 64 hex digits")
    if job.adapter is not None and job.adapter.sha256 is not None and not _SHA256.fullmatch(job.adapter.sha256):
        raise SpecError("adapter.sha256: must be 64 hex digits")
    if job.resume is not None:
        if not job.trains:
            raise SpecError("resume: only a training job resumes from a checkpoint")
        if job.resume.step < 1 or not _SHA256.fullmatch(job.resume.sha256) or not job.resume.run_id:
            raise SpecError("resume: needs the run id, a step >= 1 and the archive's sha256 (64 hex digits)")
    h = job.hyper
    if h.max_steps is not None and h.max_steps <= 0:
        raise SpecError("hyper.max_steps: must be positive")
    if job.tracking is not None and job.tracking.project is not None \
            and not TRACKER_PROJECT.fullmatch(job.tracking.project):
        raise SpecError("tracking.project: letters, digits, '-', '_' and '.' (at most 100)")
    if job.limits.wall_clock_s <= 0:
        raise SpecError("limits.wall_clock_s: must be positive")
    if job.resources is not None:
        problem = resources_problem(job.resources.gpus, job.resources.nodes, MAX_GPUS_PER_NODE, MAX_NODES)
        if problem is not None:
            raise SpecError(f"resources: {problem}")
        if job.resources.world_size > 1 and not job.trains:
            raise SpecError("resources: only a training job runs on several GPUs or nodes")
    if job.eval_base:
        with_adapter = job.adapter is not None or (job.trains and job.tuner in ("lora", "qlora"))
        if not job.evaluates or not with_adapter:
            raise SpecError("eval_base: only a job that evaluates an adapter can also score the base model")


def resources_problem(gpus: int, nodes: int, max_gpus: int, max_nodes: int) -> str | None:
    """Why a GPU/node count is refused: GPUs per node a power of two up to `max_gpus`, nodes 1..`max_nodes`."""
    if gpus < 1 or gpus > max_gpus or gpus & (gpus - 1):
        allowed = ", ".join(str(1 << i) for i in range(max_gpus.bit_length()) if 1 << i <= max_gpus)
        return f"gpus must be a power of two up to {max_gpus} ({allowed}), got {gpus}"
    if nodes < 1 or nodes > max_nodes:
        return f"nodes must be between 1 and {max_nodes}, got {nodes}"
    return None


_GIT_OBJECT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _inside_repo(path: str) -> bool:
    return bool(path) and not path.startswith("/") and ".." not in path.split("/") and "\\" not in path


def content_hash(data: Any) -> str:
    """A stable sha256 of JSON-able data, used to recognise identical work."""
    blob = json.dumps(to_dict(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
