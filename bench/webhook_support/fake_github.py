"""Runs the test suite's fake GitHub (tests/fakes/github.py) as a process on 127.0.0.1 for bench/webhook_load.sh.

Prints one JSON line `{"url": ..., "token": ...}` once it listens; on SIGTERM/SIGINT it writes what it was asked
(`{"requests": n, "by_route": {...}}`) to --report and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.fakes is not installed

from tests.fakes.github import FakeGitHub

REPO = "Codertocat/Hello-World"  # the repository of the octokit issue_comment payload the load sends


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", required=True, help="file to write the request summary to on exit")
    args = ap.parse_args()
    gh = FakeGitHub()
    await gh.start()
    gh.add_bot_repo(REPO)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"url": gh.url, "token": gh.token}), flush=True)
    await stop.wait()
    routes = collections.Counter(f"{r.method} {r.route}" for r in gh.requests)
    Path(args.report).write_text(json.dumps({"requests": len(gh.requests), "by_route": dict(routes)}) + "\n")
    await gh.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
