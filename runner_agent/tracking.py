"""Finds the experiment tracker's page of a run in ms-swift's output (wandb, SwanLab and MLflow print it themselves),
believing only a link to the host the runner's own tracker settings name."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from commands.events import valid_tracker_url

# Terminal colours and OSC 8 hyperlinks, which the trackers' printers may add around the link.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\]8;[^\x07\x1b]*(?:\x07|\x1b\\)")
_URL = re.compile(r"https?://[^\s<>\"'`]+")
# The lines each tracker prints, read from its source:
# - wandb 0.31 (sdk/wandb_run.py, to stderr): "wandb: 🚀 View run at <url>" when the run starts and
#   "wandb: 🚀 View run <name> at: <url>" when it ends (no emoji when the stream is not unicode-safe);
# - SwanLab 0.10 (sdk/internal/run/greeting.py, rich console): "swanlab: 🚀 View run <name> at <url>" when it starts;
#   rich wraps at the console width (80 columns on a pipe), so the link may come alone on the next line;
# - MLflow 3.17 (tracking/_tracking_service/client.py `_log_url`, stdout, HTTP tracking servers only):
#   "🏃 View run <name> at: <url>" when the run ends.
_VIEW_RUN = {
    "wandb": re.compile(r"^wandb:\s.*\bView run\b"),
    "swanlab": re.compile(r"^swanlab:\s.*\bView run\b"),
    "mlflow": re.compile(r"^\W*View run\b.*\bat:"),
}
TRACKED = tuple(_VIEW_RUN)


def _host(url: str | None) -> str | None:
    if not url:
        return None
    if "://" not in url:
        url = "https://" + url
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def tracker_hosts(tool: str, env: Mapping[str, str]) -> frozenset[str]:
    """The hosts a run page of `tool` may be on, from the same settings the tracker reads in `env` (the runner's
    secrets and variables): an address anywhere else in the log is not the tracker's."""
    hosts: set[str | None] = set()
    if tool == "wandb":
        base = _host(env.get("WANDB_BASE_URL") or "https://api.wandb.ai")
        hosts.add(base)
        if base and base.startswith("api."):
            hosts.add(base[4:])  # the API at api.wandb.ai, the pages at wandb.ai
    elif tool == "swanlab":
        web, api = _host(env.get("SWANLAB_WEB_HOST")), _host(env.get("SWANLAB_API_HOST"))
        if web:
            hosts.add(web)
        elif api:  # SwanLab derives the web host from the API host when only that is set
            hosts.update({api, api[4:] if api.startswith("api.") else api})
        else:
            hosts.add("swanlab.cn")
    elif tool == "mlflow":
        uri = env.get("MLFLOW_TRACKING_URI", "")
        if uri.startswith(("http://", "https://")):
            hosts.add(_host(uri))
        elif uri.startswith("databricks"):
            hosts.add(_host(env.get("DATABRICKS_HOST")))
    return frozenset(h for h in hosts if h)


# The run page's path: wandb /<entity>/<project>/runs/<id>, SwanLab /@<workspace>/<project>/runs/<id>, MLflow
# /#/experiments/<id>/runs/<id> (Databricks: /ml/experiments/…); the project, where known, must be the job's.
_RUN_PATH = {
    "wandb": re.compile(r"/[^/]+/(?P<project>[^/]+)/runs/[^/?#]+/?"),
    "swanlab": re.compile(r"/@[^/]+/(?P<project>[^/]+)/runs/[^/?#]+/?"),
    "mlflow": re.compile(r"(?:/[^#]*)?/(?:#/|ml/)experiments/[^/]+/runs/[^/?#]+"),  # behind a path prefix too
}
_PROJECT_ENV = {"wandb": "WANDB_PROJECT", "swanlab": "SWANLAB_PROJECT"}


def _acceptable(tool: str, url: str, hosts: frozenset[str], project: str | None) -> str | None:
    if not valid_tracker_url(url) or _host(url) not in hosts:
        return None
    parts = urlsplit(url)
    path = parts.path + (f"#{parts.fragment}" if parts.fragment else "")
    match = _RUN_PATH[tool].fullmatch(path)
    if match is None:
        return None
    if project is not None and "project" in match.groupdict() and match.group("project") != project:
        return None
    return url


class TrackerWatch:
    """Fed every line of the training process (from its reader thread); keeps the first run link of the configured
    tracker. `url` is read from the agent's own thread."""

    def __init__(self, tool: str, env: Mapping[str, str]) -> None:
        self.tool = tool
        self.hosts = tracker_hosts(tool, env)
        self.project = env.get(_PROJECT_ENV.get(tool, ""))
        self._pattern = _VIEW_RUN.get(tool)
        self._pending = False  # "View run … at" seen; the link may follow on the next line (rich wraps)
        self._lock = threading.Lock()
        self.url: str | None = None

    def feed(self, line: str) -> str | None:
        """Look at one line; the link when this line completes it (first one only), else None."""
        if self._pattern is None or self.url is not None or not self.hosts:
            return None
        text = _ANSI.sub("", line).strip()
        found: str | None = None
        if self._pattern.search(text):
            after = re.split(r"\bView run\b", text, maxsplit=1)[1]
            # The link ends the tracker's line: anything after it means the line is not the tracker's.
            match = re.search(r"\sat:?(?:\s+(\S+))?$", after)
            self._pending = match is not None and match.group(1) is None
            if match is not None and match.group(1) is not None:
                found = _acceptable(self.tool, match.group(1), self.hosts, self.project)
        elif self._pending:
            self._pending = False
            if _URL.fullmatch(text):
                found = _acceptable(self.tool, text, self.hosts, self.project)
        if found is None:
            return None
        with self._lock:
            if self.url is None:
                self.url = found
                return found
        return None
