"""The agent→bot event protocol: what a run reports while it works, as versioned, sequenced JSON objects."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .jobspec import EVAL_BACKENDS, SpecError

# Versioning: `v` changes when an event an older bot accepted would now be read differently, or when every run would
# send something an older bot refuses (it refuses unknown types and fields, and then waits on the sequence gap).
# An addition that only jobs made by a bot that knows it can cause stays in the version: `tracker` is sent only for
# jobs whose `tracking` names wandb, SwanLab or MLflow, a field only bots that read `tracker` events put in a job.
EVENT_VERSION = 1

EventType = Literal["accepted", "phase", "progress", "eval_result", "artifact", "heartbeat", "tracker", "finished"]
Phase = Literal["download", "train", "merge", "eval", "upload"]
Status = Literal["succeeded", "failed", "cancelled"]

EVENT_TYPES: tuple[str, ...] = get_args(EventType)
PHASES: tuple[str, ...] = get_args(Phase)
STATUSES: tuple[str, ...] = get_args(Status)

# Payload fields per event type: name -> (accepted python types, required).
_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_PAYLOADS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "accepted": {"kind": ((str,), True), "model": ((str,), True), "host": ((str, type(None)), False)},
    "phase": {"phase": ((str,), True), "detail": ((str, type(None)), False)},
    "progress": {
        "step": ((int,), True),
        "total": ((int,), True),
        "loss": (_OPT_NUM, False),
        "learning_rate": (_OPT_NUM, False),
        "eta_s": (_OPT_NUM, False),
        "samples_per_s": (_OPT_NUM, False),
        "epoch": (_OPT_NUM, False),
        "phase": ((str,), False),
    },
    # `subsets`: {name: {"n", "correct"}}; `questions`: {"<subset>/<row id>": bool} — the paired outcomes the bot's
    # comparisons need; `manifest`: model/adapter/dataset hashes and tool versions (see commands.results).
    "eval_result": {
        "benchmark": ((str,), True),
        "score": (_NUM, True),
        "n": ((int,), True),
        "correct": ((int,), False),
        "subsets": ((dict,), False),
        "questions": ((dict,), False),
        "config_hash": ((str,), False),
        "manifest": ((dict,), False),
        # "base": the untuned base model's score from the same served evaluation (job.eval_base), not the run's own.
        "model": ((str,), False),
        # The path that really produced the score: "native" or "served" (jobspec.EVAL_BACKENDS). It differs from the
        # job's `eval_backend` when a served job's server could not start and the agent scored natively; the bot
        # then stores the score under the native result key. Sent only for jobs with `eval_backend: served`, which
        # only bots that read it make (it ships with served evaluation), so it stays in the version; absent: the
        # job's own backend (a native job is always scored natively).
        "backend": ((str,), False),
    },
    "artifact": {
        "name": ((str,), True),
        "path": ((str,), True),
        "sha256": ((str, type(None)), False),
        "bytes": ((int, type(None)), False),
        # The trained adapter's (or model's) event: what it was trained from, as the runner resolved it.
        "manifest": ((dict,), False),
    },
    "heartbeat": {},
    # The experiment tracker's page of this run, as the tracker printed it (runner_agent/tracking.py).
    "tracker": {"tool": ((str,), True), "url": ((str,), True)},
    "finished": {"status": ((str,), True), "reason": ((str, type(None)), False)},
}
_ENVELOPE = {"v", "run_id", "seq", "ts", "type"}
LINKED_TRACKERS = ("wandb", "swanlab", "mlflow")  # TensorBoard's files are in the artifact: no page to link
TRACKER_URL_MAX = 500
_TRACKER_URL = re.compile(r"https?://[^\s<>\"'`()\[\]\\]+")


@dataclass(frozen=True)
class Event:
    """One event of one run. `seq` starts at 0 and increases by one; `ts` is seconds since the epoch (the caller's)."""

    run_id: str
    seq: int
    ts: float
    type: EventType
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.type == "finished"

    def to_dict(self) -> dict[str, Any]:
        return {"v": EVENT_VERSION, "run_id": self.run_id, "seq": self.seq, "ts": self.ts, "type": self.type,
                **dict(self.data)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)


def make_event(run_id: str, seq: int, ts: float, type: str, **data: Any) -> Event:
    """Build an event and check it against the protocol, so a bad event fails where it is made."""
    return event_from_dict({"v": EVENT_VERSION, "run_id": run_id, "seq": seq, "ts": ts, "type": type, **data})


def event_from_dict(raw: Any) -> Event:
    if not isinstance(raw, Mapping):
        raise SpecError("event: expected a JSON object")
    if raw.get("v") != EVENT_VERSION:
        raise SpecError(f"event: unsupported version {raw.get('v')!r}; expected {EVENT_VERSION}")
    etype = raw.get("type")
    if etype not in _PAYLOADS:
        raise SpecError(f"event: unknown type {etype!r}; allowed: {', '.join(EVENT_TYPES)}")
    run_id, seq, ts = raw.get("run_id"), raw.get("seq"), raw.get("ts")
    if not isinstance(run_id, str) or not run_id:
        raise SpecError("event.run_id: must be a non-empty string")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise SpecError("event.seq: must be a non-negative integer")
    if not isinstance(ts, _NUM) or isinstance(ts, bool):
        raise SpecError("event.ts: must be a number")
    spec = _PAYLOADS[etype]
    data = {k: v for k, v in raw.items() if k not in _ENVELOPE}
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise SpecError(f"event {etype}: unknown field(s) {', '.join(unknown)}")
    for name, (types, required) in spec.items():
        if name not in data:
            if required:
                raise SpecError(f"event {etype}: missing field {name!r}")
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise SpecError(f"event {etype}.{name}: wrong type {type(value).__name__}")
    if etype == "phase" and data["phase"] not in PHASES:
        raise SpecError(f"event phase: unknown phase {data['phase']!r}; allowed: {', '.join(PHASES)}")
    if etype == "tracker":
        if data["tool"] not in LINKED_TRACKERS:
            raise SpecError(f"event tracker: unknown tool {data['tool']!r}; allowed: {', '.join(LINKED_TRACKERS)}")
        if not valid_tracker_url(data["url"]):
            raise SpecError("event tracker.url: an http(s) address without spaces, quotes or brackets, at most "
                            f"{TRACKER_URL_MAX} characters")
    if etype == "finished" and data["status"] not in STATUSES:
        raise SpecError(f"event finished: unknown status {data['status']!r}; allowed: {', '.join(STATUSES)}")
    if etype == "eval_result" and data.get("backend", "native") not in EVAL_BACKENDS:
        raise SpecError(f"event eval_result: unknown backend {data['backend']!r}; allowed: {', '.join(EVAL_BACKENDS)}")
    return Event(run_id=run_id, seq=seq, ts=float(ts), type=etype, data=data)


def valid_tracker_url(url: str) -> bool:
    """Whether `url` may be a tracker link on a card: http(s), no spaces, quotes or brackets, not too long."""
    return len(url) <= TRACKER_URL_MAX and _TRACKER_URL.fullmatch(url) is not None


def event_from_json(text: str | bytes) -> Event:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"event: not valid JSON ({exc})") from None
    return event_from_dict(raw)


# --- signing of callback bodies ---------------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Tunebot-Signature-256"


def sign_body(token: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC of the exact body bytes with the run's token (the same shape as GitHub's header)."""
    return "sha256=" + hmac.new(token.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_body(token: str, body: bytes, signature: str | None) -> bool:
    """Whether `signature` is the body's HMAC with the token, in constant time; any other text (non-ASCII
    included, which `compare_digest` refuses on str) is simply wrong."""
    if not signature or not signature.startswith("sha256="):
        return False
    return hmac.compare_digest(sign_body(token, body).encode("ascii"), signature.encode("utf-8", errors="replace"))


# --- the signed event log ------------------------------------------------------------------------------------------
# The agent also writes every event to `events.jsonl` and, at the end, the file's HMAC (with the run's token) to
# `events.jsonl.sig`; the workflow uploads both as the artifact `tunebot-<run_id>-events`. When the agent could not
# reach the callback at the end, the bot reads the run's outcome from there instead of calling the run failed.
EVENTS_FILE = "events.jsonl"
EVENTS_SIGNATURE_FILE = "events.jsonl.sig"


def events_artifact(run_id: str) -> str:
    return f"tunebot-{run_id}-events"


def events_from_log(token: str, body: bytes, signature: str, run_id: str) -> list[Event]:
    """The events of a signed event log, checked: the signature covers the exact bytes, every line is an event of
    `run_id`. SpecError says what is wrong (a tampered or foreign log is refused as a whole)."""
    if not verify_body(token, body, signature.strip()):
        raise SpecError(f"{EVENTS_FILE}: the signature does not match (not written by this run's agent, or changed)")
    events = []
    for n, line in enumerate(body.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = event_from_json(line)
        except SpecError as exc:
            raise SpecError(f"{EVENTS_FILE} line {n}: {exc}") from None
        if event.run_id != run_id:
            raise SpecError(f"{EVENTS_FILE} line {n}: an event of run {event.run_id}, not {run_id}")
        events.append(event)
    return events
