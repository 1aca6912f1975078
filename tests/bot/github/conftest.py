"""The edge tests use the shared fake-server fixtures."""

from tests.fakes.fixtures import *  # noqa: F403
