"""The security tests attack a running service: the same `make_bot` fixture as tests/bot/service (a real app on a real
socket, fake GitHub on 127.0.0.1, real SQLite store), or `memory_bot` (the same service, GitHub in memory) where the
attack does not go through HTTP."""

from tests.bot.service.conftest import make_bot
from tests.bot.service.memory import memory_bot, migrated_db

__all__ = ["make_bot", "memory_bot", "migrated_db"]
