"""The event sinks: numbering, the signed HTTP callback (retries, final delivery, never blocking), JSONL, terminal."""

from __future__ import annotations

import hashlib
import hmac
import io
import socket
import threading
import time
from pathlib import Path

from aiohttp import web

from commands.events import event_from_dict, make_event
from runner_agent.sinks import EventBus, HttpSink, JsonlSink, TerminalSink, read_events
from tests.fakes.loopback import LoopbackServer
from tests.runner_agent.helpers import CallbackServer

TOKEN = "per-run-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bus_numbers_events_and_writes_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bus = EventBus("run-1", [JsonlSink(path)], heartbeat_s=0)
    bus.start()
    bus.emit("accepted", kind="train", model="tiny")
    bus.emit("progress", phase="train", step=1, total=4, loss=2.5)
    bus.emit("finished", status="succeeded")
    bus.close()
    events = read_events(path)
    assert [e["seq"] for e in events] == [0, 1, 2]
    assert {e["run_id"] for e in events} == {"run-1"}
    assert [e["type"] for e in events] == ["accepted", "progress", "finished"]
    for e in events:  # every line is a valid protocol event
        event_from_dict(e)


def test_http_sink_signs_every_body_and_keeps_order() -> None:
    with CallbackServer(TOKEN) as server:
        sink = HttpSink(server.url, TOKEN, final_deadline_s=10)
        bus = EventBus("run-2", [sink], heartbeat_s=0)
        bus.start()
        bus.emit("accepted", kind="train", model="tiny")
        for step in range(1, 6):
            bus.emit("progress", phase="train", step=step, total=5, loss=1.0 / step)
        bus.emit("finished", status="succeeded")
        bus.close()
        assert len(server.requests) == 7 and all(r.verified for r in server.requests)
        # The header is what the bot checks: sha256=<hex HMAC-SHA256 of the exact body under the run token>.
        assert [r.signature for r in server.requests] == [
            "sha256=" + hmac.new(TOKEN.encode(), r.body, hashlib.sha256).hexdigest() for r in server.requests]
        got = server.delivered()
        assert [e["seq"] for e in got] == list(range(7))
        assert got[-1]["type"] == "finished"
        # The body is exactly the event's JSON (what the signature covers).
        assert server.requests[0].body == make_event(**{k: got[0][k] for k in ("run_id", "seq", "ts", "type")},
                                                     kind="train", model="tiny").to_json().encode()


def test_a_wrong_token_is_refused_by_the_bot_and_never_retried_forever() -> None:
    with CallbackServer("the-bots-token") as server:
        sink = HttpSink(server.url, "a-different-token", final_deadline_s=5)
        bus = EventBus("run-3", [sink], heartbeat_s=0)
        bus.start()
        bus.emit("accepted", kind="train", model="tiny")
        bus.emit("finished", status="succeeded")
        t0 = time.monotonic()
        bus.close()
        assert time.monotonic() - t0 < 3
        assert len(server.requests) == 2  # one try each: 401 is final
        assert not any(r.verified for r in server.requests)
        assert sink.rejected == 2 and sink.delivered == 0


def test_bot_down_then_back_everything_is_delivered_in_order() -> None:
    with CallbackServer(TOKEN, fail_first=4) as server:
        sink = HttpSink(server.url, TOKEN, final_deadline_s=20, max_backoff_s=0.5)
        bus = EventBus("run-4", [sink], heartbeat_s=0)
        bus.start()
        for step in range(1, 4):
            bus.emit("progress", phase="train", step=step, total=3)
        bus.emit("finished", status="succeeded")
        bus.close()
        assert [e["seq"] for e in server.delivered()] == [0, 1, 2, 3]
        assert sink.attempts >= 8  # 4 failures were retried


def test_final_event_is_retried_until_the_bot_comes_up() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/agent/events"
    sink = HttpSink(url, TOKEN, final_deadline_s=20, max_backoff_s=0.3, timeout_s=1)
    bus = EventBus("run-5", [sink], heartbeat_s=0)
    bus.start()
    bus.emit("accepted", kind="train", model="tiny")
    bus.emit("finished", status="failed", reason="boom")
    started: list[CallbackServer] = []

    def start_late() -> None:
        time.sleep(1.5)  # the bot restarts while the agent is closing
        server = CallbackServer(TOKEN)
        server.port = port  # the URL the agent was given
        server.__enter__()
        started.append(server)

    t = threading.Thread(target=start_late)
    t.start()
    bus.close()
    t.join()
    server = started[0]
    try:
        got = server.delivered()
        assert [e["type"] for e in got] == ["accepted", "finished"]
        assert got[-1]["reason"] == "boom"
    finally:
        server.__exit__()


def test_bot_never_up_close_gives_up_at_the_deadline() -> None:
    url = f"http://127.0.0.1:{_free_port()}/agent/events"
    sink = HttpSink(url, TOKEN, final_deadline_s=1.0, max_backoff_s=0.2, timeout_s=0.5)
    bus = EventBus("run-6", [sink], heartbeat_s=0)
    bus.start()
    bus.emit("finished", status="succeeded")
    t0 = time.monotonic()
    bus.close()
    assert 0.9 <= time.monotonic() - t0 < 5
    assert sink.delivered == 0 and sink.attempts >= 2


def test_emit_never_blocks_on_a_slow_bot() -> None:
    release = threading.Event()

    def slow(event: dict) -> None:
        release.wait(5)

    with CallbackServer(TOKEN, on_event=slow) as server:
        sink = HttpSink(server.url, TOKEN, final_deadline_s=10)
        bus = EventBus("run-7", [sink], heartbeat_s=0)
        bus.start()
        t0 = time.monotonic()
        for step in range(200):
            bus.emit("progress", phase="train", step=step, total=200)
        assert time.monotonic() - t0 < 0.5  # the bot is stuck on the first request; emitting is not
        release.set()
        bus.emit("finished", status="succeeded")
        bus.close()
        assert server.delivered()[-1]["type"] == "finished"


def test_overflowing_buffer_drops_progress_never_milestones() -> None:
    sink = HttpSink("http://127.0.0.1:9/none", TOKEN, max_buffer=5)
    events = [make_event("r", 0, 0.0, "accepted", kind="train", model="tiny")]
    events += [make_event("r", i, 0.0, "progress", step=i, total=50) for i in range(1, 20)]
    events += [make_event("r", 20, 0.0, "finished", status="succeeded")]
    for e in events:
        sink._push(e)
    kept = list(sink._buf)
    assert len(kept) == 5
    assert kept[0].type == "accepted" and kept[-1].type == "finished"
    assert [e.seq for e in kept[1:-1]] == [17, 18, 19]  # the newest progress survives
    assert sink.dropped == 16


def test_heartbeat_when_nothing_happens(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bus = EventBus("run-8", [JsonlSink(path)], heartbeat_s=0.2)
    bus.start()
    time.sleep(0.7)
    bus.emit("finished", status="succeeded")
    bus.close()
    types = [e["type"] for e in read_events(path)]
    assert "heartbeat" in types and types[-1] == "finished"


def test_terminal_plain_lines_and_tty_bar() -> None:
    plain = io.StringIO()
    sink = TerminalSink(plain, tty=False)
    tty = io.StringIO()
    bar = TerminalSink(tty, tty=True)
    bus = EventBus("run-9", [sink, bar], heartbeat_s=0)
    bus.start()
    bus.emit("progress", phase="train", step=5, total=10, loss=1.25)
    bus.emit("finished", status="cancelled", reason="cancelled by SIGTERM")
    bus.close()
    assert "[run-9 #0] train 5/10 loss 1.2500" in plain.getvalue()
    assert "finished: cancelled — cancelled by SIGTERM" in plain.getvalue()
    assert "\r[############------------] train 5/10" in tty.getvalue()


def test_a_410_from_the_bot_cancels_the_run_once_and_is_not_retried() -> None:
    hits: list[bytes] = []

    class Gone(LoopbackServer):
        def make_app(self) -> web.Application:
            app = web.Application()
            app.router.add_post("/", self.gone)
            return app

        async def gone(self, request: web.Request) -> web.Response:
            hits.append(await request.read())
            return web.json_response({"status": "run cancelled"}, status=410)

    reasons: list[str] = []
    with Gone() as server:
        sink = HttpSink(f"{server.base_url}/", TOKEN, final_deadline_s=5, on_cancel=reasons.append)
        bus = EventBus("run-410", [sink], heartbeat_s=0)
        bus.start()
        bus.emit("progress", phase="train", step=1, total=4, loss=2.5)
        bus.emit("progress", phase="train", step=2, total=4, loss=2.0)
        bus.emit("finished", status="cancelled", reason="x")
        bus.close()
    assert reasons == ["cancelled on the pull request (/cancel)"]
    assert len(hits) == 3 and sink.cancelled_by_bot  # each event once: a 410 is an answer, not a failure
