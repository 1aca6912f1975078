"""The tunebot command line: the one composition root that knows the bot, the agent and the command language."""

__version__ = "0.1.0"
