"""The GitHub port of local mode: one repository and one pull request (this directory), whose workflow dispatch runs
the agent here as a subprocess instead of on a GitHub runner."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bot.github.port import (
    CheckOutput,
    CheckRunRef,
    Comment,
    CommentBody,
    CommentRef,
    CommitInfo,
    DispatchResult,
    NotFound,
    Permission,
    PullInfo,
    RepoInfo,
    WorkflowRun,
)
from commands.events import EVENTS_FILE, EVENTS_SIGNATURE_FILE, events_artifact

BOT_LOGIN = "tunebot[bot]"
# What `make demo` runs with when the directory has no .tunebot.yml: evaluate right after training, on both packs.
DEMO_POLICY = """version: 1
language: en
benchmarks:
  default: [ceval, cmmlu]
"""


def git_head(cwd: Path) -> str:
    """The commit checked out in `cwd`, or forty zeros when it is not a git repository."""
    sha = _git(cwd, "rev-parse", "HEAD", timeout=5)
    return sha if sha and len(sha) == 40 else "0" * 40


def _git(cwd: Path, *args: str, timeout: float = 30) -> str | None:
    """One git command's stdout in `cwd`, or None when it fails (not a repository, unknown ref, no such file)."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class Screen(Protocol):
    """Where local mode shows what the bot writes on the PR (`bot.local.Terminal` prints it)."""

    def bot(self, text: str, *, edited: bool = False) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class _LocalRun:
    run: WorkflowRun
    inputs: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class LocalGitHub:
    """The GitHubPort for local mode: one repository and one pull request (this directory), comments printed on the
    terminal, and a workflow dispatch that runs `tunebot agent run` here as a subprocess."""

    workdir: Path
    runs_dir: Path
    terminal: Screen
    user: str
    repo: str = "local/demo"
    head_sha: str = "0" * 40
    agent_args: list[str] = field(default_factory=list)
    comments: dict[int, Comment] = field(default_factory=dict)
    runs: dict[int, _LocalRun] = field(default_factory=dict)
    checks: dict[int, dict[str, Any]] = field(default_factory=dict)
    on_workflow_done: Any = None  # async (WorkflowRun) -> None, set by the session
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    printed: dict[int, str] = field(default_factory=dict)

    async def get_permission(self, repo: str, user: str) -> Permission:
        return Permission("admin", "admin")  # it is your own machine

    async def get_pull(self, repo: str, number: int) -> PullInfo:
        return PullInfo(number=number, head_sha=self.head_sha, head_ref="local", head_repo=self.repo,
                        base_ref="main", base_repo=self.repo, is_fork=False, author=self.user, state="open",
                        title="local", html_url=f"file://{self.workdir}")

    async def create_comment(self, repo: str, number: int, body: str) -> CommentRef:
        cid = next(self._ids)
        now = datetime.now(UTC)
        self.comments[cid] = Comment(cid, body, BOT_LOGIN, "Bot", f"local#{cid}", now, now)
        self.terminal.bot(body)
        self.printed[cid] = body
        return CommentRef(cid, f"local#{cid}")

    async def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        old = self.comments.get(comment_id)
        if old is None:
            raise NotFound(404, f"comment {comment_id}")
        self.comments[comment_id] = Comment(comment_id, body, old.author_login, old.author_type, old.html_url,
                                            old.created_at, datetime.now(UTC))

    def flush_edits(self) -> None:
        """Print the final version of every comment that changed since it was last shown."""
        for cid, c in self.comments.items():
            if self.printed.get(cid) != c.body:
                self.terminal.bot(c.body, edited=True)
                self.printed[cid] = c.body

    async def get_comment(self, repo: str, comment_id: int) -> CommentBody:
        c = self.comments.get(comment_id)
        if c is None:
            raise NotFound(404, f"comment {comment_id}")
        return CommentBody(c.body, c.author_login)

    async def list_comments(self, repo: str, number: int) -> list[Comment]:
        return list(self.comments.values())

    async def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        self.terminal.note("tunebot reacted 👀")

    async def dispatch_workflow(self, repo: str, workflow_file: str, ref: str,
                                inputs: dict[str, str]) -> DispatchResult:
        wid = 9000 + next(self._ids)
        now = datetime.now(UTC)
        run = WorkflowRun(wid, "tunebot run", f"tunebot {inputs.get('run_id', '')}", "queued", None,
                          f"file://{self.runs_dir / inputs['run_id']}", inputs.get("sha", self.head_sha),
                          "workflow_dispatch", 1, now, now)
        local = _LocalRun(run, dict(inputs))
        self.runs[wid] = local
        local.task = asyncio.create_task(self._run_agent(local))
        return DispatchResult(wid, run.html_url)

    async def _run_agent(self, local: _LocalRun) -> None:
        run_id = local.inputs["run_id"]
        run_dir = self.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        job_path = run_dir / "job.json"
        job = json.loads(local.inputs["job"])
        # Jobs that evaluate an earlier run's adapter find it in that run's output folder (on GitHub the workflow
        # downloads it as an artifact).
        adapter = job.get("adapter")
        if adapter and not adapter.get("path"):
            adapter["path"] = str(self.runs_dir / adapter["run_id"] / "out")
        job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
        out = run_dir / "out"
        if out.exists():
            shutil.rmtree(out)
        repo_dir = await asyncio.to_thread(self.tree_for, str(job.get("sha") or ""), run_dir)
        cmd = [sys.executable, "-m", "tunebot", "agent", "run", "--job", str(job_path), "--out", str(out),
               "--repo-dir", str(repo_dir), *self.agent_args]
        self.terminal.note(f"runner: {' '.join(cmd[2:])}")
        local.run = replace(local.run, status="in_progress", updated_at=datetime.now(UTC))
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        local.process = proc
        try:
            code = await proc.wait()
        finally:
            await asyncio.to_thread(self.drop_tree, repo_dir)
        conclusion = "success" if code == 0 else ("cancelled" if code in (130, 143, -15, -2) else "failure")
        local.run = replace(local.run, status="completed", conclusion=conclusion, updated_at=datetime.now(UTC))
        self.terminal.note(f"runner: agent exited with {code} ({conclusion}); outputs in {out}")
        if self.on_workflow_done is not None:
            await self.on_workflow_done(local.run)

    async def find_run_by_name(self, repo: str, workflow_file: str, run_name_token: str,
                               created_after: datetime) -> WorkflowRun | None:
        for local in self.runs.values():
            if run_name_token in local.run.display_title:
                return local.run
        return None

    async def get_workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        local = self.runs.get(run_id)
        if local is None:
            raise NotFound(404, f"workflow run {run_id}")
        return local.run

    async def cancel_workflow_run(self, repo: str, run_id: int) -> bool:
        local = self.runs.get(run_id)
        if local is None or local.process is None or local.process.returncode is not None:
            return False
        os.killpg(local.process.pid, signal.SIGTERM)  # the agent stops gracefully and reports `cancelled`
        return True

    async def download_artifact(self, repo: str, run_id: int, name: str, *, max_bytes: int) -> bytes | None:
        """The local run's outputs as the workflow would upload them (only the signed event log is asked for)."""
        local = self.runs.get(run_id)
        if local is None or name != events_artifact(local.inputs["run_id"]):
            return None
        out = self.runs_dir / local.inputs["run_id"] / "out"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for file in (EVENTS_FILE, EVENTS_SIGNATURE_FILE):
                if (out / file).is_file():
                    zf.write(out / file, file)
        return buf.getvalue() if len(buf.getvalue()) <= max_bytes else None

    async def create_check_run(self, repo: str, name: str, head_sha: str, status: str = "queued", *,
                               conclusion: str | None = None, output: CheckOutput | None = None,
                               details_url: str | None = None, external_id: str | None = None,
                               started_at: datetime | None = None,
                               completed_at: datetime | None = None) -> CheckRunRef:
        cid = next(self._ids)
        self.checks[cid] = {"name": name, "status": status, "conclusion": conclusion}
        return CheckRunRef(cid, f"local-check#{cid}")

    async def update_check_run(self, repo: str, check_run_id: int, *, status: str | None = None,
                               conclusion: str | None = None, output: CheckOutput | None = None,
                               details_url: str | None = None, completed_at: datetime | None = None) -> None:
        check = self.checks.setdefault(check_run_id, {})
        check.update({k: v for k, v in {"status": status, "conclusion": conclusion}.items() if v})
        if conclusion and output is not None:
            self.terminal.note(f"check run: {conclusion} — {output.title}")

    async def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        target = (self.workdir / path).resolve()
        if self.workdir.resolve() not in target.parents:
            return None
        if path == ".tunebot.yml" and not target.is_file():
            return DEMO_POLICY
        return target.read_text(encoding="utf-8") if target.is_file() else None

    async def list_pull_files(self, repo: str, number: int) -> list[str]:
        return []

    async def resolve_commit(self, repo: str, ref: str) -> str | None:
        if ref.startswith("-"):
            return None
        sha = await asyncio.to_thread(_git, self.workdir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return sha if sha and len(sha) == 40 else None

    async def blob_shas(self, repo: str, paths: list[str], ref: str) -> dict[str, str | None]:
        """At the local PR's head, the files as they are in the working tree (what a local run trains on, edits
        not yet committed included); at any other commit, git's blob of the file there."""
        out: dict[str, str | None] = {}
        for path in paths:
            if ref == self.head_sha:
                target = self.workdir / path
                out[path] = await asyncio.to_thread(_git, self.workdir, "hash-object", "--", path) \
                    if target.is_file() else None
            else:
                out[path] = await asyncio.to_thread(_git, self.workdir, "rev-parse", "--verify", "--quiet",
                                                    f"{ref}:{path}")
        return out

    async def folder_blobs(self, repo: str, folder: str, ref: str) -> dict[str, str] | None:
        """At the local PR's head, the folder's files as they are in the working tree; elsewhere git's tree."""
        folder = folder.strip("/")
        if ref == self.head_sha:
            root = self.workdir / folder
            if not root.is_dir():
                return None
            out: dict[str, str] = {}
            for path in sorted(root.iterdir()):
                if path.is_file():
                    blob = await asyncio.to_thread(_git, self.workdir, "hash-object", "--", f"{folder}/{path.name}")
                    if blob:
                        out[f"{folder}/{path.name}"] = blob
            return out
        listing = await asyncio.to_thread(_git, self.workdir, "ls-tree", ref, "--", f"{folder}/")
        if not listing:
            return None
        entries = [line.split(None, 3) for line in listing.splitlines()]
        return {e[3]: e[2] for e in entries if len(e) == 4 and e[1] == "blob"}

    def tree_for(self, sha: str, run_dir: Path) -> Path:
        """Where a job at `sha` reads the repository: this directory at its own head, else a git worktree of that
        commit (a baseline at main trains on main's files, as a runner checking out that SHA would)."""
        if not sha or sha == self.head_sha or sha == "0" * 40:
            return self.workdir
        tree = run_dir / "tree"
        if not (tree / ".git").exists() and \
                _git(self.workdir, "worktree", "add", "--detach", "--force", str(tree), sha) is None:
            raise RuntimeError(f"cannot check out {sha} in {self.workdir} (git worktree add failed)")
        return tree

    def drop_tree(self, tree: Path) -> None:
        """Remove a worktree `tree_for` made once its run is over (the run's outputs live beside it, in `out/`), and
        prune git's record of it, so the user's repository does not collect one worktree per baseline."""
        if tree == self.workdir:
            return
        if _git(self.workdir, "worktree", "remove", "--force", str(tree)) is None:
            shutil.rmtree(tree, ignore_errors=True)
        _git(self.workdir, "worktree", "prune")

    async def whoami(self) -> str:
        return BOT_LOGIN

    async def default_branch(self, repo: str) -> str:
        return "main"

    async def repo_info(self, repo: str) -> RepoInfo:
        # Local pages are served on 127.0.0.1 only, to whoever runs the session: nothing to log in to.
        return RepoInfo(private=False, default_branch="main")

    async def branch_commits(self, repo: str, branch: str, limit: int = 100) -> list[CommitInfo]:
        """The working tree's history (HEAD): what `make demo` trains on is the local "default branch"."""
        out = _git(self.workdir, "log", f"-n{max(1, limit)}", "--format=%H%x09%cI%x09%s", "HEAD") or ""
        commits = [line.split("\t", 2) for line in out.splitlines() if line.count("\t") >= 2]
        if not commits:  # not a git repository: the session's one pseudo-commit
            return [CommitInfo(sha=self.head_sha, title="(working tree)", date="")]
        return [CommitInfo(sha=sha, title=title, date=date) for sha, date, title in commits]

    async def wait_all(self) -> None:
        tasks = [r.task for r in self.runs.values() if r.task is not None and not r.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for local in self.runs.values():
            if local.process is not None and local.process.returncode is None:
                os.killpg(local.process.pid, signal.SIGTERM)
        await self.wait_all()

