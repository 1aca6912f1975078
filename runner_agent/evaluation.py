"""Evaluation with EvalScope: plans the benchmarks (local packs converted, or hub ids), runs EvalScope directly on the
base model or base + adapter, and reads per-question outcomes back from its `reviews/` files, mapped to the
original row ids and checked against the questions themselves and EvalScope's own report.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commands.catalog import Catalog
from commands.jobspec import BenchmarkSpec, content_hash
from commands.results import BenchmarkResult, SubsetScore

from . import mcq_files, packs
from .context import RunContext
from .errors import AgentError
from .models import ResolvedModel
from .procs import Supervised, describe_exit, headline, run_supervised

MODEL_ID = "model"  # EvalScope's directory name for the evaluated model; fixed so the reviews path is known
PROMPT_FORMAT = "evalscope-1.x-0shot-v1"


@dataclass(frozen=True)
class BenchPlan:
    spec: BenchmarkSpec
    evalscope_name: str
    subsets: tuple[str, ...]
    limit: int | None
    pack: packs.ConvertedPack | None  # None: EvalScope loads the hub dataset
    config_hash: str

    def expected(self, subset: str) -> int | None:
        if self.pack is None:
            return self.limit
        n = len(self.pack.eval_rows(subset))
        return min(n, self.limit) if self.limit is not None else n

    @property
    def expected_total(self) -> int | None:
        counts = [self.expected(s) for s in self.subsets]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)


def repo_pack(spec: BenchmarkSpec, repo_dir: Path | None, pack_cache: Path) -> packs.ConvertedPack:
    """The repository's own questions the job names (`data_dir` of the checkout), checked row by row, converted."""
    if spec.data_dir is None:
        raise AgentError(f"benchmark {spec.name!r}: the job names no data_dir (the repository folder of the questions)")
    if repo_dir is None:
        raise AgentError(f"benchmark {spec.name!r} reads the repository's questions: pass --repo-dir CHECKOUT")
    if spec.few_shot:
        raise AgentError(f"benchmark {spec.name!r}: few_shot must be 0 (your own questions have no few-shot pool)")
    found = mcq_files.find_files(repo_dir, spec.data_dir)
    chosen = mcq_files.select(found, spec.subsets)
    rows = {f.subset: mcq_files.read_file(f) for f in chosen}
    return packs.convert_repo_mcq(Path(repo_dir) / spec.data_dir, rows, [(f.rel, f.sha256) for f in chosen],
                                  mcq_files.content_hash(chosen), pack_cache)


def plan(
    benchmarks: Sequence[BenchmarkSpec],
    catalog: Catalog,
    *,
    bench_data: Path | None,
    pack_cache: Path,
    offline: bool,
    evalscope_version: str,
    repo_dir: Path | None = None,
) -> list[BenchPlan]:
    """Check every requested benchmark and subject, and convert local packs and the repository's own questions,
    before any work starts."""
    plans: list[BenchPlan] = []
    seen: set[str] = set()
    for spec in benchmarks:
        if spec.name in seen:
            raise AgentError(f"benchmark {spec.name!r} is listed twice")
        seen.add(spec.name)
        pack_def = catalog.benchmarks.get(spec.name)
        if pack_def is None:
            raise AgentError(f"unknown benchmark {spec.name!r}; known: {', '.join(sorted(catalog.benchmarks))}")
        name = pack_def.evalscope_name
        from_repo = pack_def.repo_folder is not None
        if not from_repo and name not in packs.SUPPORTED:
            raise AgentError(f"benchmark {spec.name!r} has no reader in this agent (EvalScope {name!r})")
        if spec.limit is not None and spec.limit <= 0:
            raise AgentError(f"benchmark {spec.name!r}: limit must be positive, got {spec.limit}")
        if spec.few_shot < 0 or spec.few_shot > 5:
            raise AgentError(f"benchmark {spec.name!r}: few_shot must be between 0 and 5, got {spec.few_shot}")
        if not 1 <= spec.max_tokens <= 8192:
            raise AgentError(f"benchmark {spec.name!r}: max_tokens must be between 1 and 8192, got {spec.max_tokens}")
        limit = spec.limit if spec.limit is not None else pack_def.limit
        if from_repo:
            questions = repo_pack(spec, repo_dir, pack_cache)
            subsets = tuple(questions.rows[packs.EVAL_SPLIT[name]])
            config_hash = _config_hash(name, subsets, limit, spec, questions.sha256, evalscope_version)
            plans.append(BenchPlan(spec, name, subsets, limit, questions, config_hash))
            continue
        subsets = tuple(spec.subsets) or pack_def.default_subsets
        if subsets == ("all",):
            subsets = pack_def.subjects
        unknown = [s for s in subsets if pack_def.subjects and s not in pack_def.subjects]
        if unknown:
            raise AgentError(f"benchmark {spec.name!r}: unknown subject(s) {', '.join(unknown)}")
        if len(set(subsets)) != len(subsets):
            raise AgentError(f"benchmark {spec.name!r}: a subject is listed twice")
        local = bench_data is not None and (bench_data / name).is_dir()
        pack = None
        if local:
            assert bench_data is not None
            packs.verify_pack_content(name, bench_data, subsets, spec.content_hash)
            pack = packs.convert(bench_data, name, pack_cache)
            packs.check_subjects(pack, subsets, spec.few_shot)
        elif offline:
            where = f"{bench_data / name}" if bench_data else "no --bench-data given"
            raise AgentError(
                f"benchmark {spec.name!r}: no local data ({where}) and the agent is offline, so EvalScope cannot "
                f"fetch its hub dataset; pass --bench-data DIR holding {name}/"
            )
        config_hash = _config_hash(name, subsets, limit, spec, pack.sha256 if pack else f"hub:{name}",
                                   evalscope_version)
        plans.append(BenchPlan(spec, name, tuple(subsets), limit, pack, config_hash))
    return plans


def _config_hash(name: str, subsets: Sequence[str], limit: int | None, spec: BenchmarkSpec, data: str,
                 evalscope_version: str) -> str:
    """What makes two scores comparable: the questions (`data`: their content hash), how many, how they are asked."""
    return content_hash(
        {
            "benchmark": name,
            "subsets": list(subsets),
            "limit": limit,
            "few_shot": spec.few_shot,
            "max_tokens": spec.max_tokens,
            "data": data,
            "evalscope": evalscope_version,
            "prompt": PROMPT_FORMAT,
        }
    )


def _prepare_adapter(adapter: Path, base: ResolvedModel, scratch: Path) -> Path:
    """A scratch copy of the adapter whose config points at the base model as it is on this runner."""
    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.is_file():
        raise AgentError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    target = scratch / "eval-adapter"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in adapter.iterdir():
        if item.is_file() and (item.name.startswith("adapter_") or item.suffix in (".json", ".safetensors")):
            shutil.copy2(item, target / item.name)
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = str(base.path)
    (target / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")
    return target


def _groups(plans: Sequence[BenchPlan], work: Path) -> list[dict[str, Any]]:
    """One EvalScope task per (limit, max_tokens): EvalScope's limit and generation length are per task."""
    by_key: dict[tuple[int | None, int], list[BenchPlan]] = {}
    for p in plans:
        by_key.setdefault((p.limit, p.spec.max_tokens), []).append(p)
    groups = []
    for i, ((limit, max_tokens), members) in enumerate(by_key.items()):
        dataset_args: dict[str, Any] = {}
        for p in members:
            args: dict[str, Any] = {"subset_list": list(p.subsets), "few_shot_num": p.spec.few_shot}
            if p.pack is not None:
                args["local_path"] = str(p.pack.path)
            dataset_args[p.evalscope_name] = args
        groups.append(
            {
                "datasets": [p.evalscope_name for p in members],
                "dataset_args": dataset_args,
                "limit": limit,
                "max_tokens": max_tokens,
                "work_dir": str(work / f"group-{i}"),
                "members": [p.spec.name for p in members],
            }
        )
    return groups


def count_lines(paths: Sequence[Path]) -> int:
    total = 0
    for p in paths:
        try:
            with p.open("rb") as fh:
                total += sum(1 for _ in fh)
        except OSError:
            pass
    return total


@dataclass(frozen=True)
class EvalOutcome:
    results: dict[str, BenchmarkResult]
    work: Path
    wall_s: float
    failed: dict[str, str]  # benchmark -> why it has no result (only when EvalScope stopped part-way)


def evaluate(
    ctx: RunContext,
    plans: Sequence[BenchPlan],
    base: ResolvedModel,
    adapter: Path | None,
    *,
    gpu: bool,
    torch_dtype: str,
    offline: bool,
    seed: int,
    work_name: str = "eval",
) -> EvalOutcome:
    work = ctx.tool_dir / work_name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model_args: dict[str, Any] = {
        "precision": f"torch.{torch_dtype}" if gpu else "torch.float32",
        "device_map": "auto" if gpu else "cpu",
    }
    model_path = base.path
    if adapter is not None:
        model_path = _prepare_adapter(adapter, base, ctx.scratch / f"{work_name}-adapter")
        # Swift checkpoints carry no tokenizer: EvalScope must take it from the base model.
        model_args["tokenizer_path"] = str(base.path)
    groups = _groups(plans, work)
    spec = {
        "model": str(model_path),
        "model_id": MODEL_ID,
        "model_args": model_args,
        "dataset_hub": "huggingface" if ctx.config.hub == "huggingface" else "modelscope",
        "batch_size": 8,
        "seed": seed,
        "groups": groups,
    }
    spec_path = ctx.scratch / f"{work_name}-spec.json"
    spec_path.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
    total = sum(p.expected_total or 0 for p in plans)
    known_total = all(p.expected_total is not None for p in plans)
    last = {"n": -1, "t": 0.0}

    def tick() -> None:
        if not known_total:
            return
        now = time.monotonic()
        if now - last["t"] < 0.5:
            return
        last["t"] = now
        done = count_lines(list(work.glob(f"group-*/predictions/{MODEL_ID}/*.jsonl")))
        if done != last["n"]:
            last["n"] = done
            ctx.bus.emit("progress", phase="eval", step=min(done, total), total=max(total, 1))

    proc = Supervised(
        ctx.tool_argv([ctx.config.python, "-m", "runner_agent.eval_worker", str(spec_path)]),
        env=ctx.tool_env(offline=offline),
        log_path=ctx.logs / ("evalscope.log" if work_name == "eval" else f"evalscope-{work_name}.log"),
    )
    t0 = time.monotonic()
    rc = run_supervised(proc, ctx.watchdog, what="evaluation", tick=tick, tick_s=0.25, grace_s=ctx.config.grace_s)
    wall = time.monotonic() - t0
    results: dict[str, BenchmarkResult] = {}
    failed: dict[str, str] = {}
    for group in groups:
        gdir = Path(group["work_dir"])
        for p in (pl for pl in plans if pl.spec.name in group["members"]):
            report = gdir / "reports" / MODEL_ID / f"{p.evalscope_name}.json"
            if not report.is_file():
                failed[p.spec.name] = "EvalScope wrote no report"
                continue
            results[p.spec.name] = collect(p, gdir)
    if rc != 0 or failed:
        lines = proc.tail()
        msg = f"EvalScope failed ({describe_exit(rc)}): {headline(lines)}" if rc != 0 else "EvalScope stopped part-way"
        if not results:
            raise AgentError(msg, detail="\n".join(lines))
        for name in failed:
            failed[name] = msg
    return EvalOutcome(results, work, wall, failed)


def _accuracy(review: Mapping[str, Any]) -> float:
    score = (review.get("sample_score") or {}).get("score") or {}
    value = score.get("value") or {}
    if "accuracy" in value:
        acc = value["accuracy"]
    elif value:
        acc = next(iter(value.values()))
    else:
        raise AgentError("an EvalScope review has no score value")
    if not isinstance(acc, (int, float)) or not math.isfinite(acc):
        raise AgentError(f"an EvalScope review has a non-numeric score {acc!r}")
    return float(acc)


def _user_text(review: Mapping[str, Any]) -> str:
    for msg in review.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise AgentError(f"{path}: line {lineno} is not JSON (EvalScope output corrupted?)") from None
        if isinstance(rec, dict):
            out.append(rec)
    return out


def collect(p: BenchPlan, gdir: Path) -> BenchmarkResult:
    """Per-question outcomes from `reviews/`, keyed `"<subject>/<original row id>"`, verified row by row."""
    questions: dict[str, bool] = {}
    subsets: dict[str, SubsetScore] = {}
    for subset in p.subsets:
        path = gdir / "reviews" / MODEL_ID / f"{p.evalscope_name}_{subset}.jsonl"
        if not path.is_file():
            raise AgentError(f"EvalScope wrote no reviews for {p.spec.name}/{subset} (expected {path})")
        reviews = sorted(_read_jsonl(path), key=lambda r: int(r.get("index", -1)))
        rows = p.pack.eval_rows(subset) if p.pack is not None else ()
        expected = p.expected(subset) if p.pack is not None else None  # hub data: the row count is not known here
        if not reviews:
            raise AgentError(f"{p.spec.name}/{subset}: EvalScope reviewed no questions")
        if expected is not None and len(reviews) != expected:
            raise AgentError(
                f"{p.spec.name}/{subset}: EvalScope reviewed {len(reviews)} questions, expected {expected}"
            )
        correct = 0
        for review in reviews:
            index = review.get("index")
            if not isinstance(index, int) or index < 0:
                raise AgentError(f"{path}: a review has no valid index")
            meta = (review.get("sample_score") or {}).get("sample_metadata") or {}
            if p.pack is not None:
                if index >= len(rows):
                    raise AgentError(f"{p.spec.name}/{subset}: review index {index} beyond the {len(rows)} rows")
                row = rows[index]
                _verify(p.spec.name, subset, index, row, review, meta)
                qid = row.qid
            else:
                rid = meta.get("id")
                qid = f"{subset}/{rid if rid not in (None, '') else index}"
            if qid in questions:
                raise AgentError(f"{p.spec.name}: question {qid} reviewed twice")
            right = _accuracy(review) >= 1.0
            questions[qid] = right
            correct += int(right)
        subsets[subset] = SubsetScore(n=len(reviews), correct=correct)
    result = BenchmarkResult(benchmark=p.spec.name, subsets=subsets, questions=questions, config_hash=p.config_hash)
    _check_report(p, gdir, result)
    return result


def _verify(
    bench: str, subset: str, index: int, row: packs.McqRow, review: Mapping[str, Any], meta: Mapping[str, Any]
) -> None:
    """The review at `index` must be the row we think it is: same question text, same answer, same id (C-Eval)."""
    where = f"{bench}/{subset} review {index} (row {row.row_id})"
    target = review.get("target")
    letters = target if isinstance(target, list) else [target]
    if [str(x) for x in letters] != [row.answer]:
        raise AgentError(f"question mapping check failed for {where}: target {target!r} != answer {row.answer!r}")
    if row.question.strip() and row.question.strip() not in _user_text(review):
        raise AgentError(f"question mapping check failed for {where}: the prompt does not contain the question")
    if "id" in meta and meta["id"] not in (None, "") and str(meta["id"]) != row.row_id:
        raise AgentError(f"question mapping check failed for {where}: EvalScope id {meta['id']!r}")


def _check_report(p: BenchPlan, gdir: Path, result: BenchmarkResult) -> None:
    """Our per-subject counts must agree with the report EvalScope itself wrote."""
    path = gdir / "reports" / MODEL_ID / f"{p.evalscope_name}.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        metric = report["metrics"][0]
        reported = {s["name"]: (int(s["num"]), float(s["score"])) for c in metric["categories"] for s in c["subsets"]}
    except (OSError, KeyError, IndexError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise AgentError(f"cannot read EvalScope's report {path}: {exc}") from None
    for subset, score in result.subsets.items():
        num, value = reported.get(subset, (-1, -1.0))
        # EvalScope rounds report scores to 4 decimals (5/19 is written 0.2632): allow that rounding and no more,
        # which still tells apart one question in 10,000.
        if num != score.n or abs(value - score.score) > 5e-5 + 1e-9:
            raise AgentError(
                f"{p.spec.name}/{subset}: per-question outcomes ({score.correct}/{score.n}) disagree with "
                f"EvalScope's report ({value:.4f} of {num})"
            )
