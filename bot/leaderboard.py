"""The scheduled leaderboard: which runs' results count, how the ranking reads, and keeping one marked issue
comment (plus a short chat post) up to date with it.

`tunebot runs leaderboard` (wired in bot/cli.py) reads the runs the leaderboard workflow downloaded (one directory
per run, as `tunebot agent run --out` leaves it: `results.json` and `events.jsonl`), ranks every benchmark with
`commands.render.render_leaderboard`, prints the Markdown, and with `--post` keeps the ranking in one comment on a
tracking issue and posts a short message to Slack. Only `leaderboard_main` reads the environment; everything
below it takes explicit values.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.github.port import Comment, GitHubError, GitHubPort
from commands.jobspec import SpecError
from commands.render import LeaderboardEntry, fmt, render_leaderboard
from commands.render.i18n import Language, normalize_language, t
from commands.render.slack import esc as slack_esc
from commands.render.split import GITHUB_COMMENT_LIMIT, measure
from commands.results import Results, results_from_dict

MARKER = "<!-- tunebot:leaderboard -->"
# Who writes the comment when the workflow posts with its GITHUB_TOKEN; another token needs
# TUNEBOT_LEADERBOARD_AUTHOR (a PAT's user, or `<app-slug>[bot]` for an App installation token).
DEFAULT_AUTHOR = "github-actions[bot]"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SLACK_TOP = 5  # rows per benchmark in the chat message; the comment has the full table
# How deep run directories may lie under --results: DIR/results.json, DIR/<artifact>/…, DIR/<group>/<artifact>/…
MAX_DEPTH = 3
_MAX_NOTES = 50  # "not ranked" lines shown; the rest are counted
_REASON_CHARS = 300
_PROG = "tunebot runs leaderboard"

_TEXT: dict[str, tuple[str, str]] = {
    "updated": ("updated {t}", "更新于 {t}"),
    "ranked": ("{n} models ranked", "{n} 个模型参与排名"),
    "ranked_one": ("1 model ranked", "1 个模型参与排名"),
    "workflow": ("workflow run", "工作流运行"),
    "none": ("No results in this run.", "本次运行没有可用的评测结果。"),
    "missing": ("No result for {bench} in this run.", "本次运行没有 {bench} 的结果。"),
    "skipped": ("Not ranked ({n})", "未参与排名（{n}）"),
    "skipped_more": ("… and {n} more", "……另有 {n} 条"),
    "full": ("full ranking", "完整排名"),
    "slack_skipped": ("{n} not ranked", "{n} 项未参与排名"),
    "why.failed": ("failed", "失败"),
    "why.partial": ("partial results (a benchmark failed)", "结果不完整（有基准评测失败）"),
    "why.cancelled": ("cancelled", "已取消"),
    "why.unfinished": ("did not finish (no results.json; the job may have timed out or been cancelled)",
                       "未完成（没有 results.json，作业可能超时或被取消）"),
    "why.unreadable": ("unreadable results.json", "无法读取 results.json"),
    "why.no_model": ("results.json names no model (manifest.model.name)",
                     "results.json 中没有模型名（manifest.model.name）"),
    "why.no_bench": ("no {bench} score", "没有 {bench} 成绩"),
    "why.no_questions": ("{bench}: no questions were scored", "{bench}：没有评分的题目"),
    "why.bad_score": ("{bench}: malformed score ({detail})", "{bench}：成绩格式错误（{detail}）"),
    "why.superseded": ("{bench}: an older result (finished {when}); the newer one is ranked",
                       "{bench}：较早的结果（完成于 {when}），已采用较新的结果"),
}


def _t(lang: Language, key: str, **values: object) -> str:
    en, zh = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


class LeaderboardConfigError(ValueError):
    """The command line or environment cannot work; the message names the flag or variable to fix."""


# --- reading the runs --------------------------------------------------------------------------------------------


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


def find_run_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Directories that hold an agent's output (`results.json` or `events.jsonl`), outermost only, sorted."""
    found: set[Path] = set()
    for name in ("results.json", "events.jsonl"):
        for path in root.rglob(name):
            if path.is_file() and len(path.relative_to(root).parts) <= max_depth:
                found.add(path.parent)
    # A run's own subfolders (eval/, logs/) never count as runs of their own.
    return sorted(d for d in found if not any(o != d and o in d.parents for o in found))


def _finished_event(run_dir: Path) -> dict[str, Any]:
    """What events.jsonl says about the run: the `accepted` model and the `finished` status and reason."""
    out: dict[str, Any] = {}
    path = run_dir / "events.jsonl"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line cut short when the runner died: the others still count
        if not isinstance(ev, dict):
            continue
        if ev.get("type") == "accepted" and isinstance(ev.get("model"), str):
            out["model"] = ev["model"]
        elif ev.get("type") == "finished":
            out["status"] = ev.get("status")
            out["reason"] = ev.get("reason")
    return out


def _first_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return fmt.shorten(lines[0], _REASON_CHARS) if lines else ""


def _why(lang: Language, status: str, reason: object) -> str:
    key = {"failed": "why.failed", "partial": "why.partial", "cancelled": "why.cancelled"}.get(status)
    head = _t(lang, key) if key else (status or _t(lang, "why.failed"))
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


def read_run(run_dir: Path, root: Path, wanted: Sequence[str], lang: Language) \
        -> tuple[list[LeaderboardEntry], list[Skipped]]:
    """The entries one run contributes (only benchmarks in `wanted`, or all when empty) and what it leaves out."""
    where = run_dir.relative_to(root).as_posix() if run_dir != root else "."
    events = _finished_event(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        model = events.get("model") if isinstance(events.get("model"), str) else None
        status = str(events.get("status") or "")
        why = _why(lang, status, events.get("reason")) if status else _t(lang, "why.unfinished")
        return [], [Skipped(where, model, why)]
    try:
        results = results_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, SpecError) as exc:
        return [], [Skipped(where, events.get("model"), f"{_t(lang, 'why.unreadable')}: {_first_line(exc)}")]
    model = _model_of(results)
    if results.status != "succeeded":
        reason = events.get("reason") if events.get("status") in ("failed", "cancelled") else None
        return [], [Skipped(where, model or events.get("model"), _why(lang, results.status, reason))]
    if model is None:
        return [], [Skipped(where, events.get("model"), _t(lang, "why.no_model"))]
    manifest = results.manifest
    date = (_number(manifest.get("finished_at")) or _number(manifest.get("started_at"))
            or path.stat().st_mtime)
    adapter = _adapter_of(results)
    entries: list[LeaderboardEntry] = []
    skipped: list[Skipped] = []
    for name in wanted or sorted(results.benchmarks):
        bench = results.benchmarks.get(name)
        shown = fmt.bench_name(name)
        if bench is None:
            skipped.append(Skipped(where, model, _t(lang, "why.no_bench", bench=shown)))
            continue
        if bench.n == 0:
            skipped.append(Skipped(where, model, _t(lang, "why.no_questions", bench=shown)))
            continue
        try:
            # A base model shows as "(base model)"; an adapter as the run that trained it.
            entries.append(LeaderboardEntry(benchmark=name, model=model, score=bench.score, n=bench.n, date=date,
                                            run_id=results.run_id if adapter else "", adapter=adapter))
        except ValueError as exc:
            skipped.append(Skipped(where, model, _t(lang, "why.bad_score", bench=shown, detail=exc)))
    return entries, skipped


def collect(root: Path, benchmarks: Sequence[str] = (), language: str = "en") -> Collected:
    """Read every run under `root`. The same model (and adapter) twice on a benchmark keeps the newer result."""
    lang = normalize_language(language)
    if not root.is_dir():
        raise LeaderboardConfigError(f"--results: {root} is not a directory")
    runs = find_run_dirs(root)
    found: list[tuple[LeaderboardEntry, Path]] = []
    skipped: list[Skipped] = []
    for run_dir in runs:
        got, left = read_run(run_dir, root, benchmarks, lang)
        found += [(e, run_dir) for e in got]
        skipped += left
    newest: dict[tuple[str, str, str], tuple[LeaderboardEntry, Path]] = {}
    for e, run_dir in sorted(found, key=lambda x: (x[0].date, x[1])):
        key = (e.benchmark, e.model, e.adapter or "")
        if key in newest:
            old, old_dir = newest[key]
            where = old_dir.relative_to(root).as_posix() if old_dir != root else "."
            skipped.append(Skipped(where, e.model, _t(lang, "why.superseded", bench=fmt.bench_name(e.benchmark),
                                                        when=fmt.timestamp(old.date))))
        newest[key] = (e, run_dir)
    kept = tuple(sorted((e for e, _ in newest.values()), key=lambda e: (e.benchmark, -e.score, e.model)))
    return Collected(entries=kept, skipped=tuple(skipped), runs=len(runs))


# --- what is posted ----------------------------------------------------------------------------------------------


def leaderboard_markdown(collected: Collected, benchmarks: Sequence[str] = (), language: str = "en", *,
                         limit: int = DEFAULT_LIMIT, now: float, run_url: str | None = None) -> str:
    """The ranking as GitHub Markdown: a title with the date, one table per benchmark, then what was not ranked."""
    lang = normalize_language(language)
    wanted = list(benchmarks) or list(collected.benchmarks)
    head = f"## 🏆 {t(lang, 'lb.title_all')} · {fmt.date(now)}"
    count = len(collected.models)
    sub = [_t(lang, "ranked_one") if count == 1 else _t(lang, "ranked", n=count),
           _t(lang, "updated", t=fmt.timestamp(now))]
    if run_url:
        sub.append(fmt.link(_t(lang, "workflow"), run_url))
    parts = [head, "<sub>" + " · ".join(sub) + "</sub>"]
    ranked = [e for e in collected.entries if e.benchmark in wanted]
    if not ranked:
        parts.append(_t(lang, "none"))
    else:
        # One table per benchmark in the order asked for (render_leaderboard sorts by name), one shared note.
        note = f"<sub>{t(lang, 'lb.note')}</sub>"
        for bench in wanted:
            if any(e.benchmark == bench for e in ranked):
                table = render_leaderboard(ranked, lang, benchmark=bench, limit=limit).rstrip()
                parts.append(table.removesuffix(note).rstrip())
            else:
                parts.append(_t(lang, "missing", bench=fmt.bench_name(bench)))
        parts.append(note)
    if collected.skipped:
        lines = [f"**{_t(lang, 'skipped', n=len(collected.skipped))}**", ""]
        for s in collected.skipped[:_MAX_NOTES]:
            who = fmt.code(s.model) if s.model else fmt.code(s.where)
            where = f" ({fmt.code(s.where)})" if s.model and s.where else ""
            lines.append(f"- {who}{where}: {fmt.cell(s.reason)}")
        if len(collected.skipped) > _MAX_NOTES:
            lines.append(f"- {_t(lang, 'skipped_more', n=len(collected.skipped) - _MAX_NOTES)}")
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
        ranked = sorted((e for e in collected.entries if e.benchmark == bench),
                        key=lambda e: (-e.score, -e.n, e.date, e.model))
        name = fmt.bench_name(bench)
        if not ranked:
            lines = [_t(lang, "missing", bench=name)]
        else:
            lines = [f"{i}. `{slack_esc(e.model)}`" + (f" ({slack_esc(e.adapter)})" if e.adapter else "")
                     + f" *{fmt.points(100 * e.score)}* (n={fmt.thousands(e.n)})"
                     for i, e in enumerate(ranked[:top], start=1)]
            summary.append(f"{name}: " + ", ".join(f"{e.model} {fmt.points(100 * e.score)}" for e in ranked[:3]))
        text = f"*{slack_esc(name)}*\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fmt.shorten(text, 3000)}})
    context: list[str] = []
    if collected.skipped:
        context.append(_t(lang, "slack_skipped", n=len(collected.skipped)))
    if link and link.startswith(("https://", "http://")):
        context.append(f"<{link.replace('|', '%7C').replace('>', '%3E')}|{_t(lang, 'full')}>")
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    fallback = title + (": " + "; ".join(summary) if summary else ": " + _t(lang, "none"))
    return {"text": fmt.shorten(fallback, 3000), "blocks": blocks[:50]}


# --- posting -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommentResult:
    action: Literal["created", "edited", "unchanged"]
    comment_id: int
    html_url: str
    foreign: tuple[Comment, ...] = ()  # comments that carry the marker but were written by someone else (untouched)
    written_by: str | None = None  # on create: who GitHub says wrote it (differs from `author` when misconfigured)


def _is_marked(comment: Comment) -> bool:
    return comment.body.lstrip().startswith(MARKER)


async def upsert_comment(github: GitHubPort, repo: str, issue: int, body: str, *, author: str) -> CommentResult:
    """Keep one ranking comment on the issue: edit the bot's own marked comment (the oldest, if a race left two),
    else create it. A comment by anyone else is never edited, even when it carries the marker."""
    if not body.startswith(MARKER):
        body = f"{MARKER}\n{body}"
    marked = [c for c in await github.list_comments(repo, issue) if _is_marked(c)]
    own = sorted((c for c in marked if c.author_login.lower() == author.lower()), key=lambda c: c.id)
    foreign = tuple(c for c in marked if c.author_login.lower() != author.lower())
    if own:
        mine = own[0]
        if mine.body == body:
            return CommentResult("unchanged", mine.id, mine.html_url, foreign)
        await github.edit_comment(repo, mine.id, body)
        return CommentResult("edited", mine.id, mine.html_url, foreign)
    ref = await github.create_comment(repo, issue, body)
    # Whether the next run will recognise this comment as its own (a token acting as someone other than `author`
    # would otherwise add a new comment every day).
    try:
        written_by: str | None = (await github.get_comment(repo, ref.id)).author_login
    except GitHubError:  # the comment is posted; only the check is lost
        written_by = None
    return CommentResult("created", ref.id, ref.html_url, foreign, written_by)


@dataclass(frozen=True)
class PostSettings:
    """Where `--post` sends the ranking; every value explicit (leaderboard_main builds it from the environment)."""

    repo: str | None = None
    issue: int | None = None
    github_token: str | None = field(default=None, repr=False)
    github_api_url: str = DEFAULT_API_URL
    author: str = DEFAULT_AUTHOR
    slack_channel: str | None = None
    slack_token: str | None = field(default=None, repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    run_url: str | None = None  # the workflow run that produced the results (linked from the posts)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(x for x, on in (("github", self.issue is not None), ("slack", bool(self.slack_channel))) if on)


def settings_from_env(env: Mapping[str, str]) -> PostSettings:
    """The posting settings, checked: a target without its credentials names the variable that is missing."""

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None  # Actions expands an unset `vars.X` / `secrets.X` to ""

    issue_text = get("TUNEBOT_LEADERBOARD_ISSUE")
    issue: int | None = None
    if issue_text is not None:
        digits = issue_text.removeprefix("#")
        if not digits.isdigit() or int(digits) <= 0:
            raise LeaderboardConfigError(f"TUNEBOT_LEADERBOARD_ISSUE must be an issue number, got {issue_text!r}")
        issue = int(digits)
    repo = get("GITHUB_REPOSITORY")
    token = get("GITHUB_TOKEN")
    if issue is not None:
        if token is None:
            raise LeaderboardConfigError("GITHUB_TOKEN is not set (needed to post to TUNEBOT_LEADERBOARD_ISSUE)")
        if repo is None or repo.count("/") != 1:
            raise LeaderboardConfigError(f"GITHUB_REPOSITORY must be owner/name (needed to post to "
                                         f"TUNEBOT_LEADERBOARD_ISSUE), got {repo!r}")
    channel = get("TUNEBOT_LEADERBOARD_SLACK_CHANNEL")
    slack_token = get("SLACK_BOT_TOKEN")
    if channel is not None and slack_token is None:
        raise LeaderboardConfigError("SLACK_BOT_TOKEN is not set (needed to post to TUNEBOT_LEADERBOARD_SLACK_CHANNEL)")
    run_url = None
    run_id = get("GITHUB_RUN_ID")
    if run_id and repo:
        run_url = f"{(get('GITHUB_SERVER_URL') or 'https://github.com').rstrip('/')}/{repo}/actions/runs/{run_id}"
    slack_api = get("TUNEBOT_SLACK_API_URL") or DEFAULT_SLACK_API_URL
    slack_api = slack_api if slack_api.endswith("/") else slack_api + "/"  # slack_sdk appends the method name
    return PostSettings(repo=repo, issue=issue, github_token=token,
                        github_api_url=(get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
                        author=get("TUNEBOT_LEADERBOARD_AUTHOR") or DEFAULT_AUTHOR, slack_channel=channel,
                        slack_token=slack_token, slack_api_url=slack_api,
                        run_url=run_url)


@dataclass
class PostReport:
    """What posting did, one line each, and what failed."""

    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    comment: CommentResult | None = None
    slack_ts: str | None = None


async def publish(markdown: str, collected: Collected, benchmarks: Sequence[str], settings: PostSettings, *,
                  language: str = "en", now: float, github: GitHubPort | None = None) -> PostReport:
    """Post to every configured target; one failing does not stop the other. `github` overrides the port (tests)."""
    report = PostReport()
    link = settings.run_url
    if settings.issue is not None:
        assert settings.repo is not None
        port = github
        owned = None
        if port is None:
            from bot.github.pygithub_impl import PyGithubPort

            owned = port = PyGithubPort.with_token(settings.github_api_url, settings.github_token or "")
        try:
            result = await upsert_comment(port, settings.repo, settings.issue, comment_body(markdown),
                                          author=settings.author)
            report.comment = result
            link = result.html_url or link
            report.done.append(f"{result.action} comment {result.html_url or result.comment_id} "
                               f"on {settings.repo}#{settings.issue}")
            report.notes += [f"comment {c.html_url or c.id} by {c.author_login} carries the leaderboard marker but "
                             f"was not written by {settings.author}; left alone" for c in result.foreign]
            if result.written_by and result.written_by.lower() != settings.author.lower():
                report.notes.append(f"warning: the comment was written by {result.written_by}, not "
                                    f"{settings.author}; set TUNEBOT_LEADERBOARD_AUTHOR={result.written_by} or the "
                                    "next run cannot find it and posts another one")
        except (GitHubError, LeaderboardConfigError) as exc:
            report.errors.append(f"GitHub {settings.repo}#{settings.issue}: {exc}")
        finally:
            if owned is not None:
                await owned.close()
    if settings.slack_channel:
        import aiohttp

        from bot.notify.slack import SlackError, SlackNotifier

        message = slack_message(collected, benchmarks, language, now=now, link=link)
        try:
            async with aiohttp.ClientSession() as session:
                slack = SlackNotifier(settings.slack_token or "", session=session, base_url=settings.slack_api_url)
                report.slack_ts = await slack.post(settings.slack_channel, message["text"], message["blocks"])
            report.done.append(f"posted to Slack {settings.slack_channel} (ts {report.slack_ts})")
        except (SlackError, ValueError) as exc:
            report.errors.append(f"Slack {settings.slack_channel}: {exc}")
    return report


# --- the command line --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `tunebot runs leaderboard` options (bot/cli.py adds them to its sub-parser)."""
    parser.add_argument("--results", required=True, metavar="DIR",
                        help="directory of downloaded run outputs (DIR/<artifact>/results.json, events.jsonl)")
    parser.add_argument("--benchmarks", metavar="NAMES",
                        help='benchmarks to rank, in /eval words ("cmmlu ceval"; key=value options are ignored); '
                             "default: every benchmark found")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help=f"rows per benchmark (1..{MAX_LIMIT}, default {DEFAULT_LIMIT})")
    parser.add_argument("--language", choices=("en", "zh"), default="en", help="language of the ranking")
    parser.add_argument("--post", action="store_true",
                        help="also keep the ranking in one comment on $TUNEBOT_LEADERBOARD_ISSUE (needs GITHUB_TOKEN, "
                             "GITHUB_REPOSITORY) and post it to $TUNEBOT_LEADERBOARD_SLACK_CHANNEL (needs "
                             "SLACK_BOT_TOKEN)")


def leaderboard_main(args: argparse.Namespace, env: Mapping[str, str], *, now: float | None = None) -> int:
    """`tunebot runs leaderboard`: print the ranking (stdout, Markdown); with --post, publish it.

    Exit codes: 0 done; 1 a post failed (the ranking was still printed); 2 bad options or environment.
    """
    from configs import load_catalog

    def fail(message: str) -> int:
        print(f"{_PROG}: {message}", file=sys.stderr)
        return 2

    if not 1 <= args.limit <= MAX_LIMIT:
        return fail(f"--limit must be between 1 and {MAX_LIMIT}, got {args.limit}")
    try:
        benchmarks = parse_benchmarks(args.benchmarks, sorted(load_catalog().benchmarks))
        settings = settings_from_env(env) if args.post else PostSettings()
        collected = collect(Path(args.results), benchmarks, args.language)
    except LeaderboardConfigError as exc:
        return fail(str(exc))
    stamp = time.time() if now is None else now
    markdown = leaderboard_markdown(collected, benchmarks, args.language, limit=args.limit, now=stamp,
                                    run_url=settings.run_url)
    sys.stdout.write(markdown)
    sys.stdout.flush()
    if not args.post:
        return 0
    if not settings.targets:
        print(f"{_PROG}: --post: nothing to post to (set TUNEBOT_LEADERBOARD_ISSUE and/or "
              "TUNEBOT_LEADERBOARD_SLACK_CHANNEL); the ranking was only printed", file=sys.stderr)
        return 0
    report = asyncio.run(publish(markdown, collected, benchmarks, settings, language=args.language, now=stamp))
    for line in report.done + report.notes:
        print(f"{_PROG}: {line}", file=sys.stderr)
    for line in report.errors:
        print(f"{_PROG}: error: {line}", file=sys.stderr)
    return 1 if report.errors else 0
