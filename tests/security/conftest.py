"""The security tests attack a running service: the same `make_bot` fixture as tests/service (a real app on a real
socket, fake GitHub on 127.0.0.1, real SQLite store)."""

from tests.service.conftest import make_bot

__all__ = ["make_bot"]
