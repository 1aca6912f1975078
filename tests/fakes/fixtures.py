"""pytest fixtures for the fake servers; import them into a conftest (`from tests.fakes.fixtures import *`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.github.port import RetryPolicy
from bot.github.pygithub_impl import PyGithubPort
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack

__all__ = ["fake_dingtalk", "fake_github", "fake_slack", "github_port", "http_session", "recorded_sleeps"]


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    """A running FakeGitHub (token mode: `fake_github.token` acts as `tunebot[bot]`)."""
    async with FakeGitHub() as gh:
        yield gh


@pytest.fixture
def recorded_sleeps() -> list[float]:
    return []


@pytest.fixture
async def github_port(fake_github: FakeGitHub, recorded_sleeps: list[float]) -> AsyncIterator[PyGithubPort]:
    """PyGithubPort against fake_github; retry waits are recorded in `recorded_sleeps` instead of slept."""

    async def no_sleep(seconds: float) -> None:
        recorded_sleeps.append(seconds)

    port = PyGithubPort.with_token(fake_github.url, fake_github.token, writes_per_minute=0, writes_per_hour=0,
                                   sleep=no_sleep, retry=RetryPolicy(max_attempts=4, base_delay=0.01))
    try:
        yield port
    finally:
        await port.close()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as slack:
        yield slack


@pytest.fixture
async def fake_dingtalk() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as ding:
        yield ding
