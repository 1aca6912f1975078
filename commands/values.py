"""Typed argument values and how user text is echoed back: the leaf every other command module may import."""

from __future__ import annotations

import re
from typing import TypeAlias

# A typed argument value: what a validated `key=value` (or positional) becomes.
ArgValue: TypeAlias = int | float | bool | str | tuple[str, ...]

_BARE = re.compile(r"^[A-Za-z0-9._:/@+,\-]+$")


def render_value(value: ArgValue) -> str:
    """The canonical text of a value, quoted only when it would not survive tokenising as a bare word."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = ",".join(value) if isinstance(value, tuple) else value
    if _BARE.match(text):
        return text
    quote = "'" if '"' in text else '"'
    return f"{quote}{text}{quote}"


def quote_user(text: str, limit: int = 60) -> str:
    """User text echoed back safely: one line, no backticks (so it cannot break out of a code span), shortened."""
    flat = " ".join(text.replace("`", "'").split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f"`{flat}`" if flat else "``"
