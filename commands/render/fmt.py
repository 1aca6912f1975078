"""Number, time and Markdown formatting shared by every renderer, so that a score reads the same everywhere."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from .i18n import Language

MINUS = "\u2212"  # a real minus sign: "−0.4", not "-0.4"

_DISPLAY_NAMES: dict[str, str] = {"cmmlu": "CMMLU", "ceval": "C-Eval", "general_mcq": "General MCQ"}


def bench_name(name: str) -> str:
    """How a benchmark is called in messages (CMMLU, C-Eval); unknown names are shown as they are."""
    return _DISPLAY_NAMES.get(name, name)


def points(value: float, digits: int = 1) -> str:
    """An accuracy in points: 52.3."""
    return f"{value:.{digits}f}"


def signed(value: float, digits: int = 1) -> str:
    """A change in points with its sign: +2.3, −0.4, ±0.0 (a change that rounds to zero has no direction)."""
    rounded = round(value, digits)
    if rounded == 0:
        return f"±{0:.{digits}f}"
    text = f"{abs(rounded):.{digits}f}"
    return f"+{text}" if rounded > 0 else f"{MINUS}{text}"


def p_value(p: float | None) -> str:
    """A p-value to a sensible precision: 0.62, 0.012 → 0.01, 0.0042 → 0.004, below 0.001 → < 0.001."""
    if p is None:
        return "—"
    if p < 0.001:
        return "< 0.001"
    if p < 0.01:
        return f"{p:.3f}"
    return f"{p:.2f}"


def p_clause(p: float | None) -> str:
    """p written as a clause: "p = 0.01" or "p < 0.001"."""
    text = p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def ci(low: float | None, high: float | None, digits: int = 1) -> str:
    if low is None or high is None:
        return "—"
    return f"[{signed(low, digits)}, {signed(high, digits)}]"


def number(value: float) -> str:
    """A compact number for losses and rates: 4 significant digits, scientific only when tiny or huge."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.4g}"


def hyper(values: Mapping[str, str | int | float | bool]) -> str:
    """Hyper-parameters as `key=value, …` in their given order, numbers compact (2e-4, 1, 2048)."""
    items = []
    for key, value in values.items():
        if isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, float):
            shown = number(value)
        else:
            shown = str(value)
        items.append(f"{key}={shown}")
    return ", ".join(items)


def thousands(n: int) -> str:
    return f"{n:,}"


def progress_bar(step: int, total: int, width: int = 20) -> str:
    """A text bar like `███████░░░░░░░░░░░░░` (clamped to 0-100 %)."""
    frac = 0.0 if total <= 0 else min(1.0, max(0.0, step / total))
    filled = round(frac * width)
    return "█" * filled + "░" * (width - filled)


def percent(step: int, total: int) -> int:
    return 0 if total <= 0 else int(min(100.0, max(0.0, 100.0 * step / total)))


def duration(seconds: float, language: Language) -> str:
    """A human duration: 45s, 3m 05s, 2h 04m (zh: 45秒, 3分05秒, 2小时04分)."""
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if language == "zh":
        if h:
            return f"{h}小时{m:02d}分"
        if m:
            return f"{m}分{s:02d}秒"
        return f"{s}秒"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def timestamp(ts: float) -> str:
    """An epoch time in UTC, to the minute: 2025-01-17 15:41 UTC."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def date(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def short_sha(sha: str) -> str:
    return sha[:7] if re.fullmatch(r"[0-9a-fA-F]{8,40}", sha) else sha


# --- Markdown safety ----------------------------------------------------------------------------------------------

_MENTION = re.compile(r"(?<![\w`])@(?=[A-Za-z0-9])")


def defuse(text: str) -> str:
    """User text made unable to forge a hidden marker (`<!-- tunebot:… -->`) or ping people with an @mention."""
    text = text.replace("<!--", "<\u200b!--").replace("-->", "-\u200b->")
    return _MENTION.sub("@\u200b", text)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks, no HTML."""
    flat = " ".join(defuse(text).split())
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    """An inline code span that survives backticks and newlines in `text`."""
    flat = " ".join(text.replace("<!--", "<\u200b!--").split())
    longest = max((len(m) for m in re.findall(r"`+", flat)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}" if flat else "` `"


def fenced(text: str, info: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside `text`."""
    body = text.replace("<!--", "<\u200b!--")
    longest = max((len(m) for m in re.findall(r"`{3,}", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body.rstrip()}\n{fence}"


def html_text(text: str) -> str:
    """Plain text safe inside an HTML element such as <summary>."""
    return defuse(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub Markdown table; `align` holds one of l/r/c per column (default left). Cells must be pre-escaped."""
    marks = {"l": "---", "r": "--:", "c": ":-:"}
    spec = [marks.get(align[i] if i < len(align) else "l", "---") for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(spec) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def link(label: str, url: str | None) -> str:
    """A Markdown link, or just the label when there is no (safe) URL."""
    if not url or not url.startswith(("https://", "http://")):
        return label
    return f"[{label}]({url.replace(' ', '%20').replace(')', '%29')})"


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, ending in an ellipsis when cut."""
    if limit <= 0:
        return ""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def tail_lines(text: str, lines: int = 20, chars: int = 2000) -> str:
    """The end of a long error text: what usually says what went wrong."""
    kept = "\n".join(text.rstrip().splitlines()[-lines:])
    return kept if len(kept) <= chars else "…" + kept[-(chars - 1):]
