"""Fake GitHub, Slack and DingTalk servers on 127.0.0.1, built to the real wire formats in tests/fixtures/."""
