"""GitHub edge of the service: webhook parsing (sansio), the async port and its PyGithub implementation."""
