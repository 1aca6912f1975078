"""What a command handler is given (the service's parts and one authorized command) and the registry of handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.cards import Cards
from bot.comparisons import Comparisons
from bot.core import Conversation, Core
from bot.github.port import PullInfo
from bot.jobs import Jobs
from bot.lifecycle import Lifecycle
from bot.store import Run
from commands import authz
from commands.decision import Command
from commands.verbs import REGISTRY


@dataclass(frozen=True)
class Parts:
    """The parts of the service a handler may use."""

    core: Core
    cards: Cards
    jobs: Jobs
    comparisons: Comparisons
    lifecycle: Lifecycle


@dataclass(frozen=True)
class Invocation:
    """One authorized command: where it was given, the PR (None on an issue), the run it names or means (for the
    verbs that act on runs), who asked, and `key`, unique within the comment, for idempotent writes."""

    conv: Conversation
    pull: PullInfo | None
    cmd: Command
    target: Run | None
    facts: authz.ActorFacts
    key: str

    async def reply(self, parts: Parts, text: str) -> None:
        await parts.core.reply(self.conv, self.key, text)


Handler = Callable[[Parts, Invocation], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


def handles(*verbs: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for verb in verbs:
            if verb not in REGISTRY:
                raise RuntimeError(f"{fn.__module__}.{fn.__name__} handles /{verb}, which is not a known verb")
            if verb in HANDLERS:
                raise RuntimeError(f"/{verb} has two handlers")
            HANDLERS[verb] = fn
        return fn

    return register


def check_handlers() -> None:
    """Every verb the parser can produce has a handler (verbs the parser answers itself, like /help, need none)."""
    missing = sorted(name for name, spec in REGISTRY.items() if not spec.parser_replies and name not in HANDLERS)
    if missing:
        raise RuntimeError(f"no handler for {', '.join('/' + m for m in missing)} (bot/handlers/)")
