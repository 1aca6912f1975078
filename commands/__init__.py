"""The pure brain of tunebot: comment text and facts in, a decision out (no network, no env, no clock)."""
