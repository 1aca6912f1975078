"""The agent's settings and the per-run context every phase works in (paths, environment for tools, event bus)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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

    @property
    def cache(self) -> Path:
        return self.config.cache

    def tool_env(self, *, offline: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a tool runs in: the caller's, plus the agent's caches and (when asked) offline switches."""
        cache = self.config.cache
        env = dict(self.config.base_env)
        env.update(
            {
                "HF_HOME": str(cache / "hf"),
                "HF_HUB_CACHE": str(cache / "hf" / "hub"),
                "MODELSCOPE_CACHE": str(cache / "modelscope"),
                "EVALSCOPE_CACHE": str(cache / "evalscope"),
                "MPLCONFIGDIR": str(cache / "mpl"),
                # Processed-dataset caches are per run: they are large, run-specific and go with the scratch space.
                "HF_DATASETS_CACHE": str(self.scratch / "hf-datasets"),
                "TMPDIR": str((self.scratch / "tmp").resolve()),  # may be a short directory elsewhere
                "PYTHONUNBUFFERED": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "DISABLE_TELEMETRY": "1",
            }
        )
        (self.scratch / "tmp").mkdir(parents=True, exist_ok=True)
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
