"""Shared fixtures for the command-language tests: the shipped catalog and a few policies."""

from __future__ import annotations

import pytest

from commands import Decision, parse_comment
from commands.catalog import Catalog
from commands.policy import DEFAULT_POLICY, Policy, parse_policy
from configs import load_catalog


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def policy() -> Policy:
    return DEFAULT_POLICY


@pytest.fixture(scope="session")
def rich_policy(catalog: Catalog) -> Policy:
    """A repository that evaluates on CMMLU after training and has a default model."""
    result = parse_policy(
        "models: {default: tiny}\nbenchmarks: {default: [cmmlu]}\ndatasets: {dir: data}\n", catalog=catalog
    )
    assert isinstance(result, Policy)
    return result


@pytest.fixture()
def parse(catalog: Catalog, policy: Policy):  # type: ignore[no-untyped-def]
    def _parse(text: str, pol: Policy | None = None, bot_login: str = "tunebot") -> Decision:
        return parse_comment(text, catalog=catalog, policy=pol or policy, bot_login=bot_login)

    return _parse
