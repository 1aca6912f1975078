"""Pure webhook handling: signature check and parsing of a GitHub delivery's payload into typed events.

No I/O, no clock: the intake calls `verify_signature` on the raw bytes; the service later calls `parse_event`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any


class WebhookError(ValueError):
    """A delivery that cannot be processed; the message says exactly what is wrong (HTTP 400 material)."""


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is `sha256=<hex HMAC-SHA256(secret, body)>`, compared in constant time over raw bytes."""
    if not secret or not header:
        return False  # an unset secret must never accept anything
    scheme, sep, received = header.strip().partition("=")
    if not sep or scheme.lower() != "sha256" or len(received) != 64:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), received.lower().encode("ascii", errors="replace"))


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class IssueComment:
    """`issue_comment` (created / edited / deleted), on an issue or a pull request."""

    action: str
    repo: str  # owner/name
    owner: str
    name: str
    issue_number: int
    is_pull_request: bool
    comment_id: int
    body: str
    user_login: str
    user_type: str  # User | Bot | Organization
    author_association: str  # OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE... (a hint, never authority)
    installation_id: int | None
    comment_html_url: str
    sender_login: str = ""
    issue_state: str = "open"
    previous_body: str | None = None  # `changes.body.from` on an edit

    @property
    def is_bot(self) -> bool:
        return self.user_type == "Bot" or self.user_login.endswith("[bot]")


@dataclass(frozen=True)
class PullRequestEvent:
    """`pull_request` (opened / synchronize / reopened / closed / ...): what the trust gate needs."""

    action: str
    repo: str
    owner: str
    name: str
    number: int
    head_sha: str
    head_ref: str
    head_repo: str | None  # None when the fork was deleted
    base_ref: str
    is_fork: bool
    installation_id: int | None
    sender: str
    author: str = ""
    before: str | None = None  # previous head sha on synchronize
    merged: bool = False


@dataclass(frozen=True)
class WorkflowRunEvent:
    """`workflow_run` (requested / in_progress / completed)."""

    action: str
    repo: str
    installation_id: int | None
    id: int
    name: str
    display_title: str  # the run-name, which carries our dispatch token
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str
    event: str = ""
    run_attempt: int = 1
    path: str = ""  # the workflow file, `.github/workflows/<file>`
    head_branch: str = ""  # for a dispatch: the branch the workflow file was taken from


@dataclass(frozen=True)
class WorkflowJobEvent:
    """`workflow_job` (queued / waiting / in_progress / completed)."""

    action: str
    repo: str
    installation_id: int | None
    id: int
    run_id: int
    name: str
    workflow_name: str
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str
    runner_name: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ping:
    """`ping`: sent when the hook or App is set up."""

    zen: str
    hook_id: int | None
    app_id: int | None


@dataclass(frozen=True)
class Installation:
    """`installation` (created / deleted / suspend / unsuspend / new_permissions_accepted)."""

    action: str
    installation_id: int
    account: str
    app_id: int | None
    repositories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unsupported:
    """Any other event/action: acknowledged (2xx) and ignored."""

    event: str
    action: str | None


WebhookEvent = IssueComment | PullRequestEvent | WorkflowRunEvent | WorkflowJobEvent | Ping | Installation | Unsupported


# --------------------------------------------------------------------------- parsing
class _Reader:
    """Typed access to a JSON object that reports the full path of whatever is missing or mistyped."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise WebhookError(f"{path or 'payload'} must be a JSON object, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.path = path

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def obj(self, key: str) -> _Reader:
        if key not in self.data:
            raise WebhookError(f"missing field {self._where(key)}")
        return _Reader(self.data[key], self._where(key))

    def opt_obj(self, key: str) -> _Reader | None:
        value = self.data.get(key)
        return None if value is None else _Reader(value, self._where(key))

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise WebhookError(f"{'missing' if value is None else 'non-string'} field {self._where(key)}")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise WebhookError(f"field {self._where(key)} must be a string or null")
        return value

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise WebhookError(f"{'missing' if value is None else 'non-integer'} field {self._where(key)}")
        return value

    def opt_integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise WebhookError(f"field {self._where(key)} must be an integer or null")
        return value


def _repo(root: _Reader) -> tuple[str, str, str]:
    repo = root.obj("repository")
    full = repo.text("full_name")
    owner, sep, name = full.partition("/")
    if not sep or not owner or not name:
        raise WebhookError(f"repository.full_name {full!r} is not owner/name")
    return full, owner, name


def _installation_id(root: _Reader) -> int | None:
    inst = root.opt_obj("installation")
    return None if inst is None else inst.integer("id")


def _sender(root: _Reader) -> str:
    sender = root.opt_obj("sender")
    return sender.text("login") if sender is not None else ""


def _issue_comment(root: _Reader, action: str) -> IssueComment:
    full, owner, name = _repo(root)
    issue = root.obj("issue")
    comment = root.obj("comment")
    user = comment.obj("user")
    previous = None
    changes = root.opt_obj("changes")
    if changes is not None:
        body_change = changes.opt_obj("body")
        if body_change is not None:
            previous = body_change.opt_text("from")
    return IssueComment(
        action=action, repo=full, owner=owner, name=name, issue_number=issue.integer("number"),
        is_pull_request=issue.data.get("pull_request") is not None, comment_id=comment.integer("id"),
        body=comment.opt_text("body") or "", user_login=user.text("login"), user_type=user.opt_text("type") or "User",
        author_association=comment.opt_text("author_association") or "NONE",
        installation_id=_installation_id(root), comment_html_url=comment.opt_text("html_url") or "",
        sender_login=_sender(root), issue_state=issue.opt_text("state") or "open", previous_body=previous)


def _pull_request(root: _Reader, action: str) -> PullRequestEvent:
    full, owner, name = _repo(root)
    pr = root.obj("pull_request")
    head = pr.obj("head")
    base = pr.obj("base")
    head_repo_obj = head.opt_obj("repo")
    head_repo = head_repo_obj.text("full_name") if head_repo_obj is not None else None
    base_repo = base.obj("repo").text("full_name")
    user = pr.opt_obj("user")
    return PullRequestEvent(
        action=action, repo=full, owner=owner, name=name, number=pr.integer("number"), head_sha=head.text("sha"),
        head_ref=head.text("ref"), head_repo=head_repo, base_ref=base.text("ref"),
        is_fork=head_repo is None or head_repo.lower() != base_repo.lower(),
        installation_id=_installation_id(root), sender=_sender(root), author=user.text("login") if user else "",
        before=root.opt_text("before"), merged=bool(pr.data.get("merged")))


def _workflow_run(root: _Reader, action: str) -> WorkflowRunEvent:
    full, _, _ = _repo(root)
    run = root.obj("workflow_run")
    name = run.opt_text("name") or ""
    return WorkflowRunEvent(
        action=action, repo=full, installation_id=_installation_id(root), id=run.integer("id"), name=name,
        display_title=run.opt_text("display_title") or name, status=run.text("status"),
        conclusion=run.opt_text("conclusion"), html_url=run.opt_text("html_url") or "", head_sha=run.text("head_sha"),
        event=run.opt_text("event") or "", run_attempt=run.opt_integer("run_attempt") or 1,
        path=run.opt_text("path") or "", head_branch=run.opt_text("head_branch") or "")


def _workflow_job(root: _Reader, action: str) -> WorkflowJobEvent:
    full, _, _ = _repo(root)
    job = root.obj("workflow_job")
    labels = job.data.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise WebhookError("workflow_job.labels must be a list of strings")
    return WorkflowJobEvent(
        action=action, repo=full, installation_id=_installation_id(root), id=job.integer("id"),
        run_id=job.integer("run_id"),
        name=job.opt_text("name") or "", workflow_name=job.opt_text("workflow_name") or "", status=job.text("status"),
        conclusion=job.opt_text("conclusion"), html_url=job.opt_text("html_url") or "", head_sha=job.text("head_sha"),
        runner_name=job.opt_text("runner_name"), labels=tuple(labels))


def _ping(root: _Reader) -> Ping:
    hook = root.opt_obj("hook")
    return Ping(zen=root.opt_text("zen") or "", hook_id=root.opt_integer("hook_id"),
                app_id=hook.opt_integer("app_id") if hook is not None else None)


def _installation(root: _Reader, action: str) -> Installation:
    inst = root.obj("installation")
    account = inst.opt_obj("account")
    repos = root.data.get("repositories") or []
    if not isinstance(repos, list):
        raise WebhookError("repositories must be a list")
    names = tuple(_Reader(r, f"repositories[{i}]").text("full_name") for i, r in enumerate(repos))
    return Installation(action=action, installation_id=inst.integer("id"),
                        account=account.text("login") if account is not None else "",
                        app_id=inst.opt_integer("app_id"), repositories=names)


def parse_event(event_name: str, payload: Any) -> WebhookEvent:
    """Turn an already-decoded payload of event `event_name` (the X-GitHub-Event value) into a typed event."""
    root = _Reader(payload, "")
    if event_name == "ping":
        return _ping(root)
    action = root.opt_text("action")
    if action is None:
        return Unsupported(event_name, None)
    if event_name == "issue_comment":
        return _issue_comment(root, action)
    if event_name == "pull_request":
        return _pull_request(root, action)
    if event_name == "workflow_run":
        return _workflow_run(root, action)
    if event_name == "workflow_job":
        return _workflow_job(root, action)
    if event_name == "installation":
        return _installation(root, action)
    return Unsupported(event_name, action)

