"""A repository's `.tunebot.yml`: who may do what, which models and data, quotas, notifications, thresholds.

`parse_policy` is pure: text in, a Policy (sane defaults for anything absent) or a PolicyError that points at the
line and says what is wrong and what is allowed. The file is read with `commands.safeyaml` (size, alias and depth
limits), because it comes from the repository being served, not from the operator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .args import did_you_mean
from .catalog import Catalog, DatasetEntry, ModelPreset
from .compare import RegressionRule
from .estimate import GPUS
from .jobspec import TRACKER_PROJECT, TRACKERS, Tracking
from .safeyaml import Document, Path, YamlError, load

Permission = Literal["none", "read", "triage", "write", "maintain", "admin"]
PERMISSIONS: tuple[str, ...] = get_args(Permission)  # ascending
ForkPolicy = Literal["deny", "approval", "allow"]
FORK_POLICIES: tuple[str, ...] = get_args(ForkPolicy)
Hub = Literal["modelscope", "huggingface"]
HUBS: tuple[str, ...] = get_args(Hub)
Language = Literal["en", "zh"]
LANGUAGES: tuple[str, ...] = get_args(Language)

POLICY_FILE = ".tunebot.yml"
DEFAULT_AUTO_TRAIN_PATHS = ("configs/**.yaml", "configs/**.yml")

_SLACK = re.compile(r"^#?[A-Za-z0-9._-]{1,80}$")
_ROBOT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_DIR = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")
_GLOB = re.compile(r"^[A-Za-z0-9_.*/{},\[\]!?-]{1,200}$")


def permission_rank(level: str) -> int:
    """none=0 … admin=5; unknown levels rank as none (least privilege)."""
    return PERMISSIONS.index(level) if level in PERMISSIONS else 0


@dataclass(frozen=True)
class Quotas:
    """GPU time is money: per-user and per-repository limits (None: unlimited)."""

    runs_per_user_per_day: int | None = 10
    gpu_hours_per_day: float | None = 24.0
    max_dispatches_per_comment: int = 3
    max_run_hours: float = 6.0


@dataclass(frozen=True)
class Notify:
    """Where run updates go besides the PR: a Slack channel and a DingTalk robot (its name in the bot's config)."""

    slack_channel: str | None = None
    dingtalk_robot: str | None = None


@dataclass(frozen=True)
class Runners:
    """How big a training job may be here, and which runners (`runs-on` labels) each GPU count goes to."""

    max_gpus: int = 1  # GPUs per node; a power of two
    max_nodes: int = 1
    # GPU count -> runner labels. A job goes to the smallest entry with at least its GPU count; none: the workflow's
    # default labels (the repository variable TUNEBOT_RUNS_ON).
    labels: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    def runs_on(self, gpus: int) -> tuple[str, ...] | None:
        fits = sorted(n for n in self.labels if n >= gpus)
        return self.labels[fits[0]] if fits else None


@dataclass(frozen=True)
class Policy:
    language: Language = "en"
    allowed_models: tuple[str, ...] = ()  # empty: every preset in the catalog
    # Presets whose hub code (`trust_remote_code`) this repository agrees to run; empty by default: such a preset
    # executes Python files from its hub repository on the GPU runner when it is loaded.
    trust_remote_code: tuple[str, ...] = ()
    default_model: str | None = None
    hub: Hub = "modelscope"
    default_benchmarks: tuple[str, ...] = ()
    default_datasets: tuple[str, ...] = ()
    dataset_dir: str = "data"
    hub_datasets: Mapping[str, DatasetEntry] = field(default_factory=dict)  # extra allowlisted hub datasets
    min_permission_train: Permission = "write"
    min_permission_eval: Permission = "write"
    min_permission_approve: Permission = "maintain"
    approval_ttl_hours: float = 72.0
    fork_policy: ForkPolicy = "approval"
    quotas: Quotas = field(default_factory=Quotas)
    auto_train: bool = False
    auto_train_paths: tuple[str, ...] = DEFAULT_AUTO_TRAIN_PATHS
    notify: Notify = field(default_factory=Notify)
    regression: tuple[RegressionRule, ...] = ()
    # What the runners have, for `/plan`'s estimate (commands/estimate.py): the GPU type and how many per job.
    gpu_type: str | None = None
    gpu_count: int = 1
    # A training job estimated above this many GPU-hours (or whose cost cannot be estimated) waits for `/approve`.
    approval_above_gpu_hours: float | None = None
    # Seeds per side for `/train … seeds=N` and `/compare … seeds=N`: N trainings (each a run) per side, so the verdict
    # can measure training noise. `seeds.default` applies when none is asked for; `seeds.max` caps the GPU cost.
    seeds_default: int = 1
    seeds_max: int = 4
    tracking: Tracking | None = None  # None: TensorBoard event files in the run's artifact
    runners: Runners = field(default_factory=Runners)

    def model_allowed(self, name: str) -> bool:
        return not self.allowed_models or name in self.allowed_models

    def remote_code_problem(self, preset: ModelPreset) -> str | None:
        """Why `preset` may not be loaded here (None when it needs no hub code, or the policy opted in to it)."""
        if not preset.trust_remote_code or preset.name in self.trust_remote_code:
            return None
        return (f"model `{preset.name}` runs Python code from its hub repository when it is loaded "
                f"(`trust_remote_code`), and this repository's policy does not allow that; if you trust that code, "
                f"add `{preset.name}` to `models.trust_remote_code` in .tunebot.yml")

    def datasets(self, catalog: Catalog) -> dict[str, DatasetEntry]:
        """The registry this repository may train on: the catalog's plus the policy's own hub datasets."""
        return {**dict(catalog.datasets), **dict(self.hub_datasets)}


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class PolicyError:
    """Why a `.tunebot.yml` was refused; `line` is 1-based, or None for the file as a whole."""

    line: int | None
    message: str

    def render(self, filename: str = POLICY_FILE) -> str:
        where = f"`{filename}` line {self.line}" if self.line else f"`{filename}`"
        return f"{where}: {self.message}"


class _Invalid(Exception):
    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# The file's layout: section -> allowed keys (None: a scalar/list at top level).
_LAYOUT: dict[str, tuple[str, ...] | None] = {
    "version": None,
    "language": None,
    "hub": None,
    "models": ("allowed", "default", "trust_remote_code"),
    "benchmarks": ("default",),
    "datasets": ("dir", "default", "hub"),
    "permissions": ("train", "eval", "approve", "approval_ttl_hours"),
    "forks": None,
    "quotas": ("runs_per_user_per_day", "gpu_hours_per_day", "commands_per_comment", "max_run_hours"),
    "auto_train": ("enabled", "paths"),
    "notify": ("slack", "dingtalk"),
    "regression": None,
    "gpu": ("type", "count"),
    "approval": ("above_gpu_hours",),
    "seeds": ("default", "max"),
    "tracking": ("tool", "project"),
    "runners": ("max_gpus", "max_nodes", "labels"),
}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def parse_policy(text: str | None, *, catalog: Catalog | None = None) -> Policy | PolicyError:
    """A repository policy from the text of `.tunebot.yml` (None or blank: the defaults). Never raises.

    With a catalog, model, benchmark and dataset names are checked against it too.
    """
    if text is None or not text.strip():
        return DEFAULT_POLICY
    try:
        doc = load(text)
    except YamlError as exc:
        return PolicyError(exc.line, exc.message)
    try:
        return _build(doc, catalog)
    except _Invalid as exc:
        return PolicyError(doc.line(exc.path), exc.message)


def _build(doc: Document, catalog: Catalog | None) -> Policy:
    raw = doc.data
    if raw is None:
        return DEFAULT_POLICY
    if not isinstance(raw, dict):
        raise _Invalid((), "the file must be a mapping of settings (`key: value`), see docs/tunebot-yml.md")
    for key, value in raw.items():
        if key not in _LAYOUT:
            raise _Invalid((key,), f"unknown setting `{key}`{did_you_mean(key, list(_LAYOUT))}; "
                                   f"allowed: {', '.join(_LAYOUT)}")
        sub = _LAYOUT[key]
        if sub is not None and isinstance(value, dict):
            for k in value:
                if k not in sub:
                    raise _Invalid((key, k), f"unknown setting `{key}.{k}`{did_you_mean(k, sub)}; "
                                             f"allowed: {', '.join(sub)}")
    version = raw.get("version", 1)
    if version != 1:
        raise _Invalid(("version",), f"unsupported version {version!r}; this tunebot reads version 1")
    kw: dict[str, Any] = {}
    if "language" in raw:
        kw["language"] = _choice(raw["language"], ("language",), LANGUAGES)
    if "hub" in raw:
        kw["hub"] = _choice(raw["hub"], ("hub",), HUBS)
    if "forks" in raw:
        kw["fork_policy"] = _choice(raw["forks"], ("forks",), FORK_POLICIES)
    models = _section(raw, "models")
    if "allowed" in models:
        kw["allowed_models"] = _names(models["allowed"], ("models", "allowed"))
        if catalog is not None:
            for i, name in enumerate(kw["allowed_models"]):
                _known(name, catalog.models, ("models", "allowed", i), "model preset")
    if models.get("default") is not None:
        default = _name(models["default"], ("models", "default"))
        if catalog is not None:
            _known(default, catalog.models, ("models", "default"), "model preset")
        if kw.get("allowed_models") and default not in kw["allowed_models"]:
            raise _Invalid(("models", "default"), f"default model `{default}` is not in `models.allowed`")
        kw["default_model"] = default
    if "trust_remote_code" in models:
        kw["trust_remote_code"] = _names(models["trust_remote_code"], ("models", "trust_remote_code"))
        if catalog is not None:
            for i, name in enumerate(kw["trust_remote_code"]):
                _known(name, catalog.models, ("models", "trust_remote_code", i), "model preset")
    benchmarks = _section(raw, "benchmarks")
    if "default" in benchmarks:
        kw["default_benchmarks"] = _names(benchmarks["default"], ("benchmarks", "default"))
        if catalog is not None:
            for i, name in enumerate(kw["default_benchmarks"]):
                _known(name, catalog.benchmarks, ("benchmarks", "default", i), "benchmark")
    datasets = _section(raw, "datasets")
    if "dir" in datasets:
        d = datasets["dir"]
        if not isinstance(d, str) or not _DIR.match(d) or ".." in d.split("/") or d.startswith("/"):
            raise _Invalid(("datasets", "dir"), "`datasets.dir` must be a folder inside the repository, e.g. `data`")
        kw["dataset_dir"] = d.rstrip("/")
    if "hub" in datasets:
        kw["hub_datasets"] = _hub_datasets(datasets["hub"])
    if "default" in datasets:
        kw["default_datasets"] = _names(datasets["default"], ("datasets", "default"))
        if catalog is not None:
            known = {**dict(catalog.datasets), **kw.get("hub_datasets", {})}
            for i, name in enumerate(kw["default_datasets"]):
                if "/" not in name and "." not in name:
                    _known(name, known, ("datasets", "default", i), "dataset")
    perms = _section(raw, "permissions")
    for key, attr in (("train", "min_permission_train"), ("eval", "min_permission_eval"),
                      ("approve", "min_permission_approve")):
        if key in perms:
            kw[attr] = _choice(perms[key], ("permissions", key), PERMISSIONS)
    if "approval_ttl_hours" in perms:
        kw["approval_ttl_hours"] = _number(perms["approval_ttl_hours"], ("permissions", "approval_ttl_hours"),
                                           0.1, 24 * 90)
    quotas = _section(raw, "quotas")
    if quotas:
        base = Quotas()
        kw["quotas"] = Quotas(
            runs_per_user_per_day=_opt_int(quotas, "runs_per_user_per_day", base.runs_per_user_per_day, 1, 10_000),
            gpu_hours_per_day=_opt_number(quotas, "gpu_hours_per_day", base.gpu_hours_per_day, 0.1, 100_000),
            max_dispatches_per_comment=int(_number(quotas.get("commands_per_comment", 3),
                                                   ("quotas", "commands_per_comment"), 1, 20, whole=True)),
            max_run_hours=_number(quotas.get("max_run_hours", 6.0), ("quotas", "max_run_hours"), 0.05, 168),
        )
    if "auto_train" in raw:
        auto = raw["auto_train"]
        if isinstance(auto, bool):
            kw["auto_train"] = auto
        elif isinstance(auto, dict):
            kw["auto_train"] = _bool(auto.get("enabled", False), ("auto_train", "enabled"))
            if "paths" in auto:
                paths = auto["paths"]
                if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                    raise _Invalid(("auto_train", "paths"), "`auto_train.paths` is a list of globs, "
                                                            "e.g. [\"configs/**.yaml\"]")
                for i, p in enumerate(paths):
                    if not _GLOB.match(p) or ".." in p.split("/") or p.startswith("/"):
                        raise _Invalid(("auto_train", "paths", i), f"`{p}` is not a repository path glob")
                kw["auto_train_paths"] = tuple(paths)
        else:
            raise _Invalid(("auto_train",), "`auto_train` is true/false or a mapping with `enabled` and `paths`")
    seeds = _section(raw, "seeds")
    if seeds:
        top = int(_number(seeds.get("max", Policy.seeds_max), ("seeds", "max"), 1, 16, whole=True))
        first = int(_number(seeds.get("default", Policy.seeds_default), ("seeds", "default"), 1, 16, whole=True))
        if first > top:
            raise _Invalid(("seeds", "default"), f"`seeds.default` ({first}) is above `seeds.max` ({top})")
        kw["seeds_default"], kw["seeds_max"] = first, top
    notify = _section(raw, "notify")
    if notify:
        slack, robot = notify.get("slack"), notify.get("dingtalk")
        if slack is not None and (not isinstance(slack, str) or not _SLACK.match(slack)):
            raise _Invalid(("notify", "slack"), "`notify.slack` is a channel name like `#ml-runs` or a channel id")
        if robot is not None and (not isinstance(robot, str) or not _ROBOT.match(robot)):
            raise _Invalid(("notify", "dingtalk"), "`notify.dingtalk` is the name of a robot configured in the bot "
                                                   "(letters, digits, `-`, `_`, `.`), never its token")
        kw["notify"] = Notify(slack_channel=slack, dingtalk_robot=robot)
    if "regression" in raw:
        kw["regression"] = _regression(raw["regression"], catalog)
    gpu = _section(raw, "gpu")
    if gpu.get("type") is not None:
        kw["gpu_type"] = _choice(str(gpu["type"]).lower().replace("_", "-") if isinstance(gpu["type"], str)
                                 else gpu["type"], ("gpu", "type"), tuple(GPUS))
    if "count" in gpu:
        kw["gpu_count"] = int(_number(gpu["count"], ("gpu", "count"), 1, 1024, whole=True))
    approval = _section(raw, "approval")
    if approval.get("above_gpu_hours") is not None:
        kw["approval_above_gpu_hours"] = _number(approval["above_gpu_hours"], ("approval", "above_gpu_hours"),
                                                 0, 1_000_000)
    if "tracking" in raw:
        kw["tracking"] = _tracking(raw["tracking"])
    runners = _section(raw, "runners")
    if runners:
        kw["runners"] = _runners(runners)
    return Policy(**kw)


def _tracking(value: Any) -> Tracking:
    """`tracking: wandb` or `tracking: {tool: wandb, project: my-project}` (ms-swift's `--report_to`)."""
    raw = {"tool": value} if isinstance(value, str) else value
    if not isinstance(raw, dict) or not isinstance(raw.get("tool"), str):
        raise _Invalid(("tracking",), f"`tracking` is one of {', '.join(TRACKERS)}, or a mapping with `tool` and "
                                      "`project`")
    tool = _choice(raw["tool"], ("tracking", "tool") if isinstance(value, dict) else ("tracking",), TRACKERS)
    project = raw.get("project")
    if project is not None and (not isinstance(project, str) or not TRACKER_PROJECT.fullmatch(project)):
        raise _Invalid(("tracking", "project"), "`tracking.project` is a name of letters, digits, `-`, `_`, `.`")
    if project is not None and tool == "tensorboard":
        raise _Invalid(("tracking", "project"), "TensorBoard files go into the run's artifact; `project` is for "
                                                "swanlab, wandb and mlflow")
    return Tracking(tool=tool, project=project)


def _runners(sec: dict[str, Any]) -> Runners:
    max_gpus = int(_number(sec.get("max_gpus", 1), ("runners", "max_gpus"), 1, 16, whole=True))
    if max_gpus & (max_gpus - 1):
        raise _Invalid(("runners", "max_gpus"), f"`runners.max_gpus` must be a power of two (1, 2, 4, 8 or 16), "
                                                f"not {max_gpus}")
    max_nodes = int(_number(sec.get("max_nodes", 1), ("runners", "max_nodes"), 1, 16, whole=True))
    labels: dict[int, tuple[str, ...]] = {}
    raw_labels = sec.get("labels") or {}
    if not isinstance(raw_labels, dict):
        raise _Invalid(("runners", "labels"), "`runners.labels` maps a GPU count to runner labels, e.g. "
                                              "`4: [self-hosted, gpu-4]`")
    for key, value in raw_labels.items():
        count = int(key) if isinstance(key, int) or (isinstance(key, str) and key.isdigit()) else 0
        if count < 1 or count > max_gpus or count & (count - 1):
            raise _Invalid(("runners", "labels", key), f"`runners.labels` keys are GPU counts (powers of two up to "
                                                       f"runners.max_gpus = {max_gpus}), not `{key}`")
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and _LABEL.match(v)
                                                               for v in value):
            raise _Invalid(("runners", "labels", key), "runner labels are a list of names like "
                                                       "[self-hosted, gpu-4]")
        labels[count] = tuple(value)
    return Runners(max_gpus=max_gpus, max_nodes=max_nodes, labels=labels)


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid((key,), f"`{key}` must be a mapping with {', '.join(_LAYOUT[key] or ())}")
    return value


def _choice(value: Any, path: Path, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        shown = value if isinstance(value, (str, int, float, bool)) else type(value).__name__
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise _Invalid(path, f"`{'.'.join(map(str, path))}` must be one of {', '.join(choices)}, not `{shown}`{hint}")
    return value


def _name(value: Any, path: Path) -> str:
    if not isinstance(value, str) or (not _NAME.match(value) and not _HUB_ID.match(value)):
        raise _Invalid(path, f"`{'.'.join(map(str, path))}` must be a name, not `{value}`")
    return value


def _names(value: Any, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _Invalid(path, f"`{'.'.join(map(str, path))}` must be a list of names")
    return tuple(_name(v, (*path, i)) for i, v in enumerate(value))


def _known(name: str, known: Mapping[str, Any], path: Path, what: str) -> None:
    if name not in known:
        raise _Invalid(path, f"unknown {what} `{name}`{did_you_mean(name, list(known))}; "
                             f"known: {', '.join(sorted(known))}")


def _bool(value: Any, path: Path) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(path, f"`{'.'.join(map(str, path))}` must be true or false")
    return value


def _number(value: Any, path: Path, low: float, high: float, whole: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (not whole or isinstance(value, int))
    if not ok or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise _Invalid(path, f"`{'.'.join(map(str, path))}` must be {kind} from {low:g} to {high:g}, not `{value}`")
    return float(value)


def _opt_int(sec: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    if key not in sec:
        return default
    if sec[key] is None or sec[key] == "unlimited":
        return None
    return int(_number(sec[key], ("quotas", key), low, high, whole=True))


def _opt_number(sec: dict[str, Any], key: str, default: float | None, low: float, high: float) -> float | None:
    if key not in sec:
        return default
    if sec[key] is None or sec[key] == "unlimited":
        return None
    return _number(sec[key], ("quotas", key), low, high)


def _hub_datasets(value: Any) -> dict[str, DatasetEntry]:
    path: Path = ("datasets", "hub")
    if not isinstance(value, dict):
        raise _Invalid(path, "`datasets.hub` maps a name to {source: modelscope|huggingface, id: org/name}")
    out: dict[str, DatasetEntry] = {}
    for name, spec in value.items():
        where: Path = (*path, name)
        if not _NAME.match(name):
            raise _Invalid(where, f"`{name}` is not a valid dataset name")
        if not isinstance(spec, dict) or set(spec) - {"source", "id", "description"}:
            raise _Invalid(where, f"`datasets.hub.{name}` needs `source` (modelscope|huggingface) and `id` (org/name)")
        source = _choice(spec.get("source"), (*where, "source"), HUBS)
        ident = spec.get("id")
        if not isinstance(ident, str) or not _HUB_ID.match(ident):
            raise _Invalid((*where, "id"), f"`datasets.hub.{name}.id` must be a hub id like `org/name`")
        out[name] = DatasetEntry(name, str(spec.get("description", "")), source, ident)
    return out


def _regression(value: Any, catalog: Catalog | None) -> tuple[RegressionRule, ...]:
    if not isinstance(value, list):
        raise _Invalid(("regression",), "`regression` is a list of rules: "
                                        "- {benchmark: cmmlu, max_loss: 1.0, require_significance: true}")
    rules: list[RegressionRule] = []
    allowed = {"benchmark", "min_gain", "max_loss", "require_significance"}
    for i, item in enumerate(value):
        path: Path = ("regression", i)
        if not isinstance(item, dict):
            raise _Invalid(path, "each regression rule is a mapping with benchmark, min_gain, max_loss, "
                                 "require_significance")
        extra = sorted(set(item) - allowed)
        if extra:
            hint = did_you_mean(extra[0], sorted(allowed))
            raise _Invalid((*path, extra[0]), f"unknown rule field `{extra[0]}`{hint}; "
                                              f"allowed: {', '.join(sorted(allowed))}")
        bench = item.get("benchmark", "*")
        if not isinstance(bench, str) or (bench != "*" and not _NAME.match(bench)):
            raise _Invalid((*path, "benchmark"), "`benchmark` is a benchmark name or \"*\" for all")
        if catalog is not None and bench != "*":
            _known(bench, catalog.benchmarks, (*path, "benchmark"), "benchmark")
        gain = item.get("min_gain")
        loss = item.get("max_loss")
        rules.append(RegressionRule(
            benchmark=bench,
            min_gain=None if gain is None else _number(gain, (*path, "min_gain"), 0, 100),
            max_loss=None if loss is None else _number(loss, (*path, "max_loss"), 0, 100),
            require_significance=_bool(item.get("require_significance", False), (*path, "require_significance")),
        ))
    return tuple(rules)
