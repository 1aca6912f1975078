"""The catalog: typed model presets, training presets, benchmark packs and the dataset registry, from plain data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .jobspec import DATASET_SOURCES, MODEL_SOURCES, SpecError, Toolchain

_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    source: str  # "modelscope" (default), "huggingface" or "builtin"; the hub is chosen per run for hub models
    modelscope_id: str
    hf_id: str | None
    model_type: str
    template: str
    size_b: float
    trust_remote_code: bool = False
    torch_dtype: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # The transformer's shape (hidden, layers, intermediate, vocab, heads, kv_heads, tied) for the cost estimate
    # (commands/estimate.py); empty: estimated from size_b.
    arch: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SizeDefaults:
    max_size_b: float
    values: Mapping[str, Any]
    recommended_tuner: str


@dataclass(frozen=True)
class TrainingPreset:
    name: str
    description: str
    tuner: str | None
    hyper: Mapping[str, Any]


@dataclass(frozen=True)
class BenchmarkPack:
    name: str
    description: str
    evalscope_name: str
    subjects: tuple[str, ...]
    default_subsets: tuple[str, ...]
    few_shot: int = 0
    limit: int | None = None
    max_tokens: int = 16
    # Packs whose questions come from the repository (general_mcq): the folder under the policy's `datasets.dir`
    # that holds them; None for packs whose questions the runner has (CMMLU, C-Eval).
    repo_folder: str | None = None

    @property
    def from_repository(self) -> bool:
        return self.repo_folder is not None


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    source: str
    id: str


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, ModelPreset]
    size_defaults: tuple[SizeDefaults, ...]
    training: Mapping[str, TrainingPreset]
    benchmarks: Mapping[str, BenchmarkPack]
    datasets: Mapping[str, DatasetEntry]
    # The ms-swift and EvalScope versions every job names (configs/toolchain.yaml); None: jobs name none.
    toolchain: Toolchain | None = None
    # sha256 of the file packs' question files as the bot has them (path under the pack root -> digest), from
    # configs.with_pack_digests; empty: jobs carry no pack content hash.
    pack_digests: Mapping[str, str] = field(default_factory=dict)

    def model_defaults(self, preset: ModelPreset) -> dict[str, Any]:
        """Hyper-parameter defaults for a model: its size bracket, then the preset's own overrides."""
        values: dict[str, Any] = {}
        for bracket in self.size_defaults:
            if preset.size_b <= bracket.max_size_b:
                values.update(bracket.values)
                break
        values.update(preset.defaults)
        if preset.torch_dtype:
            values["torch_dtype"] = preset.torch_dtype
        return values

    def recommended_tuner(self, preset: ModelPreset) -> str:
        for bracket in self.size_defaults:
            if preset.size_b <= bracket.max_size_b:
                return bracket.recommended_tuner
        return "lora"


def _req(raw: Mapping[str, Any], key: str, where: str, typ: type | tuple[type, ...] = str) -> Any:
    if key not in raw:
        raise SpecError(f"{where}: missing {key!r}")
    value = raw[key]
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        raise SpecError(f"{where}.{key}: wrong type {type(value).__name__}")
    return value


def _section(raw: Any, key: str, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping")
    value = raw.get(key)
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: missing mapping {key!r}")
    return value


_ARCH_KEYS = ("hidden", "layers", "intermediate", "vocab", "heads", "kv_heads")


def _arch(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}.arch: expected a mapping of {', '.join(_ARCH_KEYS)}, tied")
    unknown = sorted(set(raw) - {*_ARCH_KEYS, "tied"})
    missing = [k for k in _ARCH_KEYS if k not in raw]
    if unknown or missing:
        raise SpecError(f"{where}.arch: needs {', '.join(_ARCH_KEYS)} (and optional tied)"
                        + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    for key in _ARCH_KEYS:
        if not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] <= 0:
            raise SpecError(f"{where}.arch.{key}: must be a positive whole number")
    return {**{k: raw[k] for k in _ARCH_KEYS}, "tied": bool(raw.get("tied", False))}


def build_catalog(models: Any, training: Any, benchmarks: Any, datasets: Any, toolchain: Any = None) -> Catalog:
    """Validate the config documents (already parsed from YAML) and build the catalog."""
    model_map: dict[str, ModelPreset] = {}
    for name, raw in _section(models, "presets", "models.yaml").items():
        where = f"models.yaml: {name}"
        if not isinstance(raw, Mapping):
            raise SpecError(f"{where}: expected a mapping")
        source = str(raw.get("source", "modelscope"))
        if source not in MODEL_SOURCES:
            raise SpecError(f"{where}.source: {source!r} is not one of {', '.join(MODEL_SOURCES)}")
        model_map[str(name)] = ModelPreset(
            name=str(name),
            description=str(raw.get("description", "")),
            source=source,
            modelscope_id=_req(raw, "modelscope_id", where),
            hf_id=raw.get("hf_id"),
            model_type=_req(raw, "model_type", where),
            template=_req(raw, "template", where),
            size_b=float(_req(raw, "size_b", where, (int, float))),
            trust_remote_code=bool(raw.get("trust_remote_code", False)),
            torch_dtype=raw.get("torch_dtype"),
            defaults=dict(raw.get("defaults", {})),
            arch=_arch(raw.get("arch"), where),
        )
    sizes = []
    for raw in models.get("size_defaults", []):
        vals = {k: v for k, v in raw.items() if k not in ("max_size_b", "recommended_tuner")}
        sizes.append(SizeDefaults(float(raw["max_size_b"]), vals, str(raw.get("recommended_tuner", "lora"))))
    train_map = {
        str(name): TrainingPreset(
            str(name), str(raw.get("description", "")), raw.get("tuner"), dict(raw.get("hyper", {}))
        )
        for name, raw in _section(training, "presets", "training.yaml").items()
    }
    bench_map: dict[str, BenchmarkPack] = {}
    for name, raw in _section(benchmarks, "packs", "benchmarks.yaml").items():
        where = f"benchmarks.yaml: {name}"
        subjects = tuple(str(s) for s in raw.get("subjects", []))
        default = tuple(str(s) for s in raw.get("default_subsets", []))
        missing = [s for s in default if subjects and s not in subjects]
        if missing:
            raise SpecError(f"{where}: default_subsets not among subjects: {', '.join(missing)}")
        repo_folder = raw.get("repo_folder")
        if repo_folder is not None:
            if not isinstance(repo_folder, str) or not _FOLDER.match(repo_folder):
                raise SpecError(f"{where}.repo_folder: must be one folder name, got {repo_folder!r}")
            if subjects:
                raise SpecError(f"{where}: a pack whose questions come from the repository lists no subjects")
        bench_map[str(name)] = BenchmarkPack(
            name=str(name),
            description=str(raw.get("description", "")),
            evalscope_name=str(raw.get("evalscope_name", name)),
            subjects=subjects,
            default_subsets=default,
            few_shot=int(raw.get("few_shot", 0)),
            limit=raw.get("limit"),
            max_tokens=int(raw.get("max_tokens", 16)),
            repo_folder=repo_folder,
        )
    ds_map: dict[str, DatasetEntry] = {}
    for name, raw in _section(datasets, "datasets", "datasets.yaml").items():
        where = f"datasets.yaml: {name}"
        source = _req(raw, "source", where)
        if source not in DATASET_SOURCES:
            raise SpecError(f"{where}.source: {source!r} is not one of {', '.join(DATASET_SOURCES)}")
        ds_map[str(name)] = DatasetEntry(str(name), str(raw.get("description", "")), source, _req(raw, "id", where))
    return Catalog(model_map, tuple(sorted(sizes, key=lambda s: s.max_size_b)), train_map, bench_map, ds_map,
                   _toolchain(toolchain))


def _toolchain(raw: Any) -> Toolchain | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("toolchain.yaml: expected a mapping")
    versions = {k: raw.get(k) for k in ("ms_swift", "evalscope")}
    bad = [k for k, v in versions.items() if not isinstance(v, str) or not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", v)]
    if bad:
        raise SpecError(f"toolchain.yaml: {', '.join(bad)} must be a version string such as \"4.6.0\"")
    return Toolchain(ms_swift=str(versions["ms_swift"]), evalscope=str(versions["evalscope"]))
