"""What a trained adapter and a score *are*: the recipe identity (everything that decides the trained weights) and the
evaluation identity (everything that decides a score), as pure values whose hashes are the store's result keys.

A recipe is the model (preset ids and the requested revision), the tuner, every hyper-parameter that changes the
weights (the seed included), each dataset's identity (a repository file by its git blob SHA at the trained commit, a
hub dataset by id and revision) and the ms-swift version when the job pins one. Two jobs with equal recipes train the
same adapter, whichever commit or PR they came from: that is what lets `/compare main` reuse main's baseline for every
PR against the same main commit, and say "same recipe" when a PR changed nothing that matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import ModelPreset
from .jobspec import BenchmarkSpec, DatasetRef, JobSpec, content_hash

# Bumped when what goes into a key changes: results stored under older keys are then simply not found (re-run).
# v2: datasets are identified by their content (git blob), not by the commit they were read at.
RESULT_KEY_VERSION = 2

# Settings that change what a run reports, not what it learns: left out of the recipe.
NOT_IN_RECIPE = ("logging_steps", "save_steps")
LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_dropout", "target_modules")


@dataclass(frozen=True)
class DataIdentity:
    """One training dataset as the recipe knows it. `blob` is a repository file's git blob SHA at the trained commit;
    without it (unknown to the planner) `at` names the commit, which is coarser but still correct."""

    name: str
    source: str
    id: str
    max_samples: int | None = None
    blob: str | None = None
    revision: str | None = None
    at: str | None = None

    def label(self) -> str:
        if self.blob:
            return f"blob {self.blob[:7]}"
        if self.revision:
            return f"revision {self.revision}"
        if self.at:
            return f"at {self.at[:7]}"
        return self.source


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights."""

    model: Mapping[str, Any]
    tuner: str
    hyper: Mapping[str, Any]
    datasets: tuple[DataIdentity, ...]
    ms_swift: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": dict(self.model), "tuner": self.tuner, "hyper": dict(sorted(self.hyper.items())),
                "datasets": [{k: v for k, v in vars(d).items() if v is not None} for d in self.datasets],
                "ms_swift": self.ms_swift}

    def key(self) -> str:
        """The training result key: equal recipes, equal keys."""
        return content_hash({"v": RESULT_KEY_VERSION, "what": "train", **self.to_dict()})


@dataclass(frozen=True)
class EvalIdentity:
    """Everything that decides one benchmark's score, besides the model being scored."""

    benchmark: str
    subsets: tuple[str, ...]
    limit: int | None
    few_shot: int
    max_tokens: int  # with the pack's prompt template (fixed per pack and EvalScope version), the prompt format
    content_hash: str | None = None  # the questions' files (file packs); None when the runner resolves them
    data_at: str | None = None  # the commit of a repository's own questions (general_mcq)
    data_dir: str | None = None
    evalscope: str | None = None
    # How the model is run for the score: "transformers" is the native path (EvalScope loads it; omitted from the key
    # so older keys stay valid), "served" one `swift deploy` per job (jobspec.eval_backend). Scores of different
    # backends never share a key; the engine that answered (served-transformers / served-vllm) is in the runner's
    # config hash as well.
    backend: str = "transformers"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"benchmark": self.benchmark, "subsets": list(self.subsets), "limit": self.limit,
                               "few_shot": self.few_shot, "max_tokens": self.max_tokens, "at": self.data_at}
        # Written only when set, so that identities without them keep their shape.
        for name in ("content_hash", "data_dir", "evalscope"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.backend != "transformers":
            out["backend"] = self.backend
        return out


def model_identity(model_revision: str | None, preset: ModelPreset, model_type: str, template: str) \
        -> dict[str, Any]:
    """The same weights on either hub give the same result: the preset's ids, not the hub used."""
    return {"ms": preset.modelscope_id, "hf": preset.hf_id, "revision": model_revision, "model_type": model_type,
            "template": template}


def data_identity(d: DatasetRef, sha: str) -> DataIdentity:
    at = sha.lower() if d.source == "local" and not d.blob else None
    return DataIdentity(name=d.name, source=d.source, id=d.id, max_samples=d.max_samples, blob=d.blob,
                        revision=d.revision, at=at)


def recipe_of(job: JobSpec, preset: ModelPreset) -> Recipe:
    """The recipe of a training job (its datasets' `blob`s filled in by the planner when it knows them)."""
    hyper = {k: v for k, v in vars(job.hyper).items() if k not in NOT_IN_RECIPE}
    if job.tuner == "full":
        hyper = {k: v for k, v in hyper.items() if k not in LORA_FIELDS}
    if job.tuner != "qlora":
        hyper.pop("quant_bits", None)
    if job.resources is not None and job.resources.world_size > 1:
        # Data-parallel processes multiply the batch each step sees: other weights (written only when > 1, so every
        # single-GPU key stays as it was). Sharding (ZeRO, FSDP) changes where the weights live, not the maths.
        hyper["world_size"] = job.resources.world_size
    return Recipe(model=model_identity(job.model.revision, preset, job.model.model_type, job.model.template),
                  tuner=str(job.tuner), hyper=hyper, datasets=tuple(data_identity(d, job.sha) for d in job.datasets),
                  ms_swift=job.toolchain.ms_swift if job.toolchain is not None else None)


def eval_identity(bench: BenchmarkSpec, data_at: str | None, evalscope: str | None = None,
                  backend: str | None = None) -> EvalIdentity:
    return EvalIdentity(benchmark=bench.name, subsets=tuple(bench.subsets), limit=bench.limit,
                        few_shot=bench.few_shot, max_tokens=bench.max_tokens, content_hash=bench.content_hash,
                        data_at=data_at, data_dir=bench.data_dir, evalscope=evalscope,
                        backend=eval_backend_identity(backend))


def eval_backend_identity(eval_backend: str | None) -> str:
    """The identity's backend for a job's `eval_backend` (None and "native": the native transformers path)."""
    return "served" if eval_backend == "served" else "transformers"


def eval_key(model: Mapping[str, Any], adapter: Mapping[str, Any] | None, ident: EvalIdentity) -> str:
    """One benchmark score's result key: the model (and adapter: a training key or a run) plus the evaluation."""
    return content_hash({"v": RESULT_KEY_VERSION, "what": "eval", "model": dict(model),
                         "adapter": dict(adapter) if adapter is not None else None, **ident.to_dict()})


# --- what differs ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between two recipes, for people: `what` changed from `old` to `new` ("—" for absent)."""

    what: str
    old: str
    new: str

    def text(self) -> str:
        return f"{self.what}: {self.old} → {self.new}"


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def recipe_diff(old: Recipe, new: Recipe) -> tuple[Change, ...]:
    """What differs between two recipes, model first, then tuner, hyper-parameters and datasets (by name)."""
    out: list[Change] = []
    for k in sorted(set(old.model) | set(new.model)):
        if old.model.get(k) != new.model.get(k):
            out.append(Change(f"model.{k}", _show(old.model.get(k)), _show(new.model.get(k))))
    if old.tuner != new.tuner:
        out.append(Change("tuner", old.tuner, new.tuner))
    for k in sorted(set(old.hyper) | set(new.hyper)):
        if old.hyper.get(k) != new.hyper.get(k):
            out.append(Change(k, _show(old.hyper.get(k)), _show(new.hyper.get(k))))
    olds = {d.name: d for d in old.datasets}
    news = {d.name: d for d in new.datasets}
    for name in sorted(set(olds) | set(news)):
        a, b = olds.get(name), news.get(name)
        if a == b:
            continue
        if a is None or b is None:
            out.append(Change(f"dataset {name}", "—" if a is None else a.label(), "—" if b is None else b.label()))
            continue
        if (a.blob, a.revision, a.at, a.id, a.source) != (b.blob, b.revision, b.at, b.id, b.source):
            out.append(Change(name, a.label(), b.label()))
        if a.max_samples != b.max_samples:
            out.append(Change(f"{name} max_samples", _show(a.max_samples), _show(b.max_samples)))
    if old.ms_swift != new.ms_swift:
        out.append(Change("ms-swift", _show(old.ms_swift), _show(new.ms_swift)))
    return tuple(out)
