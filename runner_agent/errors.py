"""The agent's failure vocabulary: an actionable failure, and a cancellation with the exit code it ends in."""

from __future__ import annotations

# The agent's exit codes (documented in runner_agent/cli.py's help and in the README of the agent).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class AgentError(Exception):
    """A failure with a reason a person can act on; it ends the run as `finished: failed`."""

    def __init__(self, reason: str, *, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail  # the last meaningful lines of a tool's output, when there are any

    def full_reason(self) -> str:
        return f"{self.reason}\n{self.detail}" if self.detail else self.reason


class Cancelled(Exception):
    """The run was stopped from outside (signal) or by its wall-clock limit; it ends as `finished: cancelled`."""

    def __init__(self, reason: str, exit_code: int = EXIT_SIGTERM) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code
