"""`tunebot runs leaderboard`'s I/O: reads the run directories the leaderboard workflow downloaded (as `tunebot agent
run --out` leaves them), prints the ranking `commands.leaderboard` writes, and with `--post` keeps it in one marked
issue comment and posts it to Slack. Only `leaderboard_main` reads the environment."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot.github.port import Comment, GitHubError, GitHubPort
from commands.leaderboard import (
    DEFAULT_LIMIT,
    MARKER,
    Collected,
    LeaderboardConfigError,
    Skipped,
    comment_body,
    keep_newest,
    leaderboard_markdown,
    parse_benchmarks,
    run_entries,
    slack_message,
)
from commands.render import Language, LeaderboardEntry, normalize_language
from configs import load_catalog

# Who writes the comment when the workflow posts with its GITHUB_TOKEN; another token needs
# TUNEBOT_LEADERBOARD_AUTHOR (a PAT's user, or `<app-slug>[bot]` for an App installation token).
DEFAULT_AUTHOR = "github-actions[bot]"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
MAX_LIMIT = 100
# How deep run directories may lie under --results: DIR/results.json, DIR/<artifact>/…, DIR/<group>/<artifact>/…
MAX_DEPTH = 3
_PROG = "tunebot runs leaderboard"


# --- reading the runs --------------------------------------------------------------------------------------------


def find_run_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Directories that hold an agent's output (`results.json` or `events.jsonl`), outermost only, sorted."""
    found: set[Path] = set()
    for name in ("results.json", "events.jsonl"):
        for path in root.rglob(name):
            if path.is_file() and len(path.relative_to(root).parts) <= max_depth:
                found.add(path.parent)
    # A run's own subfolders (eval/, logs/) never count as runs of their own.
    return sorted(d for d in found if not any(o != d and o in d.parents for o in found))


def _where(run_dir: Path, root: Path) -> str:
    return run_dir.relative_to(root).as_posix() if run_dir != root else "."


def read_run(run_dir: Path, root: Path, wanted: Sequence[str], lang: Language) \
        -> tuple[list[LeaderboardEntry], list[Skipped]]:
    """The entries one run contributes (only benchmarks in `wanted`, or all when empty) and what it leaves out."""
    try:
        events = (run_dir / "events.jsonl").read_text(encoding="utf-8", errors="replace")
    except OSError:
        events = ""
    path = run_dir / "results.json"
    if not path.is_file():
        return run_entries(_where(run_dir, root), events, None, wanted, lang)
    try:
        text: str | Exception = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except (OSError, UnicodeDecodeError) as exc:
        text, mtime = exc, 0.0
    return run_entries(_where(run_dir, root), events, text, wanted, lang, mtime=mtime)


def collect(root: Path, benchmarks: Sequence[str] = (), language: str = "en") -> Collected:
    """Read every run under `root`. The same model (and adapter) twice on a benchmark keeps the newer result."""
    lang = normalize_language(language)
    if not root.is_dir():
        raise LeaderboardConfigError(f"--results: {root} is not a directory")
    runs = find_run_dirs(root)
    found: list[tuple[LeaderboardEntry, str]] = []
    skipped: list[Skipped] = []
    for run_dir in runs:
        got, left = read_run(run_dir, root, benchmarks, lang)
        found += [(e, _where(run_dir, root)) for e in got]
        skipped += left
    kept, superseded = keep_newest(found, lang)
    return Collected(entries=kept, skipped=tuple(skipped + superseded), runs=len(runs))


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
            from bot.github.pygithub_impl import PyGithubPort  # lazy: ~0.4 s off every `tunebot runs` start

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
        import aiohttp  # lazy, with slack_sdk below: ~0.5 s off every `tunebot runs` start

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
