"""`tunebot agent ...`: the runner agent's command line; the only place the agent reads its environment.

    tunebot agent run --job JOB.json --out DIR [--cache DIR] [--bench-data DIR] [--repo-dir DIR] [--offline]
                      [--hub modelscope|huggingface] [--endpoint URL] [--quiet] [--adapter-dir DIR]
                      [--run-attempt N] [--tool-sandbox require|auto|off]
    tunebot agent fetch --job JOB.json [--cache DIR] [--offline] [--hub ...] [--endpoint URL]

Exit codes: 0 succeeded, 1 failed (the `finished` event says why), 2 bad command line,
130 cancelled by SIGINT, 143 cancelled by SIGTERM or by the job's wall-clock limit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from configs import BENCH_DATA_DIR as DEFAULT_BENCH_DATA

from .context import AgentConfig
from .errors import EXIT_FAILED, EXIT_USAGE

ENV_HELP = """environment (flags win):
  TUNEBOT_CACHE              model/dataset cache shared by runs (default ~/.cache/tunebot)
  TUNEBOT_BENCH_DATA         benchmark packs (ceval/, cmmlu/), e.g. full downloads; default: the samples shipped
                             with tunebot (configs/benchmarks/data)
  TUNEBOT_OFFLINE            1 = use only the cache, never the network
  TUNEBOT_HUB                modelscope (default) or huggingface
  TUNEBOT_ENDPOINT           hub endpoint / mirror URL
  TUNEBOT_REPO_DIR           the checked-out repository local datasets are read from (default: cwd)
  TUNEBOT_MIN_FREE_GB        refuse to start with less free disk than this
  TUNEBOT_CALLBACK_DEADLINE  seconds to keep retrying the final event to the callback URL (default 120)
  TUNEBOT_TOOL_SANDBOX       require | auto (default) | off: confine ms-swift and EvalScope to writing their run's
                             own directories (Landlock), so the shared cache is read-only to them; `require`
                             refuses jobs on a kernel without Landlock
  GITHUB_STEP_SUMMARY        when set, the run's Markdown summary is appended to it

exit codes: 0 succeeded, 1 failed, 2 usage, 130 cancelled (SIGINT), 143 cancelled (SIGTERM / wall-clock limit)
"""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunebot agent",
        description="Runs tunebot jobs: fine-tunes with ms-swift, evaluates with EvalScope, streams progress.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--job", required=True, type=Path, help="the job spec (JSON)")
        p.add_argument("--cache", type=Path, help="shared cache directory (models, converted packs, datasets)")
        p.add_argument("--offline", action="store_true", default=None, help="use only the cache, never the network")
        p.add_argument("--hub", choices=["modelscope", "huggingface"], help="where hub models come from")
        p.add_argument("--endpoint", help="hub endpoint or mirror URL (HF_ENDPOINT / MODELSCOPE_ENDPOINT for tools)")
        p.add_argument("--quiet", action="store_true", help="print only results and the final line")

    run = sub.add_parser("run", help="run one job and write its outputs to --out", epilog=ENV_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    common(run)
    run.add_argument("--out", required=True, type=Path, help="output directory (must not hold a previous run)")
    run.add_argument("--bench-data", type=Path, help="benchmark packs directory (ceval/, cmmlu/)")
    run.add_argument("--repo-dir", type=Path, help="the checked-out repository (local datasets live here)")
    run.add_argument("--adapter-dir", type=Path,
                     help="an earlier run's output directory (DIR/adapter/...), e.g. its downloaded artifact; "
                          "overrides the job's adapter.path")
    # A flag, not the ambient GITHUB_RUN_ATTEMPT: the workflow says which attempt this is; a test suite re-run in
    # CI must not make every agent it starts refuse its job.
    run.add_argument("--run-attempt", type=int, help="the workflow run's attempt; any after the first is refused "
                                                     "(an Actions re-run replays the signed job)")
    run.add_argument("--min-free-gb", type=float, help="refuse to start with less free disk than this")
    run.add_argument("--tool-sandbox", choices=["require", "auto", "off"],
                     help="confine the tools to their run's directories (default auto; see TUNEBOT_TOOL_SANDBOX)")
    run.add_argument("--callback-deadline", type=float, help="seconds to keep retrying the final callback event")
    run.add_argument("--node-rank", type=int, help="this runner's node in a multi-node training job (0: the one that "
                                                   "reports; env TUNEBOT_NODE_RANK)")
    run.add_argument("--master-addr", help="node 0's rendezvous address for multi-node training, e.g. the job's "
                                           "headless Service (env TUNEBOT_MASTER_ADDR)")
    run.add_argument("--master-port", type=int, help="node 0's rendezvous port (env TUNEBOT_MASTER_PORT)")
    run.add_argument("--heartbeat", type=float, default=30.0, help=argparse.SUPPRESS)
    run.add_argument("--grace", type=float, default=10.0, help=argparse.SUPPRESS)

    fetch = sub.add_parser("fetch", help="download a job's model into the cache (to warm a runner)")
    common(fetch)
    return parser


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[AgentConfig, list[str]]:
    """The AgentConfig from flags, then environment, then defaults; plus lines worth logging about the choice."""
    notes: list[str] = []
    cache = args.cache or (Path(env["TUNEBOT_CACHE"]) if env.get("TUNEBOT_CACHE") else None)
    cache = (cache or Path.home() / ".cache" / "tunebot").expanduser().resolve()
    bench: Path | None
    origin = "none"
    if getattr(args, "bench_data", None):
        bench, origin = args.bench_data, "--bench-data"
    elif env.get("TUNEBOT_BENCH_DATA"):
        bench, origin = Path(env["TUNEBOT_BENCH_DATA"]), "TUNEBOT_BENCH_DATA"
    elif DEFAULT_BENCH_DATA.is_dir():
        bench, origin = DEFAULT_BENCH_DATA, "the samples shipped with tunebot"
        notes.append(f"benchmark data: {bench.resolve()} (the CMMLU/C-Eval samples shipped with tunebot; "
                     "--bench-data for full downloads)")
    else:
        bench = None
    if bench is not None:
        bench = bench.expanduser().resolve()
    repo_dir = getattr(args, "repo_dir", None)
    if repo_dir is None and env.get("TUNEBOT_REPO_DIR"):
        repo_dir = Path(env["TUNEBOT_REPO_DIR"])
    offline = bool(args.offline) if args.offline is not None else _truthy(env.get("TUNEBOT_OFFLINE"))
    hub = args.hub or env.get("TUNEBOT_HUB") or "modelscope"
    if hub not in ("modelscope", "huggingface"):
        raise ValueError(f"TUNEBOT_HUB must be modelscope or huggingface, got {hub!r}")
    min_free = getattr(args, "min_free_gb", None)
    if min_free is None and env.get("TUNEBOT_MIN_FREE_GB"):
        min_free = float(env["TUNEBOT_MIN_FREE_GB"])
    deadline = getattr(args, "callback_deadline", None)
    if deadline is None and env.get("TUNEBOT_CALLBACK_DEADLINE"):
        deadline = float(env["TUNEBOT_CALLBACK_DEADLINE"])
    summary = env.get("GITHUB_STEP_SUMMARY")
    tool_sandbox = getattr(args, "tool_sandbox", None) or (env.get("TUNEBOT_TOOL_SANDBOX") or "auto").strip().lower()
    if tool_sandbox not in ("require", "auto", "off"):
        raise ValueError(f"TUNEBOT_TOOL_SANDBOX must be require, auto or off, got {tool_sandbox!r}")
    node_rank = getattr(args, "node_rank", None)
    if node_rank is None:
        node_rank = int(env.get("TUNEBOT_NODE_RANK") or 0)
    if node_rank < 0:
        raise ValueError(f"node rank must be 0 or more, got {node_rank}")
    master_port = getattr(args, "master_port", None)
    if master_port is None and env.get("TUNEBOT_MASTER_PORT"):
        master_port = int(env["TUNEBOT_MASTER_PORT"])
    adapter_dir: Path | None = getattr(args, "adapter_dir", None)
    out = getattr(args, "out", None)
    cfg = AgentConfig(
        out=(out.expanduser().resolve() if out else cache / "fetch-out"),
        cache=cache,
        bench_data=bench,
        bench_data_origin=origin,
        repo_dir=(repo_dir or Path.cwd()).expanduser().resolve(),
        offline=offline,
        hub=hub,
        endpoint=args.endpoint or env.get("TUNEBOT_ENDPOINT") or None,
        quiet=bool(args.quiet),
        base_env=dict(env),
        min_free_gb=float(min_free or 0.0),
        callback_deadline_s=float(deadline if deadline is not None else 120.0),
        heartbeat_s=float(getattr(args, "heartbeat", 30.0)),
        grace_s=float(getattr(args, "grace", 10.0)),
        github_step_summary=Path(summary) if summary else None,
        adapter_dir=adapter_dir.expanduser().resolve() if adapter_dir else None,
        run_attempt=getattr(args, "run_attempt", None),
        tool_sandbox=tool_sandbox,
        node_rank=node_rank,
        master_addr=getattr(args, "master_addr", None) or env.get("TUNEBOT_MASTER_ADDR") or None,
        master_port=master_port,
    )
    return cfg, notes


def _fetch(cfg: AgentConfig, job_path: Path) -> int:
    """Acquire the job's model only: for warming a runner's cache, and for testing the download path."""
    # Here, not at the top (as `Runner` below): `--help` and flag errors answer without loading the runner.
    import tempfile

    from commands.jobspec import SpecError, job_from_json

    from .context import RunContext
    from .errors import EXIT_OK, AgentError, Cancelled
    from .models import acquire
    from .procs import Watchdog
    from .runner import cancel_on_signals
    from .sinks import EventBus, TerminalSink

    try:
        job = job_from_json(job_path.read_text(encoding="utf-8"))
    except (OSError, SpecError) as exc:
        print(f"tunebot agent fetch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    bus = EventBus(job.run_id, [TerminalSink(tty=cfg.tty, quiet=cfg.quiet)], heartbeat_s=0)
    bus.start()
    watchdog = Watchdog(time.monotonic() + job.limits.wall_clock_s, job.limits.wall_clock_s)
    code = EXIT_FAILED
    try:
        with cancel_on_signals(watchdog), tempfile.TemporaryDirectory(prefix="tunebot-fetch-") as tmp:
            ctx = RunContext(cfg, bus, watchdog, Path(tmp), Path(tmp) / "logs")
            try:
                model = acquire(ctx, job.model)
                print(f"{model.source}: {model.repo} @ {model.revision} -> {model.path}")
                code = EXIT_OK
            except Cancelled as exc:
                print(f"tunebot agent fetch: {exc.reason}", file=sys.stderr)
                code = exc.exit_code
            except AgentError as exc:
                print(f"tunebot agent fetch: {exc.full_reason()}", file=sys.stderr)
    finally:
        bus.close()
    return code


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    env = dict(os.environ)
    try:
        cfg, notes = build_config(args, env)
    except ValueError as exc:
        print(f"tunebot agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        for line in notes:
            print(f"tunebot agent: {line}", file=sys.stderr)
    if args.command == "fetch":
        return _fetch(cfg, args.job)
    from .runner import Runner

    return Runner(cfg).run(args.job)


if __name__ == "__main__":
    sys.exit(main())
