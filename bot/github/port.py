"""The GitHub port: the async interface and value types through which the service talks to GitHub.

The rest of the bot depends only on this module (never on PyGithub); `bot.github.pygithub_impl.PyGithubPort`
implements it against the REST API and `tests.fakes.github.FakeGitHub` serves the same API on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

# The workflow input that carries a unique token which the workflow copies into its `run-name:`
# (`run-name: "tunebot ${{ inputs.run_id }}"`, see deploy/github/tunebot-run.yml). When a dispatch answers 204
# (GHES, old API versions) the run is found again by this token through "list workflow runs".
RUN_NAME_INPUT = "run_id"
# The workflow's `run-name:` (deploy/github/tunebot-run.yml): how the bot recognises the runs it dispatched.
RUN_NAME_PREFIX = "tunebot "


def run_name(run_id: str) -> str:
    """The exact name GitHub shows for the workflow run the bot dispatched for `run_id`."""
    return RUN_NAME_PREFIX + run_id


def run_id_from_name(display_title: str) -> str | None:
    """The run id of a workflow run named exactly as the bot names its dispatches; None for any other title (a PR
    title or another workflow's run-name that merely contains a run id is not ours)."""
    if not display_title.startswith(RUN_NAME_PREFIX):
        return None
    run_id = display_title[len(RUN_NAME_PREFIX):]
    return run_id if run_id and all(c.isalnum() or c in "-_." for c in run_id) else None

# The reactions GitHub accepts on an issue comment (reactions/create-for-issue-comment requestBody enum).
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})


class GitHubError(Exception):
    """A GitHub API call failed; `status` is the HTTP status (0 when no response arrived)."""

    def __init__(self, status: int, message: str, *, documentation_url: str | None = None) -> None:
        super().__init__(f"GitHub API {status}: {message}" if status else f"GitHub API: {message}")
        self.status = status
        self.message = message
        self.documentation_url = documentation_url


class NotFound(GitHubError):
    """404: the repository, PR, comment, run or file does not exist or the installation cannot see it."""


class Unauthorized(GitHubError):
    """401: bad or expired credentials (a broken App key, a revoked token)."""


class Forbidden(GitHubError):
    """403 that is not a rate limit: the App lacks a permission (e.g. `actions: write`)."""


class ValidationFailed(GitHubError):
    """422: GitHub rejected the request body (unknown workflow input, bad reaction, ref not found...)."""


class Conflict(GitHubError):
    """409: e.g. cancelling a workflow run that already completed."""


class RateLimited(GitHubError):
    """Primary or secondary rate limit still in force after the bounded retries; `retry_after` in seconds."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after


class ServerError(GitHubError):
    """5xx (or a dropped connection) still failing after the bounded retries."""


class Permission(NamedTuple):
    """`GET /repos/{o}/{r}/collaborators/{u}/permission`: legacy base role and the real role name."""

    permission: str  # admin | write | read | none (maintain -> write, triage -> read)
    role_name: str  # admin | maintain | write | triage | read | none | <custom role>


class RepoInfo(NamedTuple):
    """`GET /repos/{o}/{r}`: what the web view needs to know of a repository (public pages need no login)."""

    private: bool
    default_branch: str


class CommitInfo(NamedTuple):
    """One commit of a branch's history (`GET /repos/{o}/{r}/commits?sha=<branch>`), newest first."""

    sha: str
    title: str  # the first line of the message
    date: str  # committer date, ISO 8601


class CommentBody(NamedTuple):
    """The two facts needed before editing a comment: its text and who wrote it."""

    body: str
    author_login: str


@dataclass(frozen=True)
class PullInfo:
    """What the gate needs to know about a pull request (`GET /repos/{o}/{r}/pulls/{n}`)."""

    number: int
    head_sha: str
    head_ref: str
    head_repo: str | None  # full name; None when the fork was deleted
    base_ref: str
    base_repo: str
    is_fork: bool
    author: str
    state: str  # open | closed
    merged: bool = False
    draft: bool = False
    title: str = ""
    html_url: str = ""


@dataclass(frozen=True)
class CommentRef:
    """A comment the bot created."""

    id: int
    html_url: str


@dataclass(frozen=True)
class Comment:
    """One issue/PR comment as listed by `GET /repos/{o}/{r}/issues/{n}/comments`."""

    id: int
    body: str
    author_login: str
    author_type: str  # User | Bot | Organization
    html_url: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class DispatchResult:
    """Answer of a workflow dispatch: the run id/URLs on a 200, all None on a 204 (then use find_run_by_name)."""

    workflow_run_id: int | None
    html_url: str | None
    run_url: str | None = None


@dataclass(frozen=True)
class WorkflowRun:
    """A GitHub Actions workflow run (`GET /repos/{o}/{r}/actions/runs/{id}`)."""

    id: int
    name: str
    display_title: str
    status: str  # queued | in_progress | completed | waiting | requested | pending
    conclusion: str | None  # success | failure | cancelled | timed_out | ... (None until completed)
    html_url: str
    head_sha: str
    event: str = ""
    run_attempt: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class CheckRunRef:
    """A check run the bot created."""

    id: int
    html_url: str


@dataclass(frozen=True)
class CheckOutput:
    """The `output` object of a check run; GitHub requires title and summary together."""

    title: str
    summary: str
    text: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"title": self.title, "summary": self.summary}
        if self.text is not None:
            out["text"] = self.text
        return out


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: 5xx and secondary rate limits, honouring Retry-After / x-ratelimit-reset."""

    max_attempts: int = 4
    base_delay: float = 1.0  # 1, 2, 4 ... seconds between 5xx retries
    max_delay: float = 60.0  # never wait longer than this for one retry; beyond it, raise RateLimited
    secondary_default_wait: float = 60.0  # GitHub's advice when a secondary limit gives no Retry-After
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({500, 502, 503, 504}))


@runtime_checkable
class GitHubPort(Protocol):
    """Everything the service asks of GitHub. `repo` is always "owner/name"."""

    async def get_permission(self, repo: str, user: str) -> Permission: ...

    async def get_pull(self, repo: str, number: int) -> PullInfo: ...

    async def create_comment(self, repo: str, number: int, body: str) -> CommentRef: ...

    async def edit_comment(self, repo: str, comment_id: int, body: str) -> None: ...

    async def get_comment(self, repo: str, comment_id: int) -> CommentBody: ...

    async def list_comments(self, repo: str, number: int) -> list[Comment]: ...

    async def add_reaction(self, repo: str, comment_id: int, content: str) -> None: ...

    async def dispatch_workflow(
        self, repo: str, workflow_file: str, ref: str, inputs: dict[str, str]
    ) -> DispatchResult: ...

    async def find_run_by_name(
        self, repo: str, workflow_file: str, run_name_token: str, created_after: datetime
    ) -> WorkflowRun | None: ...

    async def get_workflow_run(self, repo: str, run_id: int) -> WorkflowRun: ...

    async def cancel_workflow_run(self, repo: str, run_id: int) -> bool: ...

    async def download_artifact(self, repo: str, run_id: int, name: str, *, max_bytes: int) -> bytes | None:
        """The zip of workflow run `run_id`'s artifact `name`; None when there is none (or it expired). A larger
        archive than `max_bytes` is refused (GitHubError), never read whole."""
        ...

    async def create_check_run(
        self,
        repo: str,
        name: str,
        head_sha: str,
        status: str = "queued",
        *,
        conclusion: str | None = None,
        output: CheckOutput | None = None,
        details_url: str | None = None,
        external_id: str | None = None,
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
    ) -> CheckRunRef: ...

    async def update_check_run(
        self,
        repo: str,
        check_run_id: int,
        *,
        status: str | None = None,
        conclusion: str | None = None,
        output: CheckOutput | None = None,
        details_url: str | None = None,
        completed_at: datetime | None = None,
    ) -> None: ...

    async def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None: ...

    async def list_pull_files(self, repo: str, number: int) -> list[str]: ...

    async def resolve_commit(self, repo: str, ref: str) -> str | None:
        """The full SHA of the commit `ref` names (a branch, a tag, a full or short SHA); None when it names none."""
        ...

    async def blob_shas(self, repo: str, paths: list[str], ref: str) -> dict[str, str | None]:
        """Each path's git blob SHA at commit `ref` (None: no such file there) — a file's identity by content."""
        ...

    async def folder_blobs(self, repo: str, folder: str, ref: str) -> dict[str, str] | None:
        """The files directly in `folder` at commit `ref`, as repository path -> git blob SHA (None: no such folder):
        the repository's own questions are identified by their files' content."""
        ...

    async def default_branch(self, repo: str) -> str: ...

    async def repo_info(self, repo: str) -> RepoInfo:
        """Whether the repository is private, and its default branch."""
        ...

    async def branch_commits(self, repo: str, branch: str, limit: int = 100) -> list[CommitInfo]:
        """The newest `limit` commits of `branch`, newest first (the web view's score history is drawn over them)."""
        ...

    async def whoami(self) -> str:
        """The login the bot's comments carry: `<app slug>[bot]` in App mode, the token's user otherwise."""
        ...
