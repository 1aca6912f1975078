"""Turns a validated command (or a declarative training config) plus PR facts into fully resolved job specs.

Every default is resolved here, in one documented order, so that a job spec says exactly what will run:
HyperParams defaults < the model's size bracket and preset defaults < the training preset < `key=value` overrides.
Each planned job carries a content hash of what determines its result, so identical work can be reused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, cast

from .args import ArgError
from .catalog import Catalog, ModelPreset
from .decision import ArgValue, Command
from .jobspec import (
    AdapterRef,
    BenchmarkSpec,
    DatasetRef,
    HyperParams,
    JobKind,
    JobSpec,
    Limits,
    ModelRef,
    Resources,
    SpecError,
    Toolchain,
    Tuner,
    content_hash,
    resources_problem,
    validate_job,
)
from .packs import FILE_PACKS, pack_content_hash, repo_question_files, repo_questions_hash, subject_files
from .policy import Policy
from .recipe import RESULT_KEY_VERSION, eval_backend_identity, eval_identity, model_identity, recipe_of
from .recipe import eval_key as _eval_key
from .verbs.base import default_datasets

__all__ = ["RESULT_KEY_VERSION"]
_HYPER_FIELDS = {f.name: str(f.type) for f in fields(HyperParams)}


class PlanError(ValueError):
    """The command is valid but cannot be planned with these facts; the message is for the user."""


class ConfigError(PlanError):
    """A declarative training config that cannot be used: which file, which line (1-based, or None), and why."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        super().__init__(f"`{path}` line {line}: {message}" if line else f"`{path}`: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run of this PR (or repository), as the store knows it."""

    run_id: str
    model: str  # the model preset it trained
    result_key: str = ""  # its training result key, when known: lets eval results be reused across reruns


@dataclass(frozen=True)
class PRFacts:
    """What the bot knows about the PR a command was given on."""

    repo: str  # owner/name
    head_sha: str
    base_ref: str = "main"
    number: int | None = None
    latest_train_run: str | None = None  # the PR's latest successful training run (resolves `adapter=latest`)
    trained_runs: Mapping[str, TrainedRun] = field(default_factory=dict)  # run id -> facts (base model of adapter=)
    latest_benchmarks: tuple[str, ...] = ()  # what this PR was last evaluated on (a bare /compare reuses it)
    # Repository files at head_sha -> their git blob SHA (None: absent), for the training datasets the command names:
    # a recipe identifies its data by content (commands/recipe.py). The bot fetches them (`local_dataset_paths`).
    blobs: Mapping[str, str | None] = field(default_factory=dict)
    # The repository's question folders (general_mcq's `data_dir`) at head_sha -> {path: git blob SHA} of their
    # direct entries: the questions' content hash (`local_question_dirs` names the folders the bot should list).
    question_dirs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedJob:
    """A job to dispatch (callback left None: the bot fills in its URL and the per-run token)."""

    job: JobSpec
    result_key: str  # train / train+eval: the training key; eval: the key of all its benchmarks together
    benchmark_keys: Mapping[str, str] = field(default_factory=dict)  # benchmark -> eval result key
    force: bool = False  # rerun even if a stored result has the same key
    compare_ref: str | None = None  # /compare: the ref or run id to compare against (the bot resolves it)
    compare_seeds: int | None = None  # /compare … seeds=N: how many seeds per side the comparison judges


def plan(
    command: Command,
    pr: PRFacts,
    policy: Policy,
    catalog: Catalog,
    run_ids: Iterator[str] | Iterable[str],
) -> list[PlannedJob]:
    """The jobs a command starts ([] for verbs that start none: status, cancel, retry, help, …).

    `/retry` re-dispatches a stored spec under a new run id; that is the bot's (it holds the spec).
    Raises PlanError when the facts do not allow planning (e.g. `adapter=latest` before any training run).
    """
    ids = iter(run_ids)
    try:
        if command.verb == "train":
            first = _plan_train(command, pr, policy, catalog, _next_id(ids))
            # `seeds=N`: the same recipe trained N times, seeds seed, seed+1, …: one run each (each its own result
            # key, so every seed is reused on its own), compared together by `/compare` (commands/compare.with_seeds).
            return [first] + [_plan_train(replace(command, args={**command.args, "seed": first.job.hyper.seed + i}),
                                          pr, policy, catalog, _next_id(ids))
                              for i in range(1, seeds_of(command, policy))]
        if command.verb == "eval":
            return [_plan_eval(command, pr, policy, catalog, _next_id(ids))]
        if command.verb == "compare":
            return [_plan_compare(command, pr, policy, catalog, _next_id(ids))]
    except (SpecError, ArgError, KeyError) as exc:
        raise PlanError(str(exc).strip("'\"")) from None
    return []


def seeds_of(command: Command, policy: Policy) -> int:
    """How many seeds per side a command asks for: `seeds=N`, else the repository's `seeds.default`."""
    seeds = command.args.get("seeds")
    return seeds if isinstance(seeds, int) else policy.seeds_default


def with_seed(job: JobSpec, seed: int, run_id: str) -> JobSpec:
    """The same training job with another seed (and run id): one more member of a multi-seed recipe."""
    return replace(job, run_id=run_id, hyper=replace(job.hyper, seed=seed), callback=None)


def seedless_key(job: JobSpec, preset: ModelPreset) -> str:
    """A training recipe's key with the seed left out: equal for the runs of one multi-seed recipe."""
    return train_key(with_seed(job, 0, job.run_id), preset)


def _next_id(ids: Iterator[str]) -> str:
    try:
        return next(ids)
    except StopIteration:
        raise PlanError("internal: no run id left for this job") from None


# --- models -------------------------------------------------------------------------------------------------------


def model_ref(preset: ModelPreset, hub: str | None, revision: str | None) -> ModelRef:
    """Where to fetch the preset's weights: the built-in model, or the chosen hub (falling back to the one it has)."""
    if preset.source == "builtin":
        return ModelRef(name=preset.name, source="builtin", id=preset.modelscope_id, model_type=preset.model_type,
                        template=preset.template, revision=revision, hf_id=None,
                        trust_remote_code=preset.trust_remote_code)
    use_hf = (hub == "huggingface" and preset.hf_id is not None) or (hub is None and preset.source == "huggingface")
    return ModelRef(
        name=preset.name,
        source="huggingface" if use_hf else "modelscope",
        id=cast(str, preset.hf_id) if use_hf else preset.modelscope_id,
        model_type=preset.model_type,
        template=preset.template,
        revision=revision,
        hf_id=preset.hf_id,
        trust_remote_code=preset.trust_remote_code,
    )


def _model_identity(model: ModelRef, preset: ModelPreset) -> dict[str, Any]:
    return model_identity(model.revision, preset, model.model_type, model.template)


def _model(command: Command, policy: Policy, catalog: Catalog, name: str) -> tuple[ModelRef, ModelPreset]:
    preset = catalog.models[name]
    # Every job's model passes here (named, the repository default, an adapter's base): hub code runs only for
    # presets that need it and that the policy opted in to.
    problem = policy.remote_code_problem(preset)
    if problem is not None:
        raise PlanError(problem)
    hub = command.args.get("hub") or policy.hub
    revision = command.args.get("revision")
    return model_ref(preset, str(hub), revision if isinstance(revision, str) else None), preset


# --- training -----------------------------------------------------------------------------------------------------


def _coerce(name: str, value: Any) -> Any:
    kind = _HYPER_FIELDS[name]
    if value is None:
        return None
    if kind.startswith("float"):
        return float(value)
    if kind.startswith("int"):
        return int(value)
    return str(value)


def resolve_hyper(command: Command, preset: ModelPreset, catalog: Catalog) -> tuple[HyperParams, str]:
    """Hyper-parameters and tuner, every default resolved, in the documented order."""
    values = {k: v for k, v in catalog.model_defaults(preset).items() if k in _HYPER_FIELDS}
    training_name = str(command.args.get("preset", "default"))
    training = catalog.training.get(training_name)
    if training is not None:
        values.update({k: v for k, v in training.hyper.items() if k in _HYPER_FIELDS})
    values.update({k: v for k, v in command.args.items() if k in _HYPER_FIELDS})
    hyper = HyperParams(**{k: _coerce(k, v) for k, v in values.items()})
    tuner = command.args.get("tuner") or (training.tuner if training is not None else None) \
        or catalog.recommended_tuner(preset)
    return hyper, str(tuner)


def _datasets(command: Command, pr: PRFacts, policy: Policy, catalog: Catalog, preset: ModelPreset) \
        -> tuple[DatasetRef, ...]:
    names = command.args.get("dataset")
    chosen = names if isinstance(names, tuple) else default_datasets(preset, catalog, policy)
    if not chosen:
        raise PlanError("which data? add `dataset=<name>`")
    registry = policy.datasets(catalog)
    max_samples = command.args.get("max_samples")
    limit = max_samples if isinstance(max_samples, int) else None
    out: list[DatasetRef] = []
    for name in chosen:
        entry = registry.get(name)
        if entry is not None:
            out.append(DatasetRef(name=name, source=cast(Any, entry.source), id=entry.id, max_samples=limit))
        else:  # a repo-local file, already checked to lie under dataset_dir by the parser
            blob = pr.blobs.get(name, "")
            if blob is None:
                raise PlanError(f"`{name}` does not exist at {pr.head_sha[:7]}: add it, or name another dataset")
            out.append(DatasetRef(name=name, source="local", id=name, max_samples=limit, blob=blob or None))
    return tuple(out)


def _bench_specs(names: Iterable[str], catalog: Catalog, policy: Policy, subsets: ArgValue | None = None,
                 limit: ArgValue | None = None, few_shot: ArgValue | None = None,
                 pr: PRFacts | None = None) -> tuple[BenchmarkSpec, ...]:
    out: list[BenchmarkSpec] = []
    for name in sorted(set(names)):
        pack = catalog.benchmarks[name]
        if isinstance(subsets, tuple) and subsets != ("all",):
            chosen = subsets
        elif subsets == ("all",):
            # A repository pack's subsets are its files at the commit, which only the runner sees: it resolves `all`.
            chosen = pack.subjects or ("all",)
        else:
            chosen = pack.default_subsets
        shots = few_shot if isinstance(few_shot, int) else pack.few_shot
        data_dir = None
        if pack.repo_folder is not None:
            data_dir = f"{policy.dataset_dir}/{pack.repo_folder}"
            if shots:
                raise PlanError(f"`{name}` has no few-shot examples (its questions are your files under "
                                f"`{data_dir}/`): leave out `few_shot=`")
        digest = _pack_hash(pack.evalscope_name, tuple(sorted(chosen)), catalog)
        listing = pr.question_dirs.get(data_dir) if data_dir is not None and pr is not None else None
        if listing is not None:
            files = repo_question_files(listing, tuple(sorted(chosen)))
            digest = repo_questions_hash(files) if files else None
        out.append(BenchmarkSpec(
            name=name,
            subsets=tuple(sorted(chosen)),
            limit=limit if isinstance(limit, int) else pack.limit,
            few_shot=shots,
            max_tokens=pack.max_tokens,
            data_dir=data_dir,
            content_hash=digest,
        ))
    return tuple(out)


def _pack_hash(pack: str, subjects: tuple[str, ...], catalog: Catalog) -> str | None:
    """The content hash of a file pack's chosen subjects, when the bot has every one of their files (else None: the
    runner's own copy is then used unchecked, rather than refused for a file the bot never saw)."""
    if pack not in FILE_PACKS or subjects == ("all",):
        return None
    files = [f for s in subjects for f in subject_files(pack, s)]
    if not files or any(f not in catalog.pack_digests for f in files):
        return None
    return pack_content_hash(pack, {f: catalog.pack_digests[f] for f in files})


def train_key(job: JobSpec, preset: ModelPreset, head_sha: str = "") -> str:
    """What determines a trained adapter: its recipe (commands/recipe.py), data identified by content."""
    return recipe_of(job, preset).key()


def eval_key(model: dict[str, Any], adapter: dict[str, Any] | None, bench: BenchmarkSpec,
             local_at: str | None = None, evalscope: str | None = None, backend: str | None = None) -> str:
    """What determines one benchmark score: model, adapter, benchmark, subjects, limit, shots, max_tokens.

    `local_at` is the commit for packs whose questions come from the repository (general_mcq): the planner cannot
    read the files, so it keys on the commit and folder that fix them (the runner reports their content hash).
    """
    return _eval_key(model, adapter, eval_identity(bench, local_at, evalscope, backend=backend))


def _local_at(bench: BenchmarkSpec, catalog: Catalog, pr: PRFacts) -> str | None:
    pack = catalog.benchmarks[bench.name]
    if not pack.from_repository or bench.content_hash is not None:
        return None  # file packs, and repository questions known by their files' blobs, are keyed by content
    return pr.head_sha.lower()  # repository questions the bot could not list: keyed on the commit


def _bench_keys(benches: tuple[BenchmarkSpec, ...], model: dict[str, Any], adapter: dict[str, Any] | None,
                catalog: Catalog, pr: PRFacts, toolchain: Toolchain | None = None,
                backend: str | None = None) -> dict[str, str]:
    evalscope = toolchain.evalscope if toolchain is not None else None
    return {b.name: eval_key(model, adapter, b, _local_at(b, catalog, pr), evalscope, backend) for b in benches}


def _resources(command: Command, policy: Policy) -> Resources | None:
    """`gpus=` / `nodes=` / `deepspeed=` / `fsdp=` as the job's resources (None: one GPU, as before)."""
    gpus, nodes = command.args.get("gpus", 1), command.args.get("nodes", 1)
    sharding = command.args.get("deepspeed") or command.args.get("fsdp")
    if not isinstance(gpus, int) or not isinstance(nodes, int):
        raise PlanError("gpus and nodes are whole numbers")
    if gpus == 1 and nodes == 1 and sharding is None:
        return None
    problem = resources_problem(gpus, nodes, policy.runners.max_gpus, policy.runners.max_nodes)
    if problem is not None:
        raise PlanError(f"{problem} (this repository's `runners` in .tunebot.yml: max_gpus "
                        f"{policy.runners.max_gpus}, max_nodes {policy.runners.max_nodes})")
    return Resources(gpus=gpus, nodes=nodes, sharding=str(sharding) if sharding else None)


def _eval_backend(command: Command) -> str | None:
    backend = command.args.get("backend")
    return "served" if backend == "served" else None


def _limits(policy: Policy) -> Limits:
    return Limits(wall_clock_s=max(60, int(policy.quotas.max_run_hours * 3600)))


def _plan_train(command: Command, pr: PRFacts, policy: Policy, catalog: Catalog, run_id: str) -> PlannedJob:
    model, preset = _model(command, policy, catalog, str(command.args["model"]))
    hyper, tuner = resolve_hyper(command, preset, catalog)
    datasets = _datasets(command, pr, policy, catalog, preset)
    wanted = command.args.get("eval")
    names: tuple[str, ...] = () if wanted == ("none",) else (
        wanted if isinstance(wanted, tuple) else policy.default_benchmarks)
    benches = _bench_specs(names, catalog, policy, pr=pr)
    kind: JobKind = "train+eval" if benches else "train"
    job = JobSpec(run_id=run_id, repo=pr.repo, sha=pr.head_sha, kind=kind, model=model, tuner=cast(Tuner, tuner),
                  hyper=hyper, datasets=datasets, benchmarks=benches, limits=_limits(policy),
                  toolchain=catalog.toolchain, resources=_resources(command, policy),
                  eval_backend=_eval_backend(command) if benches else None)
    if job.eval_backend == "served" and job.tuner in ("lora", "qlora"):
        # The base model rides along in the same server start: the automatic base-model comparison needs no run.
        job = replace(job, eval_base=True)
    validate_job(job)
    key = train_key(job, preset, pr.head_sha)
    # Where the curves are reported changes no result: the tracker is set after the key.
    job = replace(job, tracking=policy.tracking)
    ident = _model_identity(model, preset)
    return PlannedJob(job=job, result_key=key,
                      benchmark_keys=_bench_keys(benches, ident, {"train": key}, catalog, pr, job.toolchain,
                                                 job.eval_backend))


# --- evaluation ---------------------------------------------------------------------------------------------------


def _adapter(command: Command, pr: PRFacts) -> tuple[str | None, TrainedRun | None]:
    wanted = command.args.get("adapter")
    if not isinstance(wanted, str):
        return None, None
    run_id = wanted
    if wanted.lower() == "latest":
        if pr.latest_train_run is None:
            raise PlanError("this PR has no successful training run yet: run `/train …` first, or name a run with "
                            "`adapter=<run-id>`")
        run_id = pr.latest_train_run
    return run_id, pr.trained_runs.get(run_id)


def _eval_job(command: Command, pr: PRFacts, policy: Policy, catalog: Catalog, run_id: str,
              benchmarks: tuple[str, ...], adapter_run: str | None, trained: TrainedRun | None,
              force: bool, compare_ref: str | None = None) -> PlannedJob:
    model_name = command.args.get("model")
    if not isinstance(model_name, str):
        if trained is not None:
            model_name = trained.model
        elif adapter_run is not None:
            raise PlanError(f"which base model did run `{adapter_run}` train? add `model=<preset>`")
        elif policy.default_model is not None:
            model_name = policy.default_model
        else:
            raise PlanError("which model? add `model=<preset>` or `adapter=latest`")
    if model_name not in catalog.models:
        raise PlanError(f"unknown model `{model_name}`")
    model, preset = _model(command, policy, catalog, model_name)
    benches = _bench_specs(benchmarks, catalog, policy, command.args.get("subsets"), command.args.get("limit"),
                           command.args.get("few_shot"), pr=pr)
    adapter = AdapterRef(run_id=adapter_run) if adapter_run is not None else None
    job = JobSpec(run_id=run_id, repo=pr.repo, sha=pr.head_sha, kind="eval", model=model, benchmarks=benches,
                  adapter=adapter, limits=_limits(policy), toolchain=catalog.toolchain,
                  eval_backend=_eval_backend(command))
    if job.eval_backend == "served" and adapter is not None:
        job = replace(job, eval_base=True)
    validate_job(job)
    ident = _model_identity(model, preset)
    adapter_ident: dict[str, Any] | None = None
    if adapter_run is not None:
        adapter_ident = {"train": trained.result_key} if trained is not None and trained.result_key \
            else {"run": adapter_run}
    keys = _bench_keys(benches, ident, adapter_ident, catalog, pr, job.toolchain, job.eval_backend)
    return PlannedJob(job=job, result_key=content_hash(sorted(keys.values())), benchmark_keys=keys, force=force,
                      compare_ref=compare_ref)


def _benchmarks_of(command: Command, policy: Policy, pr: PRFacts, verb: str) -> tuple[str, ...]:
    named = command.args.get("benchmarks")
    if isinstance(named, tuple) and named:
        return named
    if policy.default_benchmarks:
        return policy.default_benchmarks
    if verb == "compare" and pr.latest_benchmarks:
        return pr.latest_benchmarks
    raise PlanError(f"which benchmark? e.g. `/{verb} cmmlu`")


def _plan_eval(command: Command, pr: PRFacts, policy: Policy, catalog: Catalog, run_id: str) -> PlannedJob:
    adapter_run, trained = _adapter(command, pr)
    return _eval_job(command, pr, policy, catalog, run_id, _benchmarks_of(command, policy, pr, "eval"),
                     adapter_run, trained, bool(command.args.get("force", False)))


def _plan_compare(command: Command, pr: PRFacts, policy: Policy, catalog: Catalog, run_id: str) -> PlannedJob:
    """The head side of a comparison: the PR's latest adapter (or the default model) on the benchmarks.

    The reference side (`compare_ref`: a ref or run id, default the base branch) is looked up in the store by
    the bot, using the same result keys.
    """
    benchmarks = _benchmarks_of(command, policy, pr, "compare")
    adapter_run = pr.latest_train_run
    trained = pr.trained_runs.get(adapter_run) if adapter_run else None
    if adapter_run is None and policy.default_model is None:
        raise PlanError("nothing to compare yet: train on this PR first (`/train <model>`), or set `models.default` "
                        "in .tunebot.yml to compare the base model")
    ref = command.args.get("ref")
    return _eval_job(command, pr, policy, catalog, run_id, benchmarks, adapter_run, trained,
                     bool(command.args.get("force", False)), str(ref) if isinstance(ref, str) else pr.base_ref)


def plan_baseline(job: JobSpec, pr: PRFacts, catalog: Catalog, run_id: str) -> PlannedJob:
    """The reference side of a comparison: the same evaluation (benchmarks, subjects, limit, shots) on the base
    model without any adapter, at `pr.head_sha` (the ref being compared against). Its result keys are the ones a
    stored base-model result of the same eval config carries, so an existing baseline is found, not re-run."""
    preset = catalog.models.get(job.model.name)
    if preset is None:
        raise PlanError(f"unknown model `{job.model.name}`")
    if not job.benchmarks:
        raise PlanError("nothing to compare: the run evaluated no benchmark")
    base = replace(job, run_id=run_id, kind="eval", tuner=None, datasets=(), adapter=None, sha=pr.head_sha,
                   callback=None, resources=None, eval_base=None)
    validate_job(base)
    keys = _bench_keys(job.benchmarks, _model_identity(job.model, preset), None, catalog, pr, base.toolchain,
                       job.eval_backend)
    return PlannedJob(job=base, result_key=content_hash(sorted(keys.values())), benchmark_keys=keys)


def local_question_dirs(planned: Iterable[PlannedJob]) -> list[str]:
    """The repository folders of questions (general_mcq) these jobs evaluate whose files the planner was not told."""
    return sorted({b.data_dir for pj in planned for b in pj.job.benchmarks
                   if b.data_dir is not None and b.content_hash is None})


def job_eval_keys(job: JobSpec, catalog: Catalog, adapter: Mapping[str, Any] | None, backend: str | None) \
        -> dict[str, str]:
    """The eval result keys of `job`'s benchmarks for `adapter` (None: the base model) on `backend`, exactly as the
    planner computes them for a job at `job.sha` (a repository pack's questions are keyed on that commit)."""
    preset = catalog.models.get(job.model.name)
    if preset is None:
        raise PlanError(f"unknown model `{job.model.name}`")
    pr = PRFacts(repo=job.repo, head_sha=job.sha)
    return _bench_keys(job.benchmarks, _model_identity(job.model, preset), dict(adapter) if adapter else None,
                       catalog, pr, job.toolchain, backend)


def adapter_identities(job: JobSpec, trained_key: str | None) -> list[Mapping[str, Any] | None]:
    """What the planner may have keyed `job`'s evaluated model on: the base model (None), the training it ran
    itself, or its input adapter (by that run's training key when the planner knew it, else by run id)."""
    if job.trains:
        return [{"train": trained_key}] if trained_key else []
    if job.adapter is None:
        return [None]
    known: list[Mapping[str, Any] | None] = [{"train": trained_key}] if trained_key else []
    return [*known, {"run": job.adapter.run_id}]


def stored_result_keys(job: JobSpec, catalog: Catalog, run_id: str, benchmarks: Iterable[str],
                       planned: Mapping[str, str], used: Mapping[str, str],
                       adapters: Iterable[Mapping[str, Any] | None]) -> dict[str, str]:
    """The key each benchmark's result is stored under, so that results of different backends never share one.

    The planned key when the result came from the backend the job asked for (or the agent did not say: agents before
    the `backend` field). When the agent reports another backend (a served job whose server could not start was
    scored natively), the key the same evaluation gets on the backend it really ran on: recomputed with the
    planner's key functions, with the adapter identity (among `adapters`) that reproduces the planned key. When none
    does (keys planned by another version), a key of this run alone: the result is kept, and never reused.
    """
    asked = eval_backend_identity(job.eval_backend)
    out: dict[str, str] = {}
    for bench in benchmarks:
        planned_key = planned.get(bench)
        backend = used.get(bench)
        if backend is None or eval_backend_identity(backend) == asked:
            out[bench] = planned_key or f"run:{run_id}:{bench}"
            continue
        out[bench] = f"run:{run_id}:{bench}:{backend}"
        for adapter in adapters:
            try:
                if job_eval_keys(job, catalog, adapter, job.eval_backend).get(bench) == planned_key:
                    out[bench] = job_eval_keys(job, catalog, adapter, backend)[bench]
                    break
            except (PlanError, SpecError, KeyError):
                break
    return out


def base_result_keys(job: JobSpec, catalog: Catalog, benchmarks: Iterable[str], used: Mapping[str, str]) \
        -> dict[str, str]:
    """Where the base model's scores of an `eval_base` job are stored: under the keys a plain `/eval` of the base
    model on the same questions gets (plan_baseline's), on the backend each score really came from (`used`; the
    job's own when the agent did not say)."""
    out: dict[str, str] = {}
    for bench in benchmarks:
        keys = job_eval_keys(job, catalog, None, used.get(bench, job.eval_backend))
        if bench in keys:
            out[bench] = keys[bench]
    return out


def local_dataset_paths(planned: Iterable[PlannedJob]) -> list[str]:
    """The repository files these jobs train on whose content (git blob) the planner was not told."""
    return sorted({d.id for pj in planned for d in pj.job.datasets if d.source == "local" and d.blob is None})


def plan_recipe_baseline(head: JobSpec, catalog: Catalog, ref_sha: str, blobs_at_ref: Mapping[str, str | None],
                         run_id: str, ref_label: str,
                         benchmarks: tuple[BenchmarkSpec, ...] | None = None) -> PlannedJob:
    """The reference side of `/compare <ref>`: the head's training recipe (model, tuner, hyper-parameters, dataset
    *names*) trained and evaluated at `ref_sha`, with that commit's files (`blobs_at_ref`: path -> blob, None when
    the file is absent there). Its keys are those of any run of the same recipe, so a stored one is found."""
    preset = catalog.models.get(head.model.name)
    if preset is None:
        raise PlanError(f"unknown model `{head.model.name}`")
    if not head.trains or head.tuner is None:
        raise PlanError("nothing to compare: the run trained nothing")
    benches = benchmarks if benchmarks is not None else head.benchmarks
    if not benches:
        raise PlanError("nothing to compare: the run evaluated no benchmark")
    if ref_sha.lower() != head.sha.lower():
        # The repository's own questions at another commit are that commit's files, whose blobs the head's hash does
        # not name: keyed on that commit instead (the runner reads them there).
        benches = tuple(replace(b, content_hash=None) if b.data_dir is not None else b for b in benches)
    datasets = []
    for d in head.datasets:
        if d.source == "local":
            blob = blobs_at_ref.get(d.id)
            if blob is None:
                raise PlanError(f"`{d.id}` does not exist at {ref_label}@{ref_sha[:7]}, so the same recipe cannot be "
                                f"trained there: compare with `/compare base-model` or a run id instead")
            d = replace(d, blob=blob)
        datasets.append(d)
    job = replace(head, run_id=run_id, sha=ref_sha, kind="train+eval", datasets=tuple(datasets), benchmarks=benches,
                  adapter=None, callback=None)
    validate_job(job)
    key = train_key(job, preset)
    pr = PRFacts(repo=head.repo, head_sha=ref_sha)
    # On the head's backend: a served head is compared with a served baseline, never with a native one.
    keys = _bench_keys(benches, _model_identity(job.model, preset), {"train": key}, catalog, pr, job.toolchain,
                       job.eval_backend)
    return PlannedJob(job=job, result_key=key, benchmark_keys=keys)


# --- declarative configs -----------------------------------------------------------------------------------------


# --- auto-train path matching -------------------------------------------------------------------------------------


def _glob_re(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def auto_train_matches(path: str, policy: Policy) -> bool:
    """Whether a changed file should trigger auto-training (`auto_train.paths`; `**` crosses folders)."""
    return policy.auto_train and any(_glob_re(p).match(path) for p in policy.auto_train_paths)
