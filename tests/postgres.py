"""Which PostgreSQL server the tests use, and what happens without one: the PostgreSQL tests FAIL with a message
saying what to do; only the explicit opt-out TUNEBOT_SKIP_POSTGRES=1 skips them (README, troubleshooting).

TUNEBOT_TEST_POSTGRES_URL names another server; otherwise the server on 127.0.0.1:5432 (trust auth, database `test`)
is tried as `postgres`, then as `root`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import asyncpg
import pytest

CANDIDATES = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")
SKIPPED = "TUNEBOT_SKIP_POSTGRES=1: PostgreSQL tests skipped on purpose"


async def _probe(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("SELECT 1")
    finally:
        await conn.close()


async def postgres_url(environ: Mapping[str, str] = os.environ) -> str:
    """The URL of a PostgreSQL server that answers; skips the test only on TUNEBOT_SKIP_POSTGRES=1, else fails it."""
    if environ.get("TUNEBOT_SKIP_POSTGRES") == "1":
        pytest.skip(SKIPPED)
    override = environ.get("TUNEBOT_TEST_POSTGRES_URL")
    errors = []
    for url in (override,) if override else CANDIDATES:
        try:
            await _probe(url)
            return url
        except Exception as exc:  # any failure to reach or log in: reported below, with the next candidate tried
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    pytest.fail("PostgreSQL is unreachable, so the PostgreSQL tests cannot run:\n  " + "\n  ".join(errors)
                + "\nStart PostgreSQL (trust auth, database 'test'), point TUNEBOT_TEST_POSTGRES_URL at one, or set "
                "TUNEBOT_SKIP_POSTGRES=1 to skip these tests deliberately.", pytrace=False)
