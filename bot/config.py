"""The service's one typed configuration, built once at the entry point from a file and/or the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration problem, phrased so that an operator knows what to set."""


class Secret:
    """A secret value that never shows up in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class DingTalkRobot:
    name: str
    webhook: str
    secret: Secret


@dataclass(frozen=True)
class Config:
    # GitHub App (APP_ID + PRIVATE_KEY / PRIVATE_KEY_PATH) or token mode (GITHUB_TOKEN).
    app_id: str = ""
    private_key: Secret = field(default_factory=lambda: Secret(""))
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    github_token: Secret = field(default_factory=lambda: Secret(""))
    github_api_url: str = "https://api.github.com"
    github_web_url: str = "https://github.com"
    # The login the bot's own comments carry; empty = learned from GitHub at start-up (GET /app -> `<slug>[bot]`, or
    # GET /user for a token): App names are unique, so a real installation is never called `tunebot`.
    bot_login: str = ""
    command_name: str = "tunebot"
    workflow_file: str = "tunebot-run.yml"
    # Signs the job spec that travels through workflow_dispatch; runners hold the same key.
    job_signing_key: Secret = field(default_factory=lambda: Secret(""))
    # A signed job carries `not_after` = dispatch time + this; runners refuse it later (a leaked or replayed job
    # is not valid forever). Long enough for a job to wait for a free GPU runner.
    job_ttl_s: float = 24 * 3600.0
    # The bot's copy of the CMMLU / C-Eval packs (the runners' TUNEBOT_BENCH_DATA): jobs carry the content hash of
    # the question files they evaluate, and runners refuse other files. Empty: the samples shipped with tunebot (the
    # runners' default); `none`: jobs carry no pack hash (runners then hash what they have, unchecked).
    bench_data: str = ""
    database_url: str = "sqlite:///tunebot.db"
    public_url: str = "http://127.0.0.1:3000"
    host: str = "0.0.0.0"
    port: int = 3000
    max_body_bytes: int = 1 << 20  # GitHub caps payloads at 25 MB, but comment events are far smaller
    # A request must arrive whole (head and body) within this long of its first byte, or the connection is closed:
    # GitHub sends a delivery in one go, a client that trickles is holding a connection (slowloris).
    read_timeout_s: float = 10.0
    # Idle keep-alive connections are closed after this long: longer than a proxy's idle upstream connections
    # (nginx: 60 s), so that the proxy, not the bot, closes them and never sends on a connection being closed.
    keepalive_timeout_s: float = 75.0
    max_connections: int = 256  # open connections at most; more are closed at once (each costs memory and a fd)
    workers: int = 4
    # Several replicas may share one PostgreSQL database. Each leases the deliveries it works on for
    # `delivery_lease_s` and renews the lease while it works; when a replica dies its leases run out and another
    # replica takes the deliveries over. `replica_id` names this replica's leases (empty: the host name), so it must
    # differ between replicas and stay the same across a restart (a restart takes its own leases back at once).
    replica_id: str = ""
    delivery_lease_s: float = 60.0
    # A delivery whose processing fails (GitHub 5xx after the client's retries, the store down) is tried again after
    # retry_base, 2x, 4x ... seconds; after `delivery_max_attempts` the commenter is told what failed.
    delivery_max_attempts: int = 5
    delivery_retry_base_s: float = 10.0
    # GitHub's secondary limits on content-creating requests (comments, edits, reactions, dispatches, check runs),
    # per installation: each replica paces its own writes, so N replicas should each get 1/N. 0 = unpaced.
    github_writes_per_minute: float = 80.0
    github_writes_per_hour: float = 500.0
    card_edit_interval_s: float = 10.0
    sweep_interval_s: float = 60.0
    stale_run_after_s: float = 1800.0
    # Finished deliveries (and their bodies) and performed outbox writes are deleted after this many days; 0 keeps
    # them. Longer than GitHub's 3-day redelivery window: a redelivery of a pruned delivery would count as new.
    delivery_retention_days: float = 7.0
    slack_token: Secret = field(default_factory=lambda: Secret(""))
    slack_signing_secret: Secret = field(default_factory=lambda: Secret(""))
    slack_api_url: str = "https://slack.com/api/"
    slack_user_map: Mapping[str, str] = field(default_factory=dict)  # Slack user id -> GitHub login
    dingtalk_robots: tuple[DingTalkRobot, ...] = ()
    dingtalk_user_map: Mapping[str, str] = field(default_factory=dict)  # GitHub login -> DingTalk user id
    log_level: str = "INFO"
    # When set, GET /metrics needs `Authorization: Bearer <token>`: run counts, repositories' activity and memory
    # are not for the internet (a scraper inside the cluster can also reach the port directly).
    metrics_token: Secret = field(default_factory=lambda: Secret(""))
    # Where the training checkpoints agents upload are kept (the newest per run), for /resume and for resuming a run
    # whose runner died; and the largest upload accepted (LoRA checkpoints with optimizer state are megabytes).
    checkpoint_dir: str = "checkpoints"
    max_checkpoint_bytes: int = 2 << 30
    # The web view (/ui/, bot/web/): private repositories' pages need a GitHub login through the App's OAuth web
    # flow (the App's client id and secret); its session cookies are encrypted and signed with `web_session_key`
    # (derived from the webhook secret when unset). Public repositories' pages need neither.
    github_client_id: str = ""
    github_client_secret: Secret = field(default_factory=lambda: Secret(""))
    web_session_key: Secret = field(default_factory=lambda: Secret(""))
    web_ui: bool = True

    @property
    def app_mode(self) -> bool:
        return bool(self.app_id and self.private_key)

    def problems(self) -> list[str]:
        """What is missing or inconsistent, each as an instruction; empty when the service can start."""
        out: list[str] = []
        if not self.webhook_secret:
            out.append("WEBHOOK_SECRET is not set: webhooks cannot be verified (set it to the App's webhook secret)")
        if not self.app_mode and not self.github_token:
            out.append("no GitHub credentials: set APP_ID and PRIVATE_KEY (or PRIVATE_KEY_PATH), or GITHUB_TOKEN")
        if self.app_id and not self.private_key:
            out.append("APP_ID is set but PRIVATE_KEY / PRIVATE_KEY_PATH is not")
        if not self.job_signing_key:
            out.append("TUNEBOT_JOB_SIGNING_KEY is not set: runners cannot verify dispatched jobs")
        if not self.public_url.startswith(("http://", "https://")):
            out.append(f"TUNEBOT_PUBLIC_URL must be an http(s) URL, got {self.public_url!r}")
        if not (0 < self.port < 65536):
            out.append(f"PORT must be 1-65535, got {self.port}")
        if self.read_timeout_s <= 0 or self.keepalive_timeout_s <= 0:
            out.append("TUNEBOT_READ_TIMEOUT_S and TUNEBOT_KEEPALIVE_TIMEOUT_S must be positive numbers of seconds")
        if self.job_ttl_s <= 0:
            out.append(f"TUNEBOT_JOB_TTL_S must be a positive number of seconds, got {self.job_ttl_s:g}")
        if self.delivery_lease_s <= 0 or self.delivery_max_attempts < 1 or self.delivery_retry_base_s < 0:
            out.append("TUNEBOT_DELIVERY_LEASE_S must be positive, TUNEBOT_DELIVERY_MAX_ATTEMPTS at least 1 and "
                       "TUNEBOT_DELIVERY_RETRY_BASE_S not negative")
        if bool(self.github_client_id) != bool(self.github_client_secret):
            out.append("GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET go together (the App's OAuth credentials, for the "
                       "web view's login): set both or neither")
        if self.max_connections < 1:
            out.append(f"TUNEBOT_MAX_CONNECTIONS must be at least 1, got {self.max_connections}")
        return out


# Environment names follow the GitHub App conventions people know from probot.
_ENV: dict[str, str] = {
    "APP_ID": "app_id",
    "PRIVATE_KEY": "private_key",
    "WEBHOOK_SECRET": "webhook_secret",
    "GITHUB_TOKEN": "github_token",
    "TUNEBOT_GITHUB_API_URL": "github_api_url",
    "TUNEBOT_GITHUB_WEB_URL": "github_web_url",
    "TUNEBOT_BOT_LOGIN": "bot_login",
    "TUNEBOT_WORKFLOW": "workflow_file",
    "TUNEBOT_JOB_SIGNING_KEY": "job_signing_key",
    "TUNEBOT_JOB_TTL_S": "job_ttl_s",
    "TUNEBOT_BENCH_DATA": "bench_data",
    "TUNEBOT_DATABASE_URL": "database_url",
    "TUNEBOT_PUBLIC_URL": "public_url",
    "HOST": "host",
    "PORT": "port",
    "TUNEBOT_WORKERS": "workers",
    "TUNEBOT_REPLICA_ID": "replica_id",
    "TUNEBOT_DELIVERY_LEASE_S": "delivery_lease_s",
    "TUNEBOT_DELIVERY_MAX_ATTEMPTS": "delivery_max_attempts",
    "TUNEBOT_DELIVERY_RETRY_BASE_S": "delivery_retry_base_s",
    "TUNEBOT_GITHUB_WRITES_PER_MINUTE": "github_writes_per_minute",
    "TUNEBOT_GITHUB_WRITES_PER_HOUR": "github_writes_per_hour",
    "TUNEBOT_READ_TIMEOUT_S": "read_timeout_s",
    "TUNEBOT_KEEPALIVE_TIMEOUT_S": "keepalive_timeout_s",
    "TUNEBOT_MAX_CONNECTIONS": "max_connections",
    "TUNEBOT_DELIVERY_RETENTION_DAYS": "delivery_retention_days",
    "SLACK_BOT_TOKEN": "slack_token",
    "SLACK_SIGNING_SECRET": "slack_signing_secret",
    "TUNEBOT_SLACK_API_URL": "slack_api_url",
    "LOG_LEVEL": "log_level",
    "TUNEBOT_METRICS_TOKEN": "metrics_token",
    "TUNEBOT_CHECKPOINT_DIR": "checkpoint_dir",
    "TUNEBOT_MAX_CHECKPOINT_BYTES": "max_checkpoint_bytes",
    "GITHUB_CLIENT_ID": "github_client_id",
    "GITHUB_CLIENT_SECRET": "github_client_secret",
    "TUNEBOT_WEB_SESSION_KEY": "web_session_key",
    "TUNEBOT_WEB_UI": "web_ui",
}
# NAME_FILE (or *_PATH for the key, as probot does) reads a secret from a file, e.g. a mounted Kubernetes Secret.
_FILE_ENV: dict[str, str] = {
    "PRIVATE_KEY_PATH": "private_key",
    "PRIVATE_KEY_FILE": "private_key",
    "WEBHOOK_SECRET_FILE": "webhook_secret",
    "GITHUB_TOKEN_FILE": "github_token",
    "TUNEBOT_JOB_SIGNING_KEY_FILE": "job_signing_key",
    "SLACK_BOT_TOKEN_FILE": "slack_token",
    "TUNEBOT_METRICS_TOKEN_FILE": "metrics_token",
    "GITHUB_CLIENT_SECRET_FILE": "github_client_secret",
    "TUNEBOT_WEB_SESSION_KEY_FILE": "web_session_key",
}
_SECRETS = {f.name for f in fields(Config) if f.type in ("Secret", Secret)}
_INTS = {"port", "workers", "max_body_bytes", "max_connections", "delivery_max_attempts", "max_checkpoint_bytes"}
_FLOATS = {"card_edit_interval_s", "sweep_interval_s", "stale_run_after_s", "delivery_retention_days",
           "read_timeout_s", "keepalive_timeout_s", "job_ttl_s", "github_writes_per_minute",
           "github_writes_per_hour", "delivery_lease_s", "delivery_retry_base_s"}


_BOOLS = {"web_ui"}


def _coerce(name: str, value: Any) -> Any:
    if name in _BOOLS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return text in ("1", "true", "yes", "on")
    if name in _SECRETS:
        return Secret(str(value).strip() if name != "private_key" else str(value))
    try:
        if name in _INTS:
            return int(value)
        if name in _FLOATS:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    return value


def _read_secret_file(path: str, what: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """File values first, then the environment, then explicit overrides (tests, CLI flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: invalid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        unknown = sorted(set(raw) - known - {"dingtalk"})
        if unknown:
            raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}")
        for key, value in raw.items():
            if key == "dingtalk":
                values["dingtalk_robots"] = tuple(
                    DingTalkRobot(str(r["name"]), str(r["webhook"]), Secret(str(r.get("secret", ""))))
                    for r in (value or [])
                )
            elif key in ("slack_user_map", "dingtalk_user_map"):
                values[key] = dict(value or {})
            else:
                values[key] = _coerce(key, value)
    for env_name, attr in _FILE_ENV.items():
        if env.get(env_name):
            values[attr] = _coerce(attr, _read_secret_file(env[env_name], env_name))
    for env_name, attr in _ENV.items():
        if env.get(env_name):
            values[attr] = _coerce(attr, env[env_name])
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = value if isinstance(value, (Secret, tuple, dict)) else _coerce(key, value)
    return replace(Config(), **values)
