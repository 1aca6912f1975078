"""The agent's settings and the per-run context every phase works in (paths, environment for tools, event bus)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import sandbox
from .errors import AgentError
from .hub_code import tool_environ
from .procs import Watchdog
from .sinks import EventBus


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent was told by flags and environment (read only in runner_agent/cli.py)."""

    out: Path
    cache: Path
    bench_data: Path | None = None
    bench_data_origin: str = "none"
    repo_dir: Path = field(default_factory=Path.cwd)
    offline: bool = False
    hub: str = "modelscope"
    endpoint: str | None = None
    quiet: bool = False
    tty: bool | None = None
    base_env: Mapping[str, str] = field(default_factory=dict)
    python: str = sys.executable
    swift: str | None = None
    min_free_gb: float = 0.0
    callback_deadline_s: float = 120.0
    heartbeat_s: float = 30.0
    grace_s: float = 10.0
    github_step_summary: Path | None = None
    # An earlier run's output directory (on GitHub: its downloaded artifact); overrides the job's adapter.path.
    adapter_dir: Path | None = None
    # The workflow run's attempt (--run-attempt): a re-run (attempt > 1) replays a signed job, and is refused.
    run_attempt: int | None = None
    # Whether tool processes are confined to writing their job's own directories (runner_agent/sandbox.py):
    # require (refuse to run without it), auto (where the kernel offers it), off.
    tool_sandbox: str = "auto"
    # This runner's place in a multi-node training job (runner_agent/training.NodePlace): only node 0 reports.
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def swift_exe(self) -> str:
        if self.swift:
            return self.swift
        beside = Path(self.python).parent / "swift"
        if beside.is_file():
            return str(beside)
        found = shutil.which("swift", path=self.base_env.get("PATH"))
        return found or "swift"


@dataclass
class RunContext:
    config: AgentConfig
    bus: EventBus
    watchdog: Watchdog
    scratch: Path
    logs: Path
    # Threads for CPU tools when the caller set none: the tiny model's matrices are so small that a second thread
    # costs more in synchronisation than it saves (measured: 19 s vs 51 s for 20 steps on a busy 2-core runner).
    cpu_threads: int | None = None
    # The signed job's model.trust_remote_code: without it every tool process refuses hub code (runner_agent/hub_code).
    trust_remote_code: bool = False
    # The Landlock ABI the tools are confined with (0: not confined); set by `confine_tools`.
    sandbox_abi: int = 0
    sandbox_note: str = ""

    @property
    def cache(self) -> Path:
        return self.config.cache

    def confine_tools(self) -> None:
        """Decide, before any tool runs, whether tool processes are confined (runner_agent/sandbox.py); with
        `require`, a runner that cannot confine them refuses the job."""
        mode = self.config.tool_sandbox
        if mode == "off":
            self.sandbox_abi, self.sandbox_note = 0, "turned off (TUNEBOT_TOOL_SANDBOX=off)"
            return
        abi, why = sandbox.abi_version()
        if abi < 1 and mode == "require":
            raise AgentError(
                f"this runner cannot keep the job's tools from writing the shared cache: {why}. Run on a kernel with "
                f"Landlock (Linux 5.13+, landlock in the LSM list), or set TUNEBOT_TOOL_SANDBOX=auto to run without "
                f"that protection (deploy/README.md, Threat model)"
            )
        cache = self.config.cache.resolve()
        for where in self.tool_writable():
            if abi and cache.is_relative_to(where):
                raise AgentError(f"the tools may write {where}, which holds the shared cache {cache}: put the "
                                 f"cache elsewhere (TUNEBOT_CACHE)")
        self.sandbox_abi, self.sandbox_note = abi, (f"Landlock ABI {abi}" if abi else f"not confined: {why}")

    @property
    def tool_dir(self) -> Path:
        """The part of the scratch space the tools write (outputs, caches); the agent writes its own files beside
        it and in --out, where no tool can plant a symlink for the agent to write through."""
        return self.scratch / "tool"

    def tool_writable(self) -> list[Path]:
        """Where a confined tool may write: `tool_dir`, the run's TMPDIR (a short directory the scratch space
        links to) and device nodes. Everything else, the shared cache above all, is read-only to it."""
        dirs = [self.tool_dir.resolve(), (self.scratch / "tmp").resolve(), *sandbox.SYSTEM_WRITABLE]
        return list(dict.fromkeys(dirs))

    def tool_argv(self, argv: list[str]) -> list[str]:
        """The command line that starts a job's tool: confined when `confine_tools` found a way, else as is."""
        if self.sandbox_abi < 1:
            return list(argv)
        (self.scratch / "tmp").mkdir(parents=True, exist_ok=True)
        self.tool_dir.mkdir(parents=True, exist_ok=True)
        return sandbox.wrap(self.config.python, argv, self.tool_writable())

    def tool_env(self, *, offline: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a tool runs in: the caller's, plus per-run caches and (when asked) offline switches.

        Every cache a tool writes is the run's own, in its scratch space: the shared cache holds only what the
        agent fetched and verified (models, converted packs, datasets), passed to the tools by path, and is
        read-only to them (`tool_argv`). What the tools download themselves (hub datasets) is per run."""
        own = self.tool_dir / "caches"
        env = dict(self.config.base_env)
        env.update(
            {
                "HF_HOME": str(own / "hf"),
                "HF_HUB_CACHE": str(own / "hf" / "hub"),
                "MODELSCOPE_CACHE": str(own / "modelscope"),
                "EVALSCOPE_CACHE": str(own / "evalscope"),
                "MPLCONFIGDIR": str(own / "mpl"),
                # What else writes below $HOME by default (torch hub, Triton kernels, CUDA's JIT cache).
                "XDG_CACHE_HOME": str(own / "xdg"),
                "TRITON_CACHE_DIR": str(own / "triton"),
                "CUDA_CACHE_PATH": str(own / "cuda"),
                "HF_DATASETS_CACHE": str(self.tool_dir / "hf-datasets"),
                "TMPDIR": str((self.scratch / "tmp").resolve()),  # may be a short directory elsewhere
                "PYTHONUNBUFFERED": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "DISABLE_TELEMETRY": "1",
            }
        )
        (self.scratch / "tmp").mkdir(parents=True, exist_ok=True)
        self.tool_dir.mkdir(parents=True, exist_ok=True)
        if self.cpu_threads and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(self.cpu_threads)
            env.setdefault("MKL_NUM_THREADS", str(self.cpu_threads))
        if offline:
            env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        else:
            for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
                env.pop(key, None)
        if self.config.endpoint:
            if self.config.hub == "huggingface":
                env["HF_ENDPOINT"] = self.config.endpoint
            else:
                env["MODELSCOPE_ENDPOINT"] = self.config.endpoint
        if extra:
            env.update(extra)
        return tool_environ(env, allowed=self.trust_remote_code)
