"""The pure brain of tunebot: comment text and facts in, a decision out (no network, no env, no clock)."""

from .decision import Command, Decision, Ignore, Parsed, Reply
from .parse import parse_comment

__all__ = ["Command", "Decision", "Ignore", "Parsed", "Reply", "parse_comment"]
