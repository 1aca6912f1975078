"""What every part of the service shares: its dependencies, the repository policy cache, the conversation a command
came from, and the one way to write (through the outbox)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.config import Config
from bot.github.port import GitHubError, GitHubPort
from bot.metrics import Metrics
from bot.outbox import GITHUB_KINDS, Outbox
from bot.store import Store
from commands.catalog import Catalog
from commands.policy import POLICY_FILE, Policy, PolicyError, parse_policy
from commands.render.i18n import Language, t

log = logging.getLogger(__name__)

POLICY_TTL_S = 60.0  # `.tunebot.yml` is re-read at most once a minute per repository
MAX_REPLY_CHARS = 60000  # GitHub refuses comments over 65,536 characters


@dataclass(frozen=True)
class Conversation:
    """Where a command was given and by whom: the PR or issue thread the bot answers in."""

    repo: str
    number: int
    is_pr: bool
    actor: str
    association: str
    trigger: str  # idempotency base for everything this comment causes
    policy: Policy
    comment_id: int | None = None
    installation_id: int | None = None
    echo: Callable[[str], Awaitable[None]] | None = None  # another place that hears the replies (Slack)

    @property
    def language(self) -> Language:
        return self.policy.language

    def say(self, key: str, **values: object) -> str:
        """A reply phrase from the message catalogue, in the repository's language."""
        return t(self.policy.language, key, **values)


class Core:
    """The service's dependencies and the helpers every part uses; `config` may be replaced while running (tests
    and local mode learn their public URL after the app is built)."""

    def __init__(self, *, config: Config, store: Store, github: GitHubPort, catalog: Catalog, metrics: Metrics,
                 clock: Callable[[], float], chat: Any = None) -> None:
        self.config = config
        self.store = store
        self.github = github
        self.catalog = catalog
        self.metrics = metrics
        self.clock = clock
        self.chat = chat
        self.outbox: Outbox | None = None  # set by the Service, which owns what the outbox calls back
        # Set while the runtime's outbox loop runs (bot/app.py): a decided write then wakes that loop instead of being
        # performed here, so a delivery worker never waits on GitHub's write pace, and the one loop performs the
        # writes in priority order (dispatches first) however many commands arrive at once.
        self.wake_outbox: Callable[[], None] | None = None
        self._policies: dict[str, tuple[float, Policy | PolicyError]] = {}

    @property
    def bot_login(self) -> str:
        return self.config.bot_login

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def new_run_id(self) -> str:
        return "tb-" + secrets.token_hex(6)

    async def policy_for(self, repo: str) -> Policy | PolicyError:
        """The repo's `.tunebot.yml` from its default branch — never from the PR, whose author could rewrite it."""
        cached = self._policies.get(repo)
        if cached is not None and self.clock() - cached[0] < POLICY_TTL_S:
            return cached[1]
        try:
            text = await self.github.get_file(repo, POLICY_FILE)  # None: the repository has no policy file
        except GitHubError as exc:
            # Fail closed: the file may hold restrictions (allowed models, who may train, quotas) that the
            # permissive defaults would drop. Not cached, so the next command tries again.
            log.warning("cannot read %s of %s: %s", POLICY_FILE, repo, exc)
            return PolicyError(None, f"could not be read from GitHub ({exc}); nothing was started. Try again "
                                     "in a minute; if it persists, check the App's `contents: read` permission")
        policy = parse_policy(text, catalog=self.catalog)
        self._policies[repo] = (self.clock(), policy)
        return policy

    async def language_for(self, repo: str) -> Language:
        policy = await self.policy_for(repo)
        return policy.language if isinstance(policy, Policy) else "en"

    async def write(self, key: str, kind: str, payload: Mapping[str, Any], *, run_id: str | None = None,
                    replace: bool = False, pump: bool = True) -> None:
        """Decide a write: queue it in the outbox (idempotent by `key`), then try GitHub's queue at once."""
        await self.store.enqueue(key, kind, dict(payload), self.now(), run_id=run_id, replace=replace)
        if pump:
            await self.flush_writes()

    async def flush_writes(self) -> None:
        """Have the decided GitHub writes performed: by the runtime's outbox loop when it runs, else right here."""
        if self.wake_outbox is not None:
            self.wake_outbox()
        elif self.outbox is not None:
            await self.outbox.pump(kinds=GITHUB_KINDS)

    async def reply(self, conv: Conversation, key: str, text: str) -> None:
        body = text if len(text) < MAX_REPLY_CHARS else text[:MAX_REPLY_CHARS] + "\n\n…(truncated)"
        if conv.echo is not None:
            try:
                await conv.echo(text)
            except Exception:  # chat is best effort; the PR reply below is the record
                log.exception("echoing a reply to chat failed")
        await self.write(f"reply:{conv.trigger}:{key}", "comment_create",
                         {"repo": conv.repo, "number": conv.number, "body": body})
