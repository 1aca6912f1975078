"""The command handlers, one module per verb family, each registered against the verbs it serves; `HANDLERS` maps
every verb to its handler and `check_handlers()` fails start-up if a verb of `commands.verbs` has none."""

from __future__ import annotations

from . import approve, leaderboard, runs, start
from .base import HANDLERS, Handler, Invocation, Parts, check_handlers

__all__ = ["HANDLERS", "Handler", "Invocation", "Parts", "approve", "check_handlers", "leaderboard", "runs", "start"]
