"""Supervises the tools the agent runs (ms-swift, EvalScope, helpers): own process group, captured output, stop.

Each child gets a new session, so stopping it (cancel, wall-clock limit) signals the whole tree — `swift sft`
re-executes itself and may start torchrun workers. Output goes to a log file and to a ring buffer from which an
error message takes the last *meaningful* lines (progress bars, blank lines and known noise removed).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import AgentError, Cancelled

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOISE = (
    re.compile(r"\d+%\|"),  # tqdm bars
    re.compile(r"\d+(\.\d+)?\s*(it/s|s/it)\]"),
    re.compile(r"Failed to load CPU gemm_4bit_forward"),  # bitsandbytes on CPU: harmless, see ml-stack notes
    re.compile(r"^\s*warnings\.warn\("),
    re.compile(r"^\s*[\^~]+\s*$"),  # traceback carets under the failing expression
)
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt)|AssertionError|KeyError)\b:?")


def clean(line: str) -> str:
    return _ANSI.sub("", line).rstrip()


def meaningful(lines: Sequence[str], limit: int = 12) -> list[str]:
    """The lines of a tool's output that explain a failure: its last traceback (trimmed), else its last lines."""
    kept = [ln for ln in (clean(x) for x in lines) if ln.strip() and not any(p.search(ln) for p in _NOISE)]
    start = None
    for i in range(len(kept) - 1, -1, -1):
        if kept[i].startswith("Traceback (most recent call last)"):
            start = i
            break
    if start is None:
        return kept[-limit:]
    tb = kept[start:]
    if len(tb) <= limit:
        return tb
    return [tb[0], "  ...", *tb[-(limit - 2) :]]


def headline(lines: Sequence[str]) -> str:
    """The single most telling line: the last exception line, else the last meaningful line."""
    for ln in reversed(lines):
        s = ln.strip()
        if _EXC_LINE.match(s):
            return s
    return lines[-1].strip() if lines else ""


class Supervised:
    """One child process: started in its own session, output captured, stoppable as a group."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        keep_lines: int = 400,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.on_line = on_line
        self.lines: deque[str] = deque(maxlen=keep_lines)
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(self.cwd) if self.cwd else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise AgentError(f"cannot start {self.argv[0]}: {exc.strerror or exc}") from None
        self._reader = threading.Thread(target=self._read, name=f"tunebot-read-{Path(self.argv[0]).name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        buf = b""
        with self.log_path.open("ab") as log:
            while True:
                chunk = self.proc.stdout.read1(65536) if hasattr(self.proc.stdout, "read1") else b""
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                buf += chunk
                # tqdm redraws with '\r': treat it as a line end too, so the buffer holds whole updates.
                parts = re.split(rb"\r\n|\n|\r", buf)
                buf = parts.pop()
                for raw in parts:
                    self._line(raw)
            if buf:
                self._line(buf)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        self.lines.append(text)
        if self.on_line is not None:
            with contextlib.suppress(Exception):
                self.on_line(text)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL it if it is still there after `grace_s`."""
        if self.proc is None:
            return None
        pgid = self.proc.pid  # start_new_session: the child leads its own group
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Grandchildren may outlive the leader (torchrun workers, dataloaders): always sweep the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        rc = self.proc.wait()
        self.join_reader()
        return rc

    def join_reader(self, timeout: float = 5.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def tail(self, limit: int = 12) -> list[str]:
        return meaningful(list(self.lines), limit)


class Watchdog:
    """What may stop a run: a cancel request (signal) and the wall-clock deadline."""

    def __init__(self, deadline: float | None, wall_clock_s: float | None = None) -> None:
        self.deadline = deadline  # time.monotonic() value, or None
        self.wall_clock_s = wall_clock_s
        self.cancel_event = threading.Event()
        self.cancel_reason = ""
        self.cancel_code = 0

    def cancel(self, reason: str, code: int) -> None:
        if not self.cancel_event.is_set():
            self.cancel_reason = reason
            self.cancel_code = code
            self.cancel_event.set()

    def check(self) -> None:
        """Raise Cancelled if the run must stop now."""
        if self.cancel_event.is_set():
            raise Cancelled(self.cancel_reason, self.cancel_code)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.cancel(f"wall-clock limit of {int(self.wall_clock_s or 0)}s reached", 143)
            raise Cancelled(self.cancel_reason, self.cancel_code)

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking at once on cancel; then check."""
        if self.deadline is not None:
            seconds = max(0.0, min(seconds, self.deadline - time.monotonic()))
        self.cancel_event.wait(seconds)
        self.check()


def run_supervised(
    proc: Supervised,
    watchdog: Watchdog,
    *,
    what: str,
    tick: Callable[[], None] | None = None,
    tick_s: float = 0.1,
    grace_s: float = 10.0,
) -> int:
    """Start `proc`, call `tick` every `tick_s` while it runs, stop it on cancel/deadline; return its exit code."""
    watchdog.check()
    proc.start()
    try:
        while True:
            rc = proc.poll()
            if tick is not None:
                tick()
            if rc is not None:
                proc.join_reader()
                if tick is not None:
                    tick()  # pick up what the last moments wrote
                return rc
            watchdog.wait(tick_s)
    except Cancelled:
        proc.stop(grace_s)
        raise
    except BaseException:
        proc.stop(grace_s)
        raise


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    if rc == 137:
        return "exit 137 (killed, often out of memory)"
    return f"exit code {rc}"
