"""Everything tunebot says: GitHub comments and checks, Slack blocks and DingTalk payloads, in English and Chinese.

Pure functions of plain data (no I/O, no clock); the bot decides when and where to send what these return.
"""

from __future__ import annotations

from .chart import downsample, loss_chart
from .dingtalk import (
    DingTalkAt,
    dingtalk_comparison_action_card,
    dingtalk_comparison_markdown,
    dingtalk_milestone,
    dingtalk_run_action_card,
    dingtalk_run_markdown,
)
from .github import (
    CheckRunOutput,
    check_run_output,
    compare_marker,
    comparison_markdown,
    explain,
    headline,
    render_cached_reply,
    render_comparison,
    render_leaderboard,
    render_run_card,
    render_status_list,
    run_marker,
)
from .i18n import LANGUAGES, Language, normalize_language
from .slack import (
    Milestone,
    milestone_text,
    slack_comparison_message,
    slack_milestone_text,
    slack_run_message,
    to_mrkdwn,
    validate_message,
)
from .split import GITHUB_COMMENT_LIMIT, balanced, split_comment
from .views import LeaderboardEntry, Link, ProgressView, ReportLinks, RunState, RunView, ScoreView

__all__ = [
    "GITHUB_COMMENT_LIMIT",
    "LANGUAGES",
    "CheckRunOutput",
    "DingTalkAt",
    "Language",
    "LeaderboardEntry",
    "Link",
    "Milestone",
    "ProgressView",
    "ReportLinks",
    "RunState",
    "RunView",
    "ScoreView",
    "balanced",
    "check_run_output",
    "compare_marker",
    "comparison_markdown",
    "dingtalk_comparison_action_card",
    "dingtalk_comparison_markdown",
    "dingtalk_milestone",
    "dingtalk_run_action_card",
    "dingtalk_run_markdown",
    "downsample",
    "explain",
    "headline",
    "loss_chart",
    "milestone_text",
    "normalize_language",
    "render_cached_reply",
    "render_comparison",
    "render_leaderboard",
    "render_run_card",
    "render_status_list",
    "run_marker",
    "slack_comparison_message",
    "slack_milestone_text",
    "slack_run_message",
    "split_comment",
    "to_mrkdwn",
    "validate_message",
]
