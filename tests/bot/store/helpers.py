"""Shared helpers for the store tests: a fixed clock and small builders of valid records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store import NewDelivery, NewRun

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A timestamp `seconds` after T0: tests pass time in, as the service does."""
    return T0 + timedelta(seconds=seconds)


def delivery(gid: str, *, source: str = "github:app/1", seconds: float = 0, body: bytes | None = None,
             event: str = "issue_comment", action: str | None = "created") -> NewDelivery:
    return NewDelivery(source=source, delivery_id=gid, event=event, action=action,
                       body=body if body is not None else b'{"gid": "' + gid.encode() + b'"}',
                       received_at=at(seconds))


def new_run(run_id: str, *, repo: str = "octo/demo", number: int | None = 7, actor: str = "alice",
            trigger_key: str | None = None, name_token: str | None = None, retry_of: str | None = None,
            model: str | None = "tiny", head_sha: str | None = "a" * 40) -> NewRun:
    return NewRun(run_id=run_id, repo=repo, actor=actor, command="/train tiny lora_rank=8", kind="train+eval",
                  run_token="tok-" + run_id, number=number, head_sha=head_sha, model=model,
                  job_spec={"run_id": run_id, "kind": "train+eval"}, result_key="rk-" + run_id,
                  name_token=name_token, trigger_key=trigger_key, retry_of=retry_of)
