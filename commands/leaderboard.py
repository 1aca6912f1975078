"""The scheduled leaderboard's rules: which runs' results count, why the others do not, and how the ranking reads in
the tracking issue's comment and the short Slack message (bot/leaderboard.py reads the runs and posts)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .jobspec import SpecError
from .render import fmt
from .render.github import leaderboard_section, ranked_entries
from .render.i18n import Language, normalize_language, t
from .render.slack import esc as slack_esc
from .render.split import GITHUB_COMMENT_LIMIT, measure
from .render.views import LeaderboardEntry
from .results import Results, results_from_dict

MARKER = "<!-- tunebot:leaderboard -->"
DEFAULT_LIMIT = 20
SLACK_TOP = 5  # rows per benchmark in the chat message; the comment has the full table
_MAX_NOTES = 50  # "not ranked" lines shown; the rest are counted
_REASON_CHARS = 300


class LeaderboardConfigError(ValueError):
    """The command line or environment cannot work; the message names the flag or variable to fix."""


# --- which results count -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A run (or one benchmark of it) left out of the ranking, and why; shown under the tables."""

    where: str  # the run directory, relative to the results root
    model: str | None
    reason: str


@dataclass(frozen=True)
class Collected:
    """Everything read from a results directory: rankable entries and what was left out."""

    entries: tuple[LeaderboardEntry, ...]
    skipped: tuple[Skipped, ...] = ()
    runs: int = 0  # run directories found

    @property
    def benchmarks(self) -> tuple[str, ...]:
        return tuple(sorted({e.benchmark for e in self.entries}))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({e.model for e in self.entries}))


@dataclass(frozen=True)
class _Events:
    """What a run's events.jsonl says: the model it `accepted`, and the status and reason it `finished` with."""

    model: str | None = None
    status: str = ""
    reason: object = None


def parse_benchmarks(text: str | None, known: Sequence[str]) -> tuple[str, ...]:
    """The benchmark names of an `/eval` argument list ("cmmlu ceval limit=50" → cmmlu, ceval), in the given order.

    `key=value` options are skipped: the workflow passes the same words it gives `/eval`. Unknown names are an
    error, since a typo would otherwise post an empty ranking every day.
    """
    if text is None:
        return ()
    names: list[str] = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word or "=" in word:
            continue
        if word not in known:
            raise LeaderboardConfigError(f"--benchmarks: unknown benchmark {word!r} (known: {', '.join(known)})")
        if word not in names:
            names.append(word)
    return tuple(names)


def _events(text: str) -> _Events:
    model: str | None = None
    status: object = None
    reason: object = None
    for line in text.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line cut short when the runner died: the others still count
        if not isinstance(ev, dict):
            continue
        if ev.get("type") == "accepted" and isinstance(ev.get("model"), str):
            model = ev["model"]
        elif ev.get("type") == "finished":
            status, reason = ev.get("status"), ev.get("reason")
    return _Events(model, str(status or ""), reason)


def _first_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return fmt.shorten(lines[0], _REASON_CHARS) if lines else ""


def _why(lang: Language, status: str, reason: object) -> str:
    key = {"failed": "state.failed", "partial": "lb.why.partial", "cancelled": "state.cancelled"}.get(status)
    head = t(lang, key) if key else (status or t(lang, "state.failed"))
    detail = _first_line(reason)
    return f"{head}: {detail}" if detail else head


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _model_of(results: Results) -> str | None:
    model = results.manifest.get("model")
    name = model.get("name") if isinstance(model, Mapping) else None
    return name if isinstance(name, str) and name.strip() else None


def _adapter_of(results: Results) -> str | None:
    """The run whose adapter was evaluated: an input adapter's run, or this run when it trained one itself."""
    adapter = results.manifest.get("adapter")
    if isinstance(adapter, Mapping):
        if adapter.get("source") == "input" and isinstance(adapter.get("run_id"), str):
            return str(adapter["run_id"])
        return results.run_id or None
    if results.manifest.get("trained_model") is not None:
        return results.run_id or None
    return None


def _parse(results_json: str | Exception) -> Results | Exception:
    try:
        return results_json if isinstance(results_json, Exception) else results_from_dict(json.loads(results_json))
    except (ValueError, TypeError, SpecError) as exc:
        return exc


def run_entries(where: str, events_jsonl: str, results_json: str | Exception | None, wanted: Sequence[str],
                lang: Language, *, mtime: float = 0.0) -> tuple[list[LeaderboardEntry], list[Skipped]]:
    """The entries one run contributes (only benchmarks in `wanted`, or all when empty) and what it leaves out.

    It takes the run's files as read: events.jsonl's text, and results.json's text, the error reading it, or None when
    there is none; `mtime` (results.json's) dates a result whose manifest says neither when it finished nor started.
    """
    events = _events(events_jsonl)
    results = None if results_json is None else _parse(results_json)
    if results is None:
        why = _why(lang, events.status, events.reason) if events.status else t(lang, "lb.why.unfinished")
        return [], [Skipped(where, events.model, why)]
    if isinstance(results, Exception):
        return [], [Skipped(where, events.model, f"{t(lang, 'lb.why.unreadable')}: {_first_line(results)}")]
    model = _model_of(results)
    if results.status != "succeeded":
        reason = events.reason if events.status in ("failed", "cancelled") else None
        return [], [Skipped(where, model or events.model, _why(lang, results.status, reason))]
    if model is None:
        return [], [Skipped(where, events.model, t(lang, "lb.why.no_model"))]
    date = _number(results.manifest.get("finished_at")) or _number(results.manifest.get("started_at")) or mtime
    adapter = _adapter_of(results)
    entries: list[LeaderboardEntry] = []
    skipped: list[Skipped] = []
    for name in wanted or sorted(results.benchmarks):
        bench = results.benchmarks.get(name)
        shown = fmt.bench_name(name)
        if bench is None:
            skipped.append(Skipped(where, model, t(lang, "lb.why.no_bench", bench=shown)))
            continue
        if bench.n == 0:
            skipped.append(Skipped(where, model, t(lang, "lb.why.no_questions", bench=shown)))
            continue
        try:
            # A base model shows as "(base model)"; an adapter as the run that trained it.
            entries.append(LeaderboardEntry(benchmark=name, model=model, score=bench.score, n=bench.n, date=date,
                                            run_id=results.run_id if adapter else "", adapter=adapter))
        except ValueError as exc:
            skipped.append(Skipped(where, model, t(lang, "lb.why.bad_score", bench=shown, detail=exc)))
    return entries, skipped


def keep_newest(found: Sequence[tuple[LeaderboardEntry, str]], lang: Language) \
        -> tuple[tuple[LeaderboardEntry, ...], list[Skipped]]:
    """Of the same model (and adapter) on a benchmark twice, the newer result; the older ones, said as skipped.

    `found` pairs each entry with its run directory (relative, `/`-separated); ties in date go by that path.
    """
    newest: dict[tuple[str, str, str], tuple[LeaderboardEntry, str]] = {}
    skipped: list[Skipped] = []
    for e, where in sorted(found, key=lambda x: (x[0].date, x[1].split("/"))):
        key = (e.benchmark, e.model, e.adapter or "")
        if key in newest:
            old, old_where = newest[key]
            skipped.append(Skipped(old_where, e.model, t(lang, "lb.why.superseded", bench=fmt.bench_name(e.benchmark),
                                                          when=fmt.timestamp(old.date))))
        newest[key] = (e, where)
    kept = tuple(sorted((e for e, _ in newest.values()), key=lambda e: (e.benchmark, -e.score, e.model)))
    return kept, skipped


# --- what is posted ----------------------------------------------------------------------------------------------


def leaderboard_markdown(collected: Collected, benchmarks: Sequence[str] = (), language: str = "en", *,
                         limit: int = DEFAULT_LIMIT, now: float, run_url: str | None = None) -> str:
    """The ranking as GitHub Markdown: a title with the date, one table per benchmark, then what was not ranked."""
    lang = normalize_language(language)
    wanted = list(benchmarks) or list(collected.benchmarks)
    head = f"## 🏆 {t(lang, 'lb.title_all')} · {fmt.date(now)}"
    count = len(collected.models)
    sub = [t(lang, "lb.ranked_one") if count == 1 else t(lang, "lb.ranked", n=count),
           t(lang, "card.updated", t=fmt.timestamp(now))]
    if run_url:
        sub.append(fmt.link(t(lang, "lb.workflow"), run_url))
    parts = [head, "<sub>" + " · ".join(sub) + "</sub>"]
    ranked = [e for e in collected.entries if e.benchmark in wanted]
    if not ranked:
        parts.append(t(lang, "lb.none"))
    else:
        # One table per benchmark in the order asked for (/leaderboard sorts them by name), one shared note.
        for bench in wanted:
            if any(e.benchmark == bench for e in ranked):
                parts.append(leaderboard_section(ranked, bench, lang, limit=limit))
            else:
                parts.append(t(lang, "lb.missing", bench=fmt.bench_name(bench)))
        parts.append(f"<sub>{t(lang, 'lb.note')}</sub>")
    if collected.skipped:
        lines = [f"**{t(lang, 'lb.skipped', n=len(collected.skipped))}**", ""]
        for s in collected.skipped[:_MAX_NOTES]:
            who = fmt.code(s.model) if s.model else fmt.code(s.where)
            where = f" ({fmt.code(s.where)})" if s.model and s.where else ""
            lines.append(f"- {who}{where}: {fmt.cell(s.reason)}")
        if len(collected.skipped) > _MAX_NOTES:
            lines.append(f"- {t(lang, 'lb.skipped_more', n=len(collected.skipped) - _MAX_NOTES)}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def comment_body(markdown: str) -> str:
    """The issue comment: the marker that finds it again on the next run, then the ranking."""
    body = f"{MARKER}\n{markdown}"
    if measure(body) > GITHUB_COMMENT_LIMIT:
        raise LeaderboardConfigError(f"the ranking is {measure(body)} characters, more than a GitHub comment holds "
                                     f"({GITHUB_COMMENT_LIMIT}); lower --limit")
    return body


def slack_message(collected: Collected, benchmarks: Sequence[str] = (), language: str = "en", *,
                  top: int = SLACK_TOP, now: float, link: str | None = None) -> dict[str, Any]:
    """A short chat message (text fallback + Block Kit): the top `top` of each benchmark and a link to the rest."""
    lang = normalize_language(language)
    wanted = list(benchmarks) or list(collected.benchmarks)
    title = f"🏆 {t(lang, 'lb.title_all')} · {fmt.date(now)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": fmt.shorten(title, 150), "emoji": True}}]
    summary: list[str] = []
    for bench in wanted:
        ranked = ranked_entries(collected.entries, bench)
        name = fmt.bench_name(bench)
        if not ranked:
            lines = [t(lang, "lb.missing", bench=name)]
        else:
            lines = [f"{i}. `{slack_esc(e.model)}`" + (f" ({slack_esc(e.adapter)})" if e.adapter else "")
                     + f" *{fmt.points(100 * e.score)}* (n={fmt.thousands(e.n)})"
                     for i, e in enumerate(ranked[:top], start=1)]
            summary.append(f"{name}: " + ", ".join(f"{e.model} {fmt.points(100 * e.score)}" for e in ranked[:3]))
        text = f"*{slack_esc(name)}*\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fmt.shorten(text, 3000)}})
    context: list[str] = []
    if collected.skipped:
        context.append(t(lang, "lb.slack_skipped", n=len(collected.skipped)))
    if link and link.startswith(("https://", "http://")):
        context.append(f"<{link.replace('|', '%7C').replace('>', '%3E')}|{t(lang, 'lb.full')}>")
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    fallback = title + (": " + "; ".join(summary) if summary else ": " + t(lang, "lb.none"))
    return {"text": fmt.shorten(fallback, 3000), "blocks": blocks[:50]}
