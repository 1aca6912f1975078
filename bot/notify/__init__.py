"""Chat notifications: thin async clients for Slack (Web API) and DingTalk (custom robot)."""
