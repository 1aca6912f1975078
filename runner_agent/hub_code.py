"""Decides whether a tool process may run a model's hub code (`trust_remote_code`): only when the signed job says
so, which the bot allows only for presets that need it and repositories whose policy opted in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

GUARD_DIR = Path(__file__).resolve().parent / "hub_code_guard"


def tool_environ(env: Mapping[str, str], *, allowed: bool) -> dict[str, str]:
    """`env` for a tool process; without `allowed`, every Python process in it refuses hub code (see the guard)."""
    out = dict(env)
    parts = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(GUARD_DIR)]
    if allowed:
        out.pop("TUNEBOT_HUB_CODE", None)
        if parts:
            out["PYTHONPATH"] = os.pathsep.join(parts)
        else:
            out.pop("PYTHONPATH", None)
        return out
    out["TUNEBOT_HUB_CODE"] = "forbid"
    out["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), *parts])
    return out
