"""The orchestrator of one run: checks everything up front, then download → train → evaluate → report, streaming
events all along, and always ends with exactly one `finished` event, a clean scratch space and an exit code.

Exit codes: 0 succeeded, 1 failed, 130 cancelled by SIGINT, 143 cancelled by SIGTERM or the wall-clock limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from commands.catalog import Catalog
from commands.events import EVENTS_FILE
from commands.jobspec import JobSpec, SpecError, Toolchain, job_from_json, to_dict
from commands.results import BenchmarkResult, Results
from configs import load_catalog

from . import checkpoints, evaluation, models, report, served, training
from . import datasets as datasets_mod
from .context import AgentConfig, RunContext
from .errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, AgentError, Cancelled
from .procs import Watchdog
from .sinks import EventBus, HttpSink, JsonlSink, Sink, TerminalSink
from .verify_job import expired, replayed

SCRATCH_OWNER = ".tunebot-owner"
# What a checkpoint holds besides the adapter (or model): the trainer's own state, kept for resuming (and uploaded
# as the checkpoint), never part of the adapter artifact, whose hash would otherwise change with the optimizer.
TRAINER_STATE_FILES = ("training_args.bin", "trainer_state.json", "README.md", "optimizer.pt", "scheduler.pt",
                       "scaler.pt", "rng_state.pth")
_GIB = 1 << 30


# Files the NVIDIA driver creates once it is loaded; a parameter of gpu_available so a test can point it elsewhere.
NVIDIA_MARKERS = (Path("/dev/nvidiactl"), Path("/proc/driver/nvidia/version"))


def gpu_available(env: dict[str, str] | Any, markers: tuple[Path, ...] = NVIDIA_MARKERS) -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch (the parent process stays light)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any(marker.exists() for marker in markers)


# --- scratch space -----------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_scratch(root: Path) -> list[Path]:
    """Remove scratch dirs whose owning agent is gone (killed with SIGKILL, machine rebooted)."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    host = socket.gethostname()
    for d in root.iterdir():
        owner = d / SCRATCH_OWNER
        try:
            h, _, pid = owner.read_text(encoding="utf-8").strip().partition(":")
        except OSError:
            continue
        if h == host and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


SHORT_TMP_LIMIT = 48  # leaves room for pymp-XXXXXXXX/listener-XXXXXXXX under 107 bytes


@contextlib.contextmanager
def scratch_space(root: Path, run_id: str) -> Iterator[Path]:
    """A private directory for one run, removed at the end whatever happens."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale_scratch(root)
    path = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=root))
    (path / SCRATCH_OWNER).write_text(f"{socket.gethostname()}:{os.getpid()}\n", encoding="utf-8")
    short: Path | None = None
    if len(str(path / "tmp")) > SHORT_TMP_LIMIT:
        # The tools' TMPDIR holds multiprocessing's AF_UNIX sockets, whose paths may not exceed 107 bytes: under a
        # deep cache directory `datasets.map` dies with "AF_UNIX path too long". Give them a short one instead.
        short = Path(tempfile.mkdtemp(prefix=f"tb-{run_id[:16]}-"))
        (path / "tmp").symlink_to(short, target_is_directory=True)
    try:
        yield path
    finally:
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)


# --- signals -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cancel_on_signals(watchdog: Watchdog) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        watchdog.cancel(f"cancelled by {name}", EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM)

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM.value, signal.SIGINT.value):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (tests calling run() from a thread): no signal handling
            pass
    try:
        yield
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)


# --- the run -----------------------------------------------------------------------------------------------------


@dataclass
class RunState:
    """What has been produced so far, so a failure after training can still report what exists."""

    artifacts: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    benchmarks: dict[str, BenchmarkResult] = field(default_factory=dict)
    base_benchmarks: dict[str, BenchmarkResult] = field(default_factory=dict)  # the untuned model (job.eval_base)
    manifest: dict[str, Any] = field(default_factory=dict)
    loss_png: str | None = None


def _best_effort_identity(text: str) -> tuple[str, dict[str, Any] | None]:
    """Run id and callback of a job that failed validation, so its failure can still be reported."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return "invalid-job", None
    if not isinstance(raw, dict):
        return "invalid-job", None
    run_id = raw.get("run_id")
    if not isinstance(run_id, str) or not run_id or not all(c.isalnum() or c in "-_." for c in run_id):
        run_id = "invalid-job"
    cb = raw.get("callback")
    if isinstance(cb, dict) and isinstance(cb.get("url"), str) and isinstance(cb.get("token"), str):
        return run_id, {"url": cb["url"], "token": cb["token"]}
    return run_id, None


def _check_out_dir(out: Path) -> str | None:
    if out.exists() and not out.is_dir():
        return f"--out {out} exists and is not a directory"
    for name in ("results.json", "events.jsonl"):
        if (out / name).exists():
            return f"--out {out} already holds a run ({name}); choose a new directory so nothing is overwritten"
    return None


def _holds_adapter(run_dir: Path) -> bool:
    return (run_dir / "adapter" / "adapter_config.json").is_file() or (run_dir / "adapter_config.json").is_file()


def adapter_run_dir(root: Path) -> Path:
    """The earlier run's output directory inside `root` (`--adapter-dir`): `root` itself when it holds
    `adapter/adapter_config.json`, else its one subdirectory that does (a downloaded artifact may nest a level)."""
    if not root.is_dir():
        raise AgentError(f"--adapter-dir {root}: not a directory")
    if _holds_adapter(root):
        return root
    nested = sorted(p for p in root.iterdir() if p.is_dir() and (p / "adapter" / "adapter_config.json").is_file())
    if len(nested) == 1:
        return nested[0]
    if nested:
        names = ", ".join(p.name for p in nested)
        raise AgentError(f"--adapter-dir {root}: several run outputs hold an adapter ({names}); name one of them")
    hint = " (it holds model/: a full fine-tune is evaluated as a model, not as an adapter)" \
        if (root / "model").is_dir() else ""
    raise AgentError(f"--adapter-dir {root}: no adapter there (expected {root}/adapter/adapter_config.json){hint}")


def with_adapter_dir(job: JobSpec, root: Path) -> JobSpec:
    """The job with its adapter read from `root`, an earlier run's output directory, instead of `adapter.path`."""
    if job.adapter is None:
        raise AgentError(f"--adapter-dir {root}: job {job.run_id} evaluates no adapter (its spec has no `adapter`)")
    return dataclasses.replace(job, adapter=dataclasses.replace(job.adapter, path=str(adapter_run_dir(root))))


def verify_adapter_provenance(adapter: Path, run_id: str, expected: str | None) -> None:
    """Refuse an adapter whose files are not the ones its training run reported (the signed job carries that hash):
    a changed byte means it is not the artifact the bot recorded, and its scores would be someone else's."""
    if not expected:
        return
    digest, _ = report.tree_hash(adapter)
    if digest != expected:
        raise AgentError(f"adapter of run {run_id} refused: its files hash to {digest[:16]}…, but run {run_id} "
                         f"reported {expected[:16]}… when it saved it (adapter.sha256 in the signed job); the "
                         f"artifact was changed or is another run's: re-train, or evaluate the original artifact")


def verify_toolchain(toolchain: Toolchain | None, installed: Mapping[str, str | None]) -> None:
    """Refuse a job planned for other ms-swift / EvalScope versions than this runner has: its result key names the
    versions (commands/recipe.py), and scores made with others would be filed under it."""
    if toolchain is None:
        return
    wrong = [f"{dist} {want} (this runner has {installed.get(dist) or 'none'})"
             for dist, want in (("ms-swift", toolchain.ms_swift), ("evalscope", toolchain.evalscope))
             if installed.get(dist) != want]
    if wrong:
        raise AgentError(f"toolchain mismatch: the job was planned for {' and '.join(wrong)}; results made with "
                         f"other versions would be filed under the wrong key. Install the versions in "
                         f"configs/toolchain.yaml on this runner (its image), or update that file and the bot together")


def _bench_manifest(p: evaluation.BenchPlan) -> dict[str, Any]:
    """What one benchmark evaluated: settings, the questions' content hash and where they came from."""
    entry: dict[str, Any] = {
        "evalscope": p.evalscope_name, "subsets": list(p.subsets), "limit": p.limit, "few_shot": p.spec.few_shot,
        "max_tokens": p.spec.max_tokens, "data_sha256": p.pack.sha256 if p.pack else None,
        "data": str(p.pack.source) if p.pack else f"hub:{p.evalscope_name}", "config_hash": p.config_hash,
    }
    if p.spec.data_dir is not None and p.pack is not None:
        entry["data"] = f"repo:{p.spec.data_dir}"
        entry["files"] = {path: digest for path, digest in p.pack.files}
        entry["questions"] = {s: len(p.pack.eval_rows(s)) for s in p.subsets}
    return entry


def _make_sinks(cfg: AgentConfig, callback: dict[str, Any] | None, jsonl: Path | None) -> list[Sink]:
    sinks: list[Sink] = [TerminalSink(tty=cfg.tty, quiet=cfg.quiet)]
    if jsonl is not None:
        sinks.append(JsonlSink(jsonl, token=(callback or {}).get("token")))
    if callback is not None and callback.get("url"):
        sinks.append(HttpSink(callback["url"], callback["token"], final_deadline_s=cfg.callback_deadline_s))
    return sinks


def _free_gib(path: Path) -> float:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free / _GIB


class Plotter:
    """The loss-curve helper process: started early, fed the points at the end, killed if the run stops first."""

    def __init__(self, argv: list[str], png: Path, env: dict[str, str]) -> None:
        self.argv = argv
        self.png = png
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.proc is None:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env=self.env, start_new_session=True)

    def send(self, data: dict[str, Any]) -> None:
        """Hand over the points; the helper renders while the caller does other work."""
        self.start()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(data).encode("utf-8"))
            self.proc.stdin.close()
        except OSError:
            self.stop()

    def wait(self, timeout: float = 60.0) -> bool:
        if self.proc is None:
            return False
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return False
        return self.proc.returncode == 0 and self.png.is_file()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Runner:
    """Runs one job. `run()` returns the exit code; everything it reports goes through the event bus."""

    def __init__(self, cfg: AgentConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock

    def run(self, job_path: Path) -> int:
        cfg = self.cfg
        problem = _check_out_dir(cfg.out)
        try:
            text = job_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            text = ""
            problem = problem or f"cannot read job file {job_path}: {getattr(exc, 'strerror', None) or exc}"
        job = None
        if problem is None:
            try:
                job = job_from_json(text)
            except SpecError as exc:
                problem = f"malformed job {job_path}: {exc}"
        if job is not None and cfg.adapter_dir is not None:
            try:
                job = with_adapter_dir(job, cfg.adapter_dir)
            except AgentError as exc:
                job, problem = None, exc.full_reason()
        if job is None:
            return self._fail_early(text, problem or "malformed job")
        # A replayed attempt reports to nobody: its callback token belongs to a run that already had its attempt.
        replay = replayed(cfg.run_attempt)
        if replay is not None:
            return self._fail_early(text, replay, report=False)
        stale = expired(job, self.clock())
        if stale is not None:
            return self._fail_early(text, stale)
        cfg.out.mkdir(parents=True, exist_ok=True)
        # Only node 0 of a multi-node job reports to the bot: the others' events would interleave with its sequence.
        sinks = _make_sinks(cfg, {"url": job.callback.url, "token": job.callback.token}
                            if job.callback and cfg.node_rank == 0 else None, cfg.out / EVENTS_FILE)
        bus = EventBus(job.run_id, sinks, clock=self.clock, heartbeat_s=cfg.heartbeat_s)
        bus.start()
        t0 = time.monotonic()
        watchdog = Watchdog(t0 + job.limits.wall_clock_s, job.limits.wall_clock_s)
        for sink in sinks:
            if isinstance(sink, HttpSink):  # the bot's answer to an event can say the run was cancelled
                sink.on_cancel = lambda reason: watchdog.cancel(reason, EXIT_SIGTERM)
        state = RunState()
        code = EXIT_FAILED
        try:
            with cancel_on_signals(watchdog):
                bus.emit("accepted", kind=job.kind, model=job.model.name, host=socket.gethostname())
                try:
                    with scratch_space(cfg.cache / "scratch", job.run_id) as scratch:
                        logs = cfg.out / "logs"
                        logs.mkdir(parents=True, exist_ok=True)
                        ctx = RunContext(cfg, bus, watchdog, scratch, logs,
                                         trust_remote_code=job.model.trust_remote_code)
                        if job.model.source == "builtin" and not gpu_available(cfg.base_env):
                            ctx.cpu_threads = 1
                        status, reason = self._execute(ctx, job, state, t0)
                    code = EXIT_OK if status == "succeeded" else EXIT_FAILED
                    bus.emit("finished", status=status, reason=reason)
                except Cancelled as exc:
                    code = exc.exit_code
                    bus.emit("finished", status="cancelled", reason=exc.reason)
                except AgentError as exc:
                    code = EXIT_FAILED
                    bus.emit("finished", status="failed", reason=exc.full_reason()[:4000])
        except Exception as exc:  # a bug: still end with a finished event and a non-zero exit
            code = EXIT_FAILED
            detail = "".join(traceback.format_exception(exc)[-6:])
            with contextlib.suppress(RuntimeError):
                bus.emit("finished", status="failed", reason=f"internal error in the agent: {exc!r}\n{detail}"[:4000])
        finally:
            bus.close()
        return code

    def _fail_early(self, text: str, problem: str, *, report: bool = True) -> int:
        """A run that cannot start (bad job, unusable --out): one `finished: failed`, wherever it can go (with
        `report=False`, only to the terminal and --out, never to the job's callback)."""
        run_id, callback = _best_effort_identity(text)
        if not report:
            callback = None
        jsonl = None
        if _check_out_dir(self.cfg.out) is None:
            with contextlib.suppress(OSError):
                self.cfg.out.mkdir(parents=True, exist_ok=True)
                jsonl = self.cfg.out / EVENTS_FILE
        sinks = _make_sinks(self.cfg, callback, jsonl)
        bus = EventBus(run_id, sinks, clock=self.clock, heartbeat_s=0)
        bus.start()
        try:
            bus.emit("finished", status="failed", reason=problem)
        finally:
            bus.close()
        return EXIT_FAILED

    # --- phases ---------------------------------------------------------------------------------------------------

    def _execute(self, ctx: RunContext, job: JobSpec, state: RunState, t0: float) -> tuple[str, str | None]:
        cfg = self.cfg
        catalog: Catalog = load_catalog()
        gpu = gpu_available(cfg.base_env)
        vers = report.versions()
        verify_toolchain(job.toolchain, vers)
        state.manifest = {
            "run_id": job.run_id,
            "repo": job.repo,
            "sha": job.sha,
            "kind": job.kind,
            "job_sha256": report.job_identity(job),
            "seed": job.hyper.seed,
            "tuner": job.tuner,
            "hyper": to_dict(job.hyper),
            "resources": to_dict(job.resources) if job.resources is not None else None,
            "versions": vers,
            "hardware": report.hardware(gpu),
            "offline": cfg.offline,
            "hub": cfg.hub,
            "endpoint": cfg.endpoint,
            "started_at": self.clock(),
        }

        # 1. Everything that can be checked without heavy work, before any of it starts.
        # The tools (ms-swift, EvalScope) may write only their run's own directories, never the shared cache.
        ctx.confine_tools()
        state.manifest["tool_sandbox"] = {"confined": ctx.sandbox_abi > 0, "mode": cfg.tool_sandbox,
                                          "how": ctx.sandbox_note}
        if ctx.sandbox_abi < 1:
            ctx.bus.emit("phase", phase="download", detail=f"tools can write the shared cache: {ctx.sandbox_note}")
        if job.trains:
            assert job.tuner is not None
            training.validate_hyper(job.hyper, job.tuner)
        prepared = []
        if job.trains:
            prepared = datasets_mod.prepare(job.datasets, repo_dir=cfg.repo_dir, bench_data=cfg.bench_data,
                                            cache=cfg.cache / "datasets")
            state.manifest["datasets"] = [
                {"name": d.name, "source": d.source, "id": d.swift_arg if d.source != "builtin" else d.name,
                 "sha256": d.sha256, "rows": d.rows}
                for d in prepared
            ]
        plans: list[evaluation.BenchPlan] = []
        if job.evaluates:
            plans = evaluation.plan(job.benchmarks, catalog, bench_data=cfg.bench_data, pack_cache=cfg.cache / "packs",
                                    offline=cfg.offline, evalscope_version=str(vers.get("evalscope")),
                                    repo_dir=cfg.repo_dir)
            state.manifest["benchmarks"] = {p.spec.name: _bench_manifest(p) for p in plans}
        input_adapter = self._input_adapter(job) if job.adapter is not None else None
        self._check_disk(ctx, job, catalog)
        resume_from = self._resume_checkpoint(ctx, job) if job.resume is not None else None

        # 2. The base model.
        ctx.bus.emit("phase", phase="download", detail=f"model {job.model.name}")
        model = models.acquire(ctx, job.model)
        if model.revision != job.model.revision and model.source in ("huggingface", "modelscope"):
            ctx.bus.emit("phase", phase="download", detail=f"model {job.model.name}: {model.repo} @ {model.revision}")
        state.manifest["model"] = {**model.to_manifest(), "model_type": job.model.model_type,
                                   "template": job.model.template}

        # 3. Training.
        adapter_dir: Path | None = input_adapter
        eval_model = model
        if job.trains and cfg.node_rank > 0:
            # A worker node of a multi-node job: it trains its share; node 0 saves, evaluates and reports.
            ctx.bus.emit("phase", phase="train", detail=f"node {cfg.node_rank} of {job.model.name} training")
            training.train(ctx, job, model, prepared, gpu=gpu, place=self._place(), resume_from=resume_from,
                           offline=cfg.offline or all(d.source in ("builtin", "local") for d in prepared))
            return "succeeded", None
        if job.trains:
            trained = self._train(ctx, job, model, prepared, state, gpu, resume_from)
            if job.tuner == "full":
                eval_model = dataclasses.replace(model, path=trained)
            else:
                adapter_dir = trained
        elif input_adapter is not None and job.adapter is not None:
            digest, _ = report.tree_hash(input_adapter)
            state.manifest["adapter"] = {"sha256": digest, "source": "input", "run_id": job.adapter.run_id,
                                         "path": str(input_adapter)}

        # 4. Evaluation.
        failed_reason = None
        if job.evaluates:
            detail = ", ".join(f"{p.spec.name}[{','.join(p.subsets)}]" for p in plans)
            ctx.bus.emit("phase", phase="eval", detail=detail)
            eval_offline = cfg.offline or all(p.pack is not None for p in plans)

            def native(adapter: Path | None, work_name: str) -> evaluation.EvalOutcome:
                return evaluation.evaluate(ctx, plans, eval_model, adapter, gpu=gpu,
                                           torch_dtype=job.hyper.torch_dtype, offline=eval_offline,
                                           seed=job.hyper.seed, work_name=work_name)

            used_backend = "native"
            try:
                # Native or served (runner_agent/served.py), as the job asks; base model too when it asks.
                job_eval = served.evaluate_job(ctx, job, plans, eval_model, adapter_dir, gpu=gpu,
                                               offline=eval_offline, native=native)
                outcome = job_eval.outcome
                used_backend = job_eval.backend
                state.manifest.update(job_eval.manifest)
                if job_eval.base is not None:
                    state.base_benchmarks.update(job_eval.base.results)
                    self._keep_eval_details(ctx, job_eval.base.work, state, dest_name="eval-base",
                                            artifact="eval_details_base")
            except AgentError as exc:
                if not job.trains:
                    raise
                failed_reason = f"evaluation failed: {exc.full_reason()}"
                outcome = None
            # The path that really scored (a served job may have fallen back to native), said for served jobs only:
            # the protocol's versioning rule (commands/events.py) keeps the field to jobs of bots that read it.
            said_backend = {"backend": used_backend} if job.eval_backend == "served" else {}
            if outcome is not None:
                self._keep_eval_details(ctx, outcome.work, state)
                state.benchmarks.update(outcome.results)
                state.manifest["eval_wall_s"] = round(outcome.wall_s, 2)
                for name, res in sorted(outcome.results.items()):
                    # The bot compares runs question by question: it needs the counts and the paired outcomes.
                    # The model as fetched: the hub commit its revision resolved to (a branch or tag moves).
                    extra: dict[str, Any] = {"manifest": self._inputs(ctx, job, model, prepared, state)}
                    bench_plan = next(p for p in plans if p.spec.name == name)
                    if bench_plan.spec.data_dir is not None:
                        # The repository's questions: the bot keys the result on the commit, and learns here which
                        # file contents that commit held.
                        extra["manifest"]["benchmark_data"] = {name: _bench_manifest(bench_plan)}
                    ctx.bus.emit("eval_result", benchmark=name, score=res.score, n=res.n, correct=res.correct,
                                 subsets={k: {"n": v.n, "correct": v.correct} for k, v in sorted(res.subsets.items())},
                                 questions=dict(res.questions), config_hash=res.config_hash,
                                 **said_backend, **extra)
                for name, res in sorted(state.base_benchmarks.items()):
                    # The untuned base model, from the same server start (job.eval_base): the bot compares with it
                    # without a second run.
                    ctx.bus.emit("eval_result", benchmark=name, score=res.score, n=res.n, correct=res.correct,
                                 subsets={k: {"n": v.n, "correct": v.correct} for k, v in sorted(res.subsets.items())},
                                 questions=dict(res.questions), config_hash=res.config_hash, model="base",
                                 **said_backend)
                if outcome.failed:
                    failed_reason = "; ".join(f"{k}: {v}" for k, v in sorted(outcome.failed.items()))

        # 5. Outputs.
        ctx.watchdog.check()
        status = "succeeded" if failed_reason is None else "partial"
        state.manifest["finished_at"] = self.clock()
        state.manifest["wall_s"] = round(time.monotonic() - t0, 2)
        results = Results(run_id=job.run_id, status=status, benchmarks=state.benchmarks, train=state.train,
                          manifest=state.manifest, artifacts=tuple(state.artifacts),
                          base_benchmarks=state.base_benchmarks)
        report.write_atomic(cfg.out / "results.json", results.to_json() + "\n")
        summary = report.summary_markdown(results, job, reason=failed_reason, loss_png=state.loss_png)
        report.write_atomic(cfg.out / "summary.md", summary)
        if cfg.github_step_summary is not None:
            with contextlib.suppress(OSError), cfg.github_step_summary.open("a", encoding="utf-8") as fh:
                fh.write(summary + "\n")
        for name, rel in (("results", "results.json"), ("summary", "summary.md")):
            entry = report.artifact_entry(cfg.out, cfg.out / rel, name)
            ctx.bus.emit("artifact", **entry)
        if failed_reason is not None:
            raise AgentError(f"{failed_reason} (training results and the adapter were kept; results.json is partial)")
        return "succeeded", None

    def _place(self) -> training.NodePlace:
        return training.NodePlace(self.cfg.node_rank, self.cfg.master_addr, self.cfg.master_port)

    def _inputs(self, ctx: RunContext, job: JobSpec, model: models.ResolvedModel,
                prepared: list[datasets_mod.PreparedDataset], state: RunState) -> dict[str, Any]:
        """The model as fetched (the hub commit its revision resolved to) and, for a run that trained, each dataset as
        read (datasets.revisions): the signed result events carry them so the bot can show what really ran."""
        out: dict[str, Any] = {"model": {"id": model.repo, "source": model.source, "requested": job.model.revision,
                                         "revision": model.revision}}
        if job.trains:
            out["datasets"] = datasets_mod.revisions(job.datasets, prepared, ctx.tool_dir / "caches" / "hf" / "hub")
            state.manifest["dataset_revisions"] = out["datasets"]
        return out

    def _keep_eval_details(self, ctx: RunContext, work: Path, state: RunState, *, dest_name: str = "eval",
                           artifact: str = "eval_details") -> None:
        """EvalScope's per-question reviews and reports, kept so every outcome can be traced to the model's reply."""
        dest = self.cfg.out / dest_name
        for kind in ("reviews", "reports"):
            for src in sorted(work.glob(f"group-*/{kind}/{evaluation.MODEL_ID}/*")):
                if src.is_file():
                    (dest / kind).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest / kind / src.name)
        if dest.is_dir():
            entry = report.artifact_entry(self.cfg.out, dest, artifact)
            state.artifacts.append(entry)
            ctx.bus.emit("artifact", **entry)

    def _input_adapter(self, job: JobSpec) -> Path:
        ref = job.adapter
        if ref is None:
            raise AgentError("adapter: this job names no adapter")
        if not ref.path:
            raise AgentError("adapter.path: an eval job with an adapter needs the previous run's output directory")
        base = Path(ref.path).expanduser()
        base = base if base.is_absolute() else (Path.cwd() / base)
        candidates = [base / "adapter", base]
        adapter = next((c for c in candidates if (c / "adapter_config.json").is_file()), None)
        if adapter is None:
            raise AgentError(f"adapter.path: no adapter at {base} (expected {base}/adapter/adapter_config.json)")
        prev = base / "results.json"
        if prev.is_file():
            try:
                data = json.loads(prev.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                data = {}
            prev_run = data.get("run_id")
            if prev_run and prev_run != ref.run_id:
                raise AgentError(f"adapter.path: {base} holds run {prev_run!r}, but the job names run {ref.run_id!r}")
            prev_model = ((data.get("manifest") or {}).get("model") or {}).get("id")
            if prev_model and prev_model != job.model.id and prev_model != job.model.hf_id:
                raise AgentError(
                    f"adapter.path: the adapter was trained on {prev_model!r}, but this job's model is {job.model.id!r}"
                )
        verify_adapter_provenance(adapter, ref.run_id, ref.sha256)
        return adapter

    def _check_disk(self, ctx: RunContext, job: JobSpec, catalog: Catalog) -> None:
        preset = catalog.models.get(job.model.name)
        model_gib = (preset.size_b * 2e9 / _GIB) if preset else 0.0  # 16-bit weights
        need_cache = 0.0 if models.is_cached(ctx, job.model) else model_gib * 1.1
        need_work = 0.25 + (model_gib * 3 if job.tuner == "full" else model_gib * 0.05 if job.trains else 0.0)
        need = max(need_cache + need_work, self.cfg.min_free_gb)
        free = _free_gib(ctx.cache)
        if free < need:
            raise AgentError(
                f"not enough disk space: {ctx.cache} has {free:.1f} GiB free, this run needs about {need:.1f} GiB "
                f"(model download {need_cache:.1f} GiB + work space {need_work:.1f} GiB); free some space or point "
                f"--cache / TUNEBOT_CACHE at a larger disk"
            )
        out_free = _free_gib(self.cfg.out)
        if out_free < 0.05:  # adapters, logs and results of a LoRA run are small; a full model is checked above
            raise AgentError(f"not enough disk space for the outputs: {self.cfg.out} has {out_free:.2f} GiB free")

    def _resume_checkpoint(self, ctx: RunContext, job: JobSpec) -> Path:
        """The checkpoint named by the signed job, downloaded from the bot, verified by its hash and unpacked where
        ms-swift writes its own (so later checkpoints of this run follow it)."""
        assert job.resume is not None
        if job.callback is None:
            raise AgentError("this job resumes from a checkpoint, but has no callback to fetch it from")
        ctx.bus.emit("phase", phase="download",
                     detail=f"checkpoint-{job.resume.step} of {job.resume.run_id} (resuming)")
        data = checkpoints.download(job.callback, job.run_id, job.resume.sha256)
        dest = ctx.tool_dir / "swift-out"  # where ms-swift (confined to the tools' scratch) writes its own
        dest.mkdir(parents=True, exist_ok=True)
        folder = checkpoints.unpack(data, dest, job.resume.step)
        state_step = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")).get("global_step")
        if state_step != job.resume.step:
            raise AgentError(f"the checkpoint is at step {state_step}, not {job.resume.step} as the job says")
        return folder

    def _train(self, ctx: RunContext, job: JobSpec, model: models.ResolvedModel,
               prepared: list[datasets_mod.PreparedDataset], state: RunState, gpu: bool,
               resume_from: Path | None = None) -> Path:
        cfg = self.cfg
        length = f"{job.hyper.max_steps} steps" if job.hyper.max_steps else f"{job.hyper.num_train_epochs:g} epochs"
        ctx.bus.emit("phase", phase="train", detail=f"{job.tuner} on {job.model.name}, {length}")
        # The plot helper starts once training is under way: its matplotlib import (about a second of CPU) then
        # overlaps the training steps instead of competing with ms-swift's start-up or adding to the end.
        # Drawn in the tools' part of the scratch space (a tool never writes --out), then copied by the agent.
        drawn, png = ctx.tool_dir / "loss.png", cfg.out / "loss.png"
        plotter = Plotter(ctx.tool_argv([cfg.python, "-m", "runner_agent.plot", str(drawn)]), drawn,
                          ctx.tool_env(offline=True))
        try:
            offline = cfg.offline or all(d.source in ("builtin", "local") for d in prepared)
            outcome = training.train(ctx, job, model, prepared, gpu=gpu, offline=offline,
                                     on_first_step=plotter.start, place=self._place(), resume_from=resume_from)
            log = outcome.log
            points = report.loss_points(log.points)
            plotter.send({"title": f"{job.run_id}: {job.tuner} on {job.model.name}", "points": points})
            summary = log.summary
            state.train = {
                "tuner": job.tuner,
                "steps": int(log.final.get("global_step") or log.last_step or 0),
                "total_steps": log.total_steps,
                "first_loss": points[0][1] if points else None,
                "final_loss": points[-1][1] if points else None,
                "train_loss": training._num(summary.get("train_loss")),
                "train_runtime_s": training._num(summary.get("train_runtime")),
                "wall_s": round(outcome.wall_s, 2),
                "loss_curve": points,
                "checkpoint": outcome.checkpoint.name,
                **({"resumed_from": {"run_id": job.resume.run_id, "step": job.resume.step}} if job.resume else {}),
            }
            # Keep the adapter (or the full model) and swift's args.json as artifacts.
            name = "model" if job.tuner == "full" else "adapter"
            dest = cfg.out / name
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            for item in outcome.checkpoint.iterdir():
                if item.is_file() and item.name not in TRAINER_STATE_FILES and not item.name.startswith("rng_state"):
                    shutil.copy2(item, dest / item.name)
            args_dest = cfg.out / "args.json"
            shutil.copy2(outcome.args_json, args_dest)
            entry = report.artifact_entry(cfg.out, dest, name)
            state.artifacts.append(entry)
            # The training result, signed: what it was trained from, as resolved here (a branch or tag moves; the
            # bytes of a repository file are named by their blob).
            ctx.bus.emit("artifact", **entry, manifest=self._inputs(ctx, job, model, prepared, state))
            state.manifest["adapter" if name == "adapter" else "trained_model"] = {
                "sha256": entry["sha256"], "bytes": entry["bytes"], "source": "trained", "path": name}
            args_entry = report.artifact_entry(cfg.out, args_dest, "swift_args")
            state.artifacts.append(args_entry)
            ctx.bus.emit("artifact", **args_entry)
            # The loss curve the helper has been drawing meanwhile.
            if plotter.wait():
                shutil.copyfile(drawn, png)
                state.loss_png = "loss.png"
                png_entry = report.artifact_entry(cfg.out, png, "loss_curve")
                state.artifacts.append(png_entry)
                ctx.bus.emit("artifact", **png_entry)
            return dest
        finally:
            plotter.stop()
