"""The PostgreSQL tests' own policy, as the README states it: no reachable server FAILS them with a message saying
what to do; only the explicit opt-out TUNEBOT_SKIP_POSTGRES=1 skips them (tests/postgres.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.paths import REPO
from tests.postgres import CANDIDATES, SKIPPED, postgres_url


def _dead_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: connecting is refused
        s.bind(("127.0.0.1", 0))
        return f"postgresql://postgres@127.0.0.1:{s.getsockname()[1]}/test"


@pytest.mark.parametrize("skip", [None, "0", "", "yes", "true"])
async def test_an_unreachable_server_fails_unless_the_opt_out_is_exactly_1(skip: str | None) -> None:
    dead = _dead_url()
    environ = {"TUNEBOT_TEST_POSTGRES_URL": dead} | ({} if skip is None else {"TUNEBOT_SKIP_POSTGRES": skip})
    try:
        await postgres_url(environ)
    except pytest.fail.Exception as failed:
        message = str(failed)
    except pytest.skip.Exception as skipped:  # caught here: escaping, it would quietly skip this very test
        pytest.fail(f"skipped instead of failing: {skipped}")
    else:
        pytest.fail("a dead server was taken for a live one")
    assert "PostgreSQL is unreachable" in message and dead in message and "ConnectionRefusedError" in message
    assert "TUNEBOT_SKIP_POSTGRES=1" in message and "TUNEBOT_TEST_POSTGRES_URL" in message  # says what to do


async def test_the_opt_out_skips_without_trying_a_server() -> None:
    with pytest.raises(pytest.skip.Exception, match=SKIPPED):
        await postgres_url({"TUNEBOT_TEST_POSTGRES_URL": _dead_url(), "TUNEBOT_SKIP_POSTGRES": "1"})


@pytest.mark.postgres
async def test_the_configured_server_is_found() -> None:
    url = await postgres_url()  # this process's environment: the server the other PostgreSQL tests use
    assert url == os.environ.get("TUNEBOT_TEST_POSTGRES_URL", url) and (url in CANDIDATES or
                                                                         "TUNEBOT_TEST_POSTGRES_URL" in os.environ)


def test_the_store_tests_error_out_without_a_server() -> None:
    """End to end through the real fixtures: a PostgreSQL store test against a dead server is an ERROR, not a skip."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEBOT_SKIP_POSTGRES", "PYTEST_"))}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/bot/store/test_store_grants.py::test_bad_grant_input"], cwd=REPO, capture_output=True,
                         text=True, timeout=300, check=False,
                         env={**env, "PYTHONPATH": str(REPO), "TUNEBOT_TEST_POSTGRES_URL": _dead_url()})
    assert run.returncode == 1, run.stdout[-3000:]
    assert run.stdout.splitlines()[-1].startswith("1 passed, 1 error"), run.stdout[-3000:]  # sqlite ran, postgres not
    assert "PostgreSQL is unreachable" in run.stdout
