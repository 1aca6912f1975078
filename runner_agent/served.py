"""Served evaluation: one `swift deploy` per job (the base model loaded once, each adapter a named LoRA module on it)
and EvalScope against its OpenAI-compatible API, with the same questions, prompts and checks as the native path.

The server listens on the loopback only, behind a per-job API key. Before any score is trusted the agent checks that
every adapter name really routes to its adapter (its next-token distribution differs from the base model's on the
same prompt): the `model` field of a response names the base model even when an adapter answered, so it proves
nothing. When the server cannot start, `evaluate` raises `ServerUnavailable` and the caller falls back to the native
path (runner_agent/evaluation.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commands.jobspec import content_hash
from commands.results import BenchmarkResult

from .context import RunContext
from .errors import AgentError
from .evaluation import MODEL_ID, BenchPlan, EvalOutcome, _groups, _prepare_adapter, collect, count_lines
from .models import ResolvedModel
from .procs import Supervised, describe_exit, headline, run_supervised

BASE_NAME = "base"  # the served name of the untuned base model
START_TIMEOUT_S = 600.0  # a 7B model on a busy runner loads in well under this; vLLM's CUDA graphs take a while
PROBE_PROMPT = "Question: which letter comes after B?\nA. A\nB. B\nC. C\nD. D\nAnswer:"


class ServerUnavailable(AgentError):
    """The inference server could not be started or did not answer: the native path is used instead."""


def served_backend(gpu: bool, vllm_installed: bool) -> str:
    """The serving engine: vLLM when a GPU and vLLM are there, else ms-swift's transformers engine."""
    return "vllm" if gpu and vllm_installed else "transformers"


def vllm_installed(python: str, env: Mapping[str, str]) -> bool:
    """Whether the tools' Python can import vLLM (asked in a child: the agent itself never imports ML packages)."""
    import subprocess

    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        proc = subprocess.run([python, "-c", probe], env=dict(env), capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def identity_backend(backend: str) -> str:
    """The backend as it enters a result's config hash: `served-<engine>`."""
    return f"served-{backend}"


def served_config_hash(plan_hash: str, backend: str) -> str:
    """A served result's config hash: the plan's (questions, prompts, limits) plus the engine that answered, so a
    served score is never silently compared with a native one, nor a vLLM one with a transformers one."""
    return content_hash({"config": plan_hash, "backend": identity_backend(backend)})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy_argv(swift: str, base: ResolvedModel, model_type: str, template: str, adapters: Mapping[str, Path], *,
                backend: str, torch_dtype: str, port: int, api_key: str, max_batch_size: int,
                max_model_len: int | None = None) -> list[str]:
    """The `swift deploy` command line: loopback only, an API key, the base model under BASE_NAME, each adapter
    under its own name, greedy decoding left to the requests."""
    argv = [
        swift, "deploy",
        "--model", str(base.path),
        "--model_type", model_type,
        "--template", template,
        "--infer_backend", backend,
        "--torch_dtype", torch_dtype,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--api_key", api_key,
        "--served_model_name", BASE_NAME,
        "--verbose", "false",
        "--log_interval", "-1",
    ]  # fmt: skip
    if adapters:
        argv += ["--adapters", *[f"{name}={path}" for name, path in adapters.items()]]
    if backend == "vllm":
        # ms-swift turns vLLM's LoRA support on by itself when adapters are given (enable_lora, max_loras = their
        # number); the rank limit must cover the largest adapter.
        argv += ["--vllm_max_lora_rank", str(lora_rank_limit(adapters.values())), "--vllm_gpu_memory_utilization",
                 "0.85"]
        if max_model_len:
            argv += ["--vllm_max_model_len", str(max_model_len)]
    else:
        # ms-swift 4.6's transformers engine passes one adapter name for a whole batch once any adapter is loaded
        # (`_get_adapter_names` returns a 1-element list: "Length of `adapter_names` should be the same as the
        # number of inputs"), so with adapters it must generate one request at a time.
        argv += ["--max_batch_size", str(1 if adapters else max_batch_size)]
    return argv


def lora_rank_limit(adapters: Iterable[Path]) -> int:
    """vLLM's `max_lora_rank`: one of the sizes it supports (8 … 512), at least every adapter's `r`."""
    ranks = [16]
    for path in adapters:
        with contextlib.suppress(OSError, ValueError, TypeError):
            ranks.append(int(json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["r"]))
    need = max(ranks)
    return next((size for size in (8, 16, 32, 64, 128, 256, 320, 512) if size >= need), 512)


def _request(url: str, api_key: str, body: Mapping[str, Any] | None = None, timeout: float = 30.0) -> Any:
    data = json.dumps(body).encode("utf-8") if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


class Server:
    """One `swift deploy` process for one job: started, waited for, stopped with its whole process group."""

    def __init__(self, ctx: RunContext, argv: list[str], port: int, api_key: str, names: Sequence[str], *,
                 offline: bool) -> None:
        self.ctx = ctx
        self.port = port
        self.api_key = api_key
        self.names = list(names)
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc = Supervised(ctx.tool_argv(argv), env=ctx.tool_env(offline=offline),
                               log_path=ctx.logs / "swift-deploy.log")
        self.started_s = 0.0

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until `/v1/models` lists every expected name."""
        t0 = time.monotonic()
        self.ctx.watchdog.check()
        self.proc.start()
        deadline = t0 + timeout_s
        last_error = "no answer yet"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.proc.join_reader()
                lines = self.proc.tail()
                raise ServerUnavailable(f"swift deploy exited ({describe_exit(rc)}) before serving: {headline(lines)}",
                                        detail="\n".join(lines))
            try:
                listed = _request(f"{self.url}/models", self.api_key, timeout=5.0)
                served = {m.get("id") for m in listed.get("data", []) if isinstance(m, dict)}
                missing = [n for n in self.names if n not in served]
                if not missing:
                    self.started_s = time.monotonic() - t0
                    return
                last_error = f"it serves {sorted(str(s) for s in served)}, not {missing}"
            except (OSError, ValueError, urllib.error.URLError) as exc:
                last_error = str(getattr(exc, "reason", exc))
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerUnavailable(f"swift deploy did not serve {self.names} within {timeout_s:.0f}s "
                                        f"({last_error})")
            try:
                self.ctx.watchdog.wait(0.5)
            except BaseException:
                self.stop()
                raise

    def first_token_logprobs(self, name: str, prompt: str) -> dict[str, float]:
        """The top next-token log-probabilities `name` gives after `prompt` (greedy, one token)."""
        body = {"model": name, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1,
                "temperature": 0.0, "logprobs": True, "top_logprobs": 5, "seed": 0}
        resp = _request(f"{self.url}/chat/completions", self.api_key, body, timeout=120.0)
        content = ((resp.get("choices") or [{}])[0].get("logprobs") or {}).get("content") or []
        if not content:
            raise AgentError(f"the server returned no log-probabilities for {name!r}")
        return {str(t["token"]): float(t["logprob"]) for t in content[0].get("top_logprobs") or []}

    def stop(self) -> None:
        self.proc.stop(self.ctx.config.grace_s)


def check_routing(server: Server, adapters: Sequence[str], prompt: str = PROBE_PROMPT) -> dict[str, float]:
    """Each adapter name must answer with its adapter: its next-token distribution must differ from the base model's.

    Returns the largest log-probability difference per adapter. A difference of zero means the request ran on the
    base weights (a routing bug, or an adapter that is all zeros), and no score from it may be reported."""
    base = server.first_token_logprobs(BASE_NAME, prompt)
    out: dict[str, float] = {}
    for name in adapters:
        got = server.first_token_logprobs(name, prompt)
        tokens = set(base) | set(got)
        diff = max((abs(base.get(t, -math.inf) - got.get(t, -math.inf)) if t in base and t in got else math.inf)
                   for t in tokens)
        out[name] = diff
        if diff <= 1e-6:
            raise AgentError(f"served adapter {name!r} answers exactly like the base model (next-token "
                             f"log-probabilities identical): the server did not apply it, so its scores would be the "
                             f"base model's")
    return out


@dataclass(frozen=True)
class ServedOutcome:
    """Per served model name (BASE_NAME, adapter names): its outcome, plus how the server did."""

    outcomes: dict[str, EvalOutcome]
    backend: str
    start_s: float
    routing: dict[str, float]


def evaluate(
    ctx: RunContext,
    plans: Sequence[BenchPlan],
    base: ResolvedModel,
    model_type: str,
    template: str,
    adapters: Mapping[str, Path],
    *,
    include_base: bool,
    gpu: bool,
    backend: str,
    torch_dtype: str,
    offline: bool,
    seed: int,
    batch_size: int = 8,
) -> ServedOutcome:
    """Evaluate the base model (if `include_base`) and every adapter through one server start.

    Raises ServerUnavailable when the server cannot start (the caller then uses the native path) and AgentError for
    failures after it served (those are real: falling back would hide them)."""
    work = ctx.tool_dir / "eval"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prepared: dict[str, Path] = {}
    for name, path in adapters.items():
        if name == BASE_NAME:
            raise AgentError(f"adapter name {BASE_NAME!r} is reserved for the base model")
        prepared[name] = _prepare_adapter(path, base, ctx.scratch / "served-adapters" / name)
    names = ([BASE_NAME] if include_base else []) + list(prepared)
    if not names:
        raise AgentError("served evaluation: nothing to evaluate")
    port = free_port()
    api_key = secrets.token_hex(16)
    dtype = torch_dtype if gpu else "float32"
    argv = deploy_argv(ctx.config.swift_exe, base, model_type, template, prepared, backend=backend,
                       torch_dtype=dtype, port=port, api_key=api_key, max_batch_size=batch_size)
    server = Server(ctx, argv, port, api_key, [BASE_NAME, *prepared], offline=offline)
    ctx.bus.emit("phase", phase="eval", detail=f"starting swift deploy ({backend}) serving {', '.join(names)}")
    server.start()
    try:
        try:
            routing = check_routing(server, list(prepared))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise AgentError(f"served evaluation: the routing probe failed: {exc}") from None
        groups_by_model = {name: _groups(plans, work / name) for name in names}
        spec = {
            "eval_type": "openai_api",
            "api_url": server.url,
            "api_key": api_key,
            "dataset_hub": "huggingface" if ctx.config.hub == "huggingface" else "modelscope",
            "batch_size": batch_size,
            "seed": seed,
            "runs": [{"model": name, "model_id": MODEL_ID, "groups": groups_by_model[name]} for name in names],
        }
        spec_path = ctx.scratch / "eval-spec.json"
        spec_path.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
        per_model = sum(p.expected_total or 0 for p in plans)
        known_total = all(p.expected_total is not None for p in plans)
        total = per_model * len(names)
        last = {"n": -1, "t": 0.0}

        def tick() -> None:
            if not known_total:
                return
            now = time.monotonic()
            if now - last["t"] < 0.5:
                return
            last["t"] = now
            done = sum(count_lines(list(work.glob(f"{n}/group-*/predictions/{MODEL_ID}/*.jsonl"))) for n in names)
            if done != last["n"]:
                last["n"] = done
                ctx.bus.emit("progress", phase="eval", step=min(done, total), total=max(total, 1))

        proc = Supervised(ctx.tool_argv([ctx.config.python, "-m", "runner_agent.eval_worker", str(spec_path)]),
                          env=ctx.tool_env(offline=offline), log_path=ctx.logs / "evalscope.log")
        t0 = time.monotonic()
        rc = run_supervised(proc, ctx.watchdog, what="evaluation", tick=tick, tick_s=0.25,
                            grace_s=ctx.config.grace_s)
        wall = time.monotonic() - t0
    finally:
        server.stop()
    outcomes: dict[str, EvalOutcome] = {}
    for name in names:
        results: dict[str, BenchmarkResult] = {}
        failed: dict[str, str] = {}
        for group in groups_by_model[name]:
            gdir = Path(group["work_dir"])
            for p in (pl for pl in plans if pl.spec.name in group["members"]):
                if not (gdir / "reports" / MODEL_ID / f"{p.evalscope_name}.json").is_file():
                    failed[p.spec.name] = "EvalScope wrote no report"
                    continue
                res = collect(p, gdir)
                results[p.spec.name] = BenchmarkResult(res.benchmark, res.subsets, res.questions,
                                                       served_config_hash(p.config_hash, backend))
        if rc != 0 or failed:
            lines = proc.tail()
            msg = (f"EvalScope failed ({describe_exit(rc)}): {headline(lines)}" if rc != 0
                   else "EvalScope stopped part-way")
            if not results:
                raise AgentError(f"{msg} (served model {name!r})", detail="\n".join(lines))
            for bench in failed:
                failed[bench] = msg
        outcomes[name] = EvalOutcome(results, work / name, wall, failed)
    return ServedOutcome(outcomes, backend, server.started_s, routing)


@dataclass(frozen=True)
class JobEval:
    """A job's evaluation, whichever path produced it: the evaluated model's outcome, the base model's when the job
    asked for it (`eval_base`), and what the manifest records about the path (backend, server start, fallback)."""

    outcome: EvalOutcome
    base: EvalOutcome | None
    manifest: dict[str, Any]

    @property
    def backend(self) -> str:
        """The path that really scored the models ("native" / "served"), reported with every `eval_result`: a
        served job that fell back was scored natively, and the bot keys its results so."""
        return "served" if str(self.manifest.get("eval_backend", "")).startswith("served") else "native"


def evaluate_job(
    ctx: RunContext,
    job: Any,
    plans: Sequence[BenchPlan],
    model: ResolvedModel,
    adapter: Path | None,
    *,
    gpu: bool,
    offline: bool,
    native: Any,
) -> JobEval:
    """The job's evaluation through the path it asks for. `native(adapter, work_name)` runs the native path.

    A served job whose server cannot start falls back to the native path, says so in the log and the manifest, and
    its results carry the native config hash (so they are never taken for served ones)."""
    want_base = bool(job.eval_base) and adapter is not None
    if job.eval_backend != "served":
        outcome = native(adapter, "eval")
        base = native(None, "eval-base") if want_base else None
        return JobEval(outcome, base, {"eval_backend": "native"})
    backend = served_backend(gpu, gpu and vllm_installed(ctx.config.python, ctx.tool_env(offline=True)))
    adapters = {"adapter": adapter} if adapter is not None else {}
    try:
        served = evaluate(ctx, plans, model, job.model.model_type, job.model.template, adapters,
                          include_base=adapter is None or want_base, gpu=gpu, backend=backend,
                          torch_dtype=job.hyper.torch_dtype, offline=offline, seed=job.hyper.seed)
    except ServerUnavailable as exc:
        note = f"served evaluation unavailable ({exc.reason}); evaluated on the native path instead"
        ctx.bus.emit("phase", phase="eval", detail=note)
        outcome = native(adapter, "eval")
        base = native(None, "eval-base") if want_base else None
        return JobEval(outcome, base, {"eval_backend": "native", "eval_backend_requested": "served",
                                       "eval_backend_note": note})
    main = served.outcomes["adapter" if adapter is not None else BASE_NAME]
    base = served.outcomes.get(BASE_NAME) if want_base else None
    return JobEval(main, base, {"eval_backend": identity_backend(served.backend),
                                "eval_server_start_s": round(served.start_s, 2),
                                "eval_adapter_check": {k: (round(v, 6) if math.isfinite(v) else "disjoint")
                                                       for k, v in served.routing.items()}})
