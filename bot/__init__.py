"""The always-on service: HTTP, GitHub, Slack, DingTalk and storage."""
