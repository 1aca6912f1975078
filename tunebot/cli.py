"""Routes `tunebot <command>` to the part that owns it, importing only that part (the service never loads torch)."""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function", one-line help). Each target takes argv (list[str]) and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("bot.cli:serve_main", "run the GitHub App service (webhooks, callbacks, metrics)"),
    "runs": ("bot.cli:runs_main", "runs list|show from the store; runs leaderboard (rank results.json files)"),
    "agent": ("runner_agent.cli:main", "runner agent: `tunebot agent run --job JOB.json --out DIR`"),
    "parse": ("tunebot.parse_cmd:main", "show how a comment is parsed: tunebot parse \"/train tiny\" [--policy FILE]"),
    "try": ("bot.local:try_main", "run any command locally: tunebot try \"/train tiny max_steps=20\""),
    "demo": ("bot.demo:demo_main", "the guided local demo: /train, /eval and /compare on the tiny model"),
}


def _usage() -> str:
    lines = ["usage: tunebot [--debug] <command> [args...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `tunebot <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from tunebot import __version__

        print(f"tunebot {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"tunebot: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # one clear line, not a traceback, unless --debug
        if debug:
            raise
        print(f"tunebot {name}: error: {exc}", file=sys.stderr)
        return 1
