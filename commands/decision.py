"""The outcome of reading a comment: parsed commands, a reply to post, or a reason to stay silent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .values import ArgValue, quote_user, render_value
from .verbs.base import render_command

__all__ = ["ArgValue", "Command", "Decision", "Ignore", "Parsed", "Reply", "quote_user", "render_value"]


@dataclass(frozen=True)
class Command:
    """One validated command: the verb, its typed arguments (canonical names) and where it came from.

    `line` (the text as typed) and `lineno` (1-based line in the comment) do not take part in equality: two comments
    that say the same thing in different words give equal commands.
    """

    verb: str
    args: Mapping[str, ArgValue] = field(default_factory=dict)
    line: str = field(default="", compare=False)
    lineno: int = field(default=0, compare=False)

    def __hash__(self) -> int:
        return hash(self.render())

    def get(self, key: str, default: Any = None) -> Any:
        return self.args.get(key, default)

    def render(self) -> str:
        """Canonical text that parses back to an equal command."""
        return render_command(self.verb, self.args)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verb": self.verb,
            "args": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(self.args.items())},
            "render": self.render(),
            "line": self.line,
            "lineno": self.lineno,
        }


@dataclass(frozen=True)
class Parsed:
    """One or more commands to act on, in comment order; `notes` tell the user how odd input was read."""

    commands: tuple[Command, ...]
    notes: tuple[str, ...] = ()

    outcome = "parsed"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "commands": [c.to_dict() for c in self.commands], "notes": list(self.notes)}


@dataclass(frozen=True)
class Reply:
    """Text to post back (help, a usage error, a suggestion); nothing is started."""

    text: str

    outcome = "reply"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "text": self.text}


@dataclass(frozen=True)
class Ignore:
    """Say nothing; `reason` is for the log."""

    reason: str

    outcome = "ignore"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason}


Decision: TypeAlias = Parsed | Reply | Ignore
