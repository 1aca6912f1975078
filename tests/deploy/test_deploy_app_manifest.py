"""The GitHub App manifest: valid manifest parameters, least privilege, every permission justified in the README
and backed by a call the bot's GitHub port actually makes."""

from __future__ import annotations

import inspect
import json
import re
from typing import Any
from urllib.parse import urlparse

import pytest

from bot.github.port import GitHubPort
from tests.deploy.support import DEPLOY, WORKFLOWS

MANIFEST = WORKFLOWS / "app-manifest.json"
README = DEPLOY / "README.md"

# The parameters GitHub accepts in a manifest ("Registering a GitHub App from a manifest").
MANIFEST_KEYS = {"name", "url", "hook_attributes", "redirect_url", "callback_urls", "setup_url", "description",
                 "public", "default_events", "default_permissions", "request_oauth_on_install", "setup_on_update"}
# Which permission lets an App subscribe to each event (GitHub's webhook events reference).
EVENT_NEEDS = {
    "issue_comment": {"issues", "pull_requests"},
    "pull_request": {"pull_requests"},
    "workflow_run": {"actions"},
    "workflow_job": {"actions"},
}
LEVEL = {"none": 0, "read": 1, "write": 2}
# Every method of the bot's GitHub port, with the permission its REST call needs. A new port method fails
# test_every_port_method_is_covered until someone adds it here and checks the manifest still grants it.
PORT_NEEDS = {
    "get_permission": ("metadata", "read"),  # GET /repos/{o}/{r}/collaborators/{u}/permission
    "get_pull": ("pull_requests", "read"),  # GET /repos/{o}/{r}/pulls/{n}
    "create_comment": ("issues", "write"),  # POST /repos/{o}/{r}/issues/{n}/comments (PRs too)
    "edit_comment": ("issues", "write"),  # PATCH /repos/{o}/{r}/issues/comments/{id}
    "get_comment": ("issues", "read"),  # GET /repos/{o}/{r}/issues/comments/{id}
    "list_comments": ("issues", "read"),  # GET /repos/{o}/{r}/issues/{n}/comments
    "add_reaction": ("issues", "write"),  # POST /repos/{o}/{r}/issues/comments/{id}/reactions
    "dispatch_workflow": ("actions", "write"),  # POST .../actions/workflows/{id}/dispatches
    "find_run_by_name": ("actions", "read"),  # GET .../actions/workflows/{id}/runs
    "get_workflow_run": ("actions", "read"),  # GET .../actions/runs/{id}
    "cancel_workflow_run": ("actions", "write"),  # POST .../actions/runs/{id}/cancel
    "download_artifact": ("actions", "read"),  # GET .../actions/runs/{id}/artifacts, .../artifacts/{id}/zip
    "create_check_run": ("checks", "write"),  # POST /repos/{o}/{r}/check-runs
    "update_check_run": ("checks", "write"),  # PATCH /repos/{o}/{r}/check-runs/{id}
    "get_file": ("contents", "read"),  # GET /repos/{o}/{r}/contents/{path}
    "list_pull_files": ("pull_requests", "read"),  # GET /repos/{o}/{r}/pulls/{n}/files
    "default_branch": ("metadata", "read"),  # GET /repos/{o}/{r}
    "whoami": ("metadata", "read"),  # GET /app with the JWT (no installation permission needed), or GET /user
    "resolve_commit": ("contents", "read"),  # GET /repos/{o}/{r}/commits/{ref}
    "blob_shas": ("contents", "read"),  # GET /repos/{o}/{r}/contents/{path}?ref=
    "folder_blobs": ("contents", "read"),  # GET /repos/{o}/{r}/contents/{folder}?ref= (entries with their sha)
    "repo_info": ("metadata", "read"),  # GET /repos/{o}/{r} (the web view: public or private)
    "branch_commits": ("contents", "read"),  # GET /repos/{o}/{r}/commits?sha=<branch> (the web view's history)
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def test_manifest_uses_only_known_parameters(manifest: dict[str, Any]) -> None:
    assert set(manifest) <= MANIFEST_KEYS, set(manifest) - MANIFEST_KEYS
    assert manifest["name"] and len(manifest["name"]) <= 34  # GitHub's limit on App names
    assert set(manifest["hook_attributes"]) <= {"url", "active"}
    assert manifest["hook_attributes"]["active"] is True


def test_manifest_has_the_web_views_oauth_callback(manifest: dict[str, Any]) -> None:
    # The web view's GitHub login (bot/web/auth.py) sends users back to /ui/oauth/callback on the same service.
    [callback] = manifest["callback_urls"]
    parsed = urlparse(callback)
    assert parsed.scheme == "https" and parsed.path == "/ui/oauth/callback"
    assert parsed.netloc == urlparse(manifest["hook_attributes"]["url"]).netloc


def test_manifest_urls_are_https(manifest: dict[str, Any]) -> None:
    for url in (manifest["url"], manifest["hook_attributes"]["url"], manifest["redirect_url"]):
        parsed = urlparse(url)
        assert parsed.scheme == "https" and parsed.netloc, url
    # Webhooks and the redirect land on the same service.
    assert urlparse(manifest["hook_attributes"]["url"]).netloc == urlparse(manifest["redirect_url"]).netloc


def test_app_is_private(manifest: dict[str, Any]) -> None:
    assert manifest["public"] is False
    assert manifest.get("request_oauth_on_install", False) is False


def test_permissions_are_exactly_what_the_bot_uses(manifest: dict[str, Any]) -> None:
    needed: dict[str, str] = {}
    for permission, level in PORT_NEEDS.values():
        if LEVEL[level] > LEVEL[needed.get(permission, "none")]:
            needed[permission] = level
    assert manifest["default_permissions"] == needed


def test_every_port_method_is_covered() -> None:
    methods = {name for name, _ in inspect.getmembers(GitHubPort, inspect.isfunction) if not name.startswith("_")}
    assert methods == set(PORT_NEEDS), (
        f"bot/github/port.py changed: map {sorted(methods - set(PORT_NEEDS))} to the permission their REST call "
        f"needs in PORT_NEEDS (and grant it in app-manifest.json); drop {sorted(set(PORT_NEEDS) - methods)}"
    )


def test_each_event_has_its_permission(manifest: dict[str, Any]) -> None:
    granted = manifest["default_permissions"]
    assert set(manifest["default_events"]) == set(EVENT_NEEDS)
    for event in manifest["default_events"]:
        assert any(p in granted for p in EVENT_NEEDS[event]), event


def _readme_table(header: str) -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index(header)
    rows: dict[str, list[str]] = {}
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        match = re.fullmatch(r"`([a-z_]+)`", cells[0])
        if match:
            rows[match.group(1)] = cells[1:]
    return rows


def test_readme_justifies_every_permission_and_no_other(manifest: dict[str, Any]) -> None:
    table = _readme_table("| permission | access | why the bot needs it |")
    assert {name: cells[0] for name, cells in table.items()} == manifest["default_permissions"]
    for name, cells in table.items():
        assert len(cells[1]) > 40, f"the README's reason for {name} is too thin"


def test_readme_explains_every_event(manifest: dict[str, Any]) -> None:
    table = _readme_table("| event | needs | why |")
    assert set(table) == set(manifest["default_events"])
    for event, cells in table.items():
        assert cells[0] in EVENT_NEEDS[event], (event, cells[0])
        assert cells[0] in manifest["default_permissions"], (event, cells[0])
