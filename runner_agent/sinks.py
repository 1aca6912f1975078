"""Where a run's events go: a terminal, a JSONL file and the bot's callback URL, each fed from its own thread.

The `EventBus` numbers events (run id + sequence number) and hands each one to every sink without waiting: a sink
that is slow or down (the bot restarting, a stalled disk) never holds up training. The HTTP sink buffers, retries
with backoff, and on close keeps retrying the final event until it is delivered or its deadline passes; its
failures are logged and never fail the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from commands.events import EVENTS_SIGNATURE_FILE, SIGNATURE_HEADER, Event, make_event, sign_body

# Event types that say something a later event does not supersede; never dropped when a buffer overflows.
_KEEP = {"accepted", "phase", "eval_result", "artifact", "tracker", "finished"}


class Sink:
    """A consumer of events running on its own thread; `submit` never blocks."""

    name = "sink"

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"tunebot-sink-{self.name}", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def submit(self, event: Event) -> None:
        self._q.put(event)

    def close(self, timeout: float) -> None:
        """Ask the sink to finish what it holds and wait at most `timeout` seconds for it."""
        self._q.put(None)
        if self._started:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            event = self._q.get()
            if event is None:
                self._finish()
                return
            try:
                self.handle(event)
            except Exception as exc:  # a sink must never take the run down
                _warn(f"{self.name} sink: {exc}")

    def handle(self, event: Event) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Called on the sink's thread after the last event."""


def _warn(msg: str) -> None:
    with contextlib.suppress(Exception):
        print(f"tunebot-agent: warning: {msg}", file=sys.stderr, flush=True)


# --- terminal ------------------------------------------------------------------------------------------------------


def describe(event: Event) -> str:
    """One human line for an event (used by the terminal sink and the plain log)."""
    d = event.data
    t = event.type
    if t == "accepted":
        return f"accepted {d.get('kind')} of {d.get('model')} on {d.get('host') or 'this host'}"
    if t == "phase":
        return f"phase {d['phase']}" + (f": {d['detail']}" if d.get("detail") else "")
    if t == "progress":
        parts = [f"{d.get('phase', 'train')} {d['step']}/{d['total']}"]
        if d.get("loss") is not None:
            parts.append(f"loss {d['loss']:.4f}")
        if d.get("learning_rate") is not None:
            parts.append(f"lr {d['learning_rate']:.3g}")
        if d.get("eta_s") is not None:
            parts.append(f"eta {int(d['eta_s'])}s")
        return " ".join(parts)
    if t == "eval_result":
        subs = d.get("subsets") or {}
        sub_txt = ", ".join(f"{k} {v['correct'] / v['n']:.1%}" if isinstance(v, dict) and v.get("n")
                            else f"{k} {v:.1%}" if isinstance(v, (int, float)) else k
                            for k, v in sorted(subs.items()))
        return f"{d['benchmark']}: {d['score']:.1%} of {d['n']}" + (f" ({sub_txt})" if sub_txt else "")
    if t == "artifact":
        size = f", {d['bytes']} bytes" if d.get("bytes") is not None else ""
        return f"artifact {d['name']}: {d['path']}{size}"
    if t == "tracker":
        return f"{d['tool']} run page: {d['url']}"
    if t == "heartbeat":
        return "heartbeat"
    if t == "finished":
        return f"finished: {d['status']}" + (f" — {d['reason']}" if d.get("reason") else "")
    return t


class TerminalSink(Sink):
    """Human output: a live progress bar on a TTY, plain lines otherwise (CI logs)."""

    name = "terminal"

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, quiet: bool = False) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.quiet = quiet
        self._bar_open = False

    def handle(self, event: Event) -> None:
        if event.type == "heartbeat":
            return
        if self.quiet and event.type not in ("finished", "eval_result"):
            return
        if event.type == "progress" and self.tty:
            d = event.data
            total = max(int(d["total"]), 1)
            frac = min(max(int(d["step"]) / total, 0.0), 1.0)
            width = 24
            filled = int(frac * width)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {describe(event)}\x1b[K")
            self.stream.flush()
            self._bar_open = True
            return
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(f"[{event.run_id} #{event.seq}] {describe(event)}\n")
        self.stream.flush()

    def _finish(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self.stream.flush()


# --- JSONL file ----------------------------------------------------------------------------------------------------


class JsonlSink(Sink):
    """Appends each event as one JSON line and flushes it, so a reader tailing the file sees it at once. With the
    run's token, it signs the whole log when the run ends (`events.jsonl.sig`): the bot can then finish the run from
    the uploaded log when the final callback never reached it."""

    name = "jsonl"

    def __init__(self, path: Path, token: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.token = token
        self._fh = path.open("a", encoding="utf-8")

    def handle(self, event: Event) -> None:
        self._fh.write(event.to_json() + "\n")
        self._fh.flush()

    def _finish(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self._fh.close()
        if self.token:
            with contextlib.suppress(OSError):
                signature = sign_body(self.token, self.path.read_bytes())
                self.path.with_name(EVENTS_SIGNATURE_FILE).write_text(signature + "\n", encoding="utf-8")


# --- HTTP callback -------------------------------------------------------------------------------------------------


class HttpSink(Sink):
    """POSTs each event to the bot's callback URL, signed with the run's token, in sequence order.

    Delivery: the body is the event's JSON and `X-Tunebot-Signature-256` its HMAC. A 2xx (or 409: the bot already
    has it) is delivered; a network error, 408/425/429 or 5xx is retried with exponential backoff (capped at
    `max_backoff_s`); any other 4xx means the bot refuses that event, which is logged and skipped. While the bot
    is unreachable events wait in a bounded buffer where superseded ones (progress, heartbeat) are dropped first.
    On close, everything buffered — the final event last — is retried until delivered or `final_deadline_s` passes.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        max_backoff_s: float = 30.0,
        final_deadline_s: float = 120.0,
        max_buffer: int = 2000,
        opener: Callable[..., Any] | None = None,
        on_cancel: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        # Called (from the sink's thread) when the bot answers 410 Gone: the run was cancelled there (`/cancel`).
        self.on_cancel = on_cancel
        self.cancelled_by_bot = False
        self.token = token
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.final_deadline_s = final_deadline_s
        self.max_buffer = max_buffer
        self._open = opener or urllib.request.urlopen
        self._buf: deque[Event] = deque()
        self._closing_at: float | None = None
        self.delivered = 0
        self.rejected = 0
        self.dropped = 0
        self.attempts = 0
        self._last_error = ""

    def close(self, timeout: float | None = None) -> None:
        # The final event may need its whole deadline; the caller's timeout is a floor, never a cut-off.
        wait = max(timeout or 0.0, self.final_deadline_s + self.timeout_s + 1.0)
        super().close(wait)

    def _take(self, item: Event | None) -> bool:
        """Buffer an incoming event; True when it is the close marker."""
        if item is None:
            if self._closing_at is None:
                self._closing_at = time.monotonic()
            return True
        self._push(item)
        return False

    def _loop(self) -> None:
        streak = 0  # consecutive failed attempts: sets the backoff
        closing = False
        while True:
            if not self._buf and not closing:
                closing = self._take(self._q.get())
            elif streak:
                wait = min(self.max_backoff_s, 0.25 * 2 ** (streak - 1)) * (0.8 + 0.4 * random.random())
                if closing:
                    wait = min(wait, max(0.0, self._deadline_left()))
                until = time.monotonic() + wait
                while (left := until - time.monotonic()) > 0:
                    try:
                        item = self._q.get(timeout=left)
                    except queue.Empty:
                        break
                    if self._take(item):
                        closing = True
                        break  # try again at once: the bot may be back, and the caller is waiting
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                closing = self._take(item) or closing
            if not self._buf:
                if closing:
                    return
                continue
            if closing and self._deadline_left() <= 0:
                _warn(
                    f"callback {self.url}: gave up on {len(self._buf)} undelivered event(s) after "
                    f"{self.final_deadline_s:.0f}s ({self._last_error}); the run's outputs are unaffected"
                )
                return
            event = self._buf[0]
            outcome = self._post(event)
            if outcome == "retry":
                streak += 1
                continue
            self._buf.popleft()
            streak = 0
            if outcome == "ok":
                self.delivered += 1
            else:
                self.rejected += 1

    def _deadline_left(self) -> float:
        if self._closing_at is None:
            return float("inf")
        return self.final_deadline_s - (time.monotonic() - self._closing_at)

    def _push(self, event: Event) -> None:
        self._buf.append(event)
        while len(self._buf) > self.max_buffer:
            victim = next((e for e in self._buf if e.type not in _KEEP), None)
            if victim is None:
                break
            self._buf.remove(victim)
            self.dropped += 1

    def _post(self, event: Event) -> str:
        body = event.to_json().encode("utf-8")
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign_body(self.token, body),
                "User-Agent": "tunebot-agent",
                "X-Tunebot-Run": event.run_id,
                "X-Tunebot-Seq": str(event.seq),
            },
        )
        self.attempts += 1
        try:
            with self._open(req, timeout=self.timeout_s) as resp:
                resp.read()
            return "ok"
        except urllib.error.HTTPError as exc:
            code = exc.code
            self._last_error = f"HTTP {code}"
            if code == 409:
                return "ok"
            if code == 410:
                # The bot says the run is cancelled (`/cancel`): stop the work; later events still go out.
                if not self.cancelled_by_bot:
                    self.cancelled_by_bot = True
                    if self.on_cancel is not None:
                        self.on_cancel("cancelled on the pull request (/cancel)")
                return "ok"
            if code in (408, 425, 429) or code >= 500:
                return "retry"
            _warn(f"callback {self.url} refused event #{event.seq} ({event.type}) with HTTP {code}")
            return "reject"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self._last_error = str(getattr(exc, "reason", exc))
            return "retry"


# --- the bus -------------------------------------------------------------------------------------------------------


class EventBus:
    """Numbers a run's events and fans them out to the sinks; also keeps the heartbeat going while work runs."""

    def __init__(
        self,
        run_id: str,
        sinks: list[Sink],
        *,
        clock: Callable[[], float] = time.time,
        heartbeat_s: float = 30.0,
    ) -> None:
        self.run_id = run_id
        self.sinks = sinks
        self._clock = clock
        self._seq = 0
        self._lock = threading.Lock()
        self._last_emit = time.monotonic()
        self._heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._hb: threading.Thread | None = None
        self.finished: Event | None = None
        self.history: list[Event] = []

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()
        if self._heartbeat_s > 0:
            self._hb = threading.Thread(target=self._heartbeat, name="tunebot-heartbeat", daemon=True)
            self._hb.start()

    def emit(self, type: str, **data: Any) -> Event:
        """Build, number and dispatch one event; raises SpecError if it breaks the protocol (a bug, not input)."""
        with self._lock:
            if self.finished is not None:
                raise RuntimeError("no events after `finished`")
            clean = {k: v for k, v in data.items() if v is not None or k in ("reason",)}
            event = make_event(self.run_id, self._seq, self._clock(), type, **clean)
            self._seq += 1
            self._last_emit = time.monotonic()
            if event.is_final:
                self.finished = event
            self.history.append(event)
            for sink in self.sinks:
                sink.submit(event)
        return event

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(self._heartbeat_s, 5.0)):
            if time.monotonic() - self._last_emit >= self._heartbeat_s:
                with contextlib.suppress(RuntimeError):
                    self.emit("heartbeat")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the heartbeat and let every sink drain (the HTTP sink may take up to its final deadline)."""
        self._stop.set()
        for sink in self.sinks:
            sink.close(timeout)


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a JSONL file (for tests and tools)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
