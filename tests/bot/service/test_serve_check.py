"""`tunebot serve --check` says what is missing or wrong, one line each, against a fake GitHub."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fakes.github import FakeGitHub, generate_app_key, public_key_of
from tests.paths import REPO


async def check(env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tunebot", "serve", "--check", env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_check_token_mode(tmp_path: Path) -> None:
    async with FakeGitHub(token_login="acme-ci-bot") as gh:
        base = {"WEBHOOK_SECRET": "s", "TUNEBOT_JOB_SIGNING_KEY": "k", "TUNEBOT_GITHUB_API_URL": gh.url,
                "TUNEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
        code, out, err = await check({**base, "GITHUB_TOKEN": gh.token})
        assert code == 0 and "configuration complete" in out, err
        assert "acting as acme-ci-bot" in out  # the token's user, asked of GitHub (GET /user)
        code, out, err = await check({**base, "GITHUB_TOKEN": "ghp_wrong"})
        assert code == 1 and "credentials rejected (401)" in err and "Traceback" not in err
        code, out, err = await check({k: v for k, v in base.items() if k != "WEBHOOK_SECRET"}
                                     | {"GITHUB_TOKEN": gh.token})
        assert code == 1 and "WEBHOOK_SECRET is not set" in err


async def test_check_app_mode_signs_a_jwt(tmp_path: Path) -> None:
    key = generate_app_key()
    key_file = tmp_path / "app.pem"
    key_file.write_text(key)
    async with FakeGitHub(app_public_key=public_key_of(key), app_slug="acme-tunebot") as gh:
        env = {"WEBHOOK_SECRET": "s", "TUNEBOT_JOB_SIGNING_KEY": "k", "TUNEBOT_GITHUB_API_URL": gh.url,
               "TUNEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "APP_ID": str(gh.app_id),
               "PRIVATE_KEY_PATH": str(key_file)}
        code, out, err = await check(env)
        assert code == 0 and "App mode" in out, err
        assert "acting as acme-tunebot[bot]" in out  # the App's slug (GET /app), not a hard-coded name
        other = tmp_path / "other.pem"
        other.write_text(generate_app_key())
        code, out, err = await check({**env, "PRIVATE_KEY_PATH": str(other)})
        assert code == 1 and "401" in err
