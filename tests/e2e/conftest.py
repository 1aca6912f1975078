from tests.bot.service.conftest import make_bot  # noqa: F401  (the running service against a fake GitHub)
