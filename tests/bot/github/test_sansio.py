"""Webhook signature and parsing against GitHub's test vector and every octokit example payload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bot.github.sansio import (
    Installation,
    IssueComment,
    Ping,
    PullRequestEvent,
    Unsupported,
    WebhookError,
    WorkflowJobEvent,
    WorkflowRunEvent,
    parse_event,
    verify_signature,
)
from tests.fakes.deliveries import delivery_headers, load_payload, pr_comment_payload, sign
from tests.paths import FIXTURES, WEBHOOKS

VECTOR = json.loads((FIXTURES / "github" / "signature_test_vector.json").read_text())
PAYLOADS = sorted(p for p in WEBHOOKS.glob("*.json"))
SCHEMAS = WEBHOOKS / "schemas"


def _event_of(path: Path) -> str:
    return path.name.split(".")[0]


# ----------------------------------------------------------------------------- signatures
def test_signature_vector_from_github_docs() -> None:
    secret = VECTOR["secret"].encode()
    body = VECTOR["payload"].encode()
    assert verify_signature(secret, body, VECTOR["X-Hub-Signature-256"])
    assert sign(secret, body)[0] == VECTOR["X-Hub-Signature-256"]  # the fakes sign as GitHub does


@pytest.mark.parametrize("header", [
    None, "", "sha256=", "sha1=" + "0" * 40, "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    "sha256=" + "0" * 64, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17ff",
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043é17",
])
def test_signature_rejects_bad_headers(header: str | None) -> None:
    assert not verify_signature(VECTOR["secret"].encode(), VECTOR["payload"].encode(), header)


def test_signature_is_over_raw_bytes_not_reserialised_json() -> None:
    secret = b"s3cret"
    raw = b'{"a": 1,  "b":"\\u00e9"}'
    header = sign(secret, raw)[0]
    assert verify_signature(secret, raw, header)
    assert not verify_signature(secret, json.dumps(json.loads(raw)).encode(), header)
    assert not verify_signature(b"other", raw, header)
    assert not verify_signature(b"", raw, sign(b"", raw)[0]), "an empty secret must never verify"


def test_uppercase_hex_is_accepted() -> None:
    header = sign(b"k", b"x")[0]
    assert verify_signature(b"k", b"x", "sha256=" + header.split("=", 1)[1].upper())


# ----------------------------------------------------------------------------- every octokit payload
def test_the_fixture_folder_is_complete() -> None:
    assert len(PAYLOADS) >= 40
    assert {_event_of(p) for p in PAYLOADS} >= {"issue_comment", "pull_request", "workflow_run", "workflow_job",
                                                 "ping", "installation", "check_run", "check_suite"}


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda p: p.name)
def test_every_octokit_payload_parses_through_a_signed_delivery(path: Path) -> None:
    body = path.read_bytes()
    event_name = _event_of(path)
    headers = delivery_headers(event_name, body, b"secret", "d4049330-377e-11ed-9c2e-1ae286aab35f")
    assert verify_signature(b"secret", body, headers["X-Hub-Signature-256"])
    payload = json.loads(body)
    ev = parse_event(event_name, payload)
    expected_type = {"issue_comment": IssueComment, "pull_request": PullRequestEvent,
                     "workflow_run": WorkflowRunEvent, "workflow_job": WorkflowJobEvent, "ping": Ping,
                     "installation": Installation}.get(event_name, Unsupported)
    assert type(ev) is expected_type
    if isinstance(ev, IssueComment):
        assert ev.body == payload["comment"]["body"]
        assert ev.comment_id == payload["comment"]["id"]
        assert ev.repo == payload["repository"]["full_name"]
        assert ev.issue_number == payload["issue"]["number"]
        assert ev.is_pull_request is False  # octokit's examples are all on plain issues
        assert ev.author_association == "OWNER"
        assert ev.installation_id == (payload.get("installation") or {}).get("id")
    elif isinstance(ev, PullRequestEvent):
        pr = payload["pull_request"]
        assert (ev.number, ev.head_sha, ev.base_ref) == (pr["number"], pr["head"]["sha"], pr["base"]["ref"])
        assert ev.installation_id == payload["installation"]["id"]
        assert ev.is_fork == (pr["head"]["repo"]["full_name"] != pr["base"]["repo"]["full_name"])
    elif isinstance(ev, WorkflowRunEvent):
        run = payload["workflow_run"]
        assert (ev.id, ev.status, ev.conclusion, ev.head_sha) == (run["id"], run["status"], run["conclusion"],
                                                                   run["head_sha"])
        assert ev.display_title == run["display_title"]
        assert ev.installation_id is None  # absent from every workflow_run example
    elif isinstance(ev, WorkflowJobEvent):
        job = payload["workflow_job"]
        assert (ev.id, ev.run_id, ev.status, ev.conclusion) == (job["id"], job["run_id"], job["status"],
                                                                 job["conclusion"])
    elif isinstance(ev, Ping):
        assert ev.zen == payload["zen"]
        assert ev.app_id == payload.get("hook", {}).get("app_id")
    elif isinstance(ev, Installation):
        assert ev.installation_id == payload["installation"]["id"]
    else:
        assert ev == Unsupported(event_name, payload.get("action"))


def test_known_values_from_the_readme() -> None:
    ev = parse_event("installation", load_payload("installation.created"))
    assert isinstance(ev, Installation) and (ev.installation_id, ev.app_id) == (957387, 29310)
    ping = parse_event("ping", load_payload("ping.with-app_id"))
    assert isinstance(ping, Ping) and ping.app_id == 29310
    plain = parse_event("ping", load_payload("ping"))
    assert isinstance(plain, Ping) and plain.app_id is None
    edited = parse_event("issue_comment", load_payload("issue_comment.edited"))
    assert isinstance(edited, IssueComment) and edited.action == "edited"
    assert edited.previous_body is not None and edited.body.endswith("fixed today.")


def test_pr_comment_is_flagged_and_keeps_installation() -> None:
    ev = parse_event("issue_comment", pr_comment_payload("/train qwen-7b lora_rank=16", number=12,
                                                         login="alice", installation_id=42))
    assert isinstance(ev, IssueComment)
    assert ev.is_pull_request and ev.issue_number == 12 and ev.body == "/train qwen-7b lora_rank=16"
    assert ev.user_login == "alice" and not ev.is_bot and ev.installation_id == 42


def test_bot_comments_are_recognised() -> None:
    ev = parse_event("issue_comment", pr_comment_payload("/train x", login="tunebot[bot]", user_type="Bot"))
    assert isinstance(ev, IssueComment) and ev.is_bot
    ev2 = parse_event("issue_comment", pr_comment_payload("/train x", login="other[bot]", user_type="User"))
    assert isinstance(ev2, IssueComment) and ev2.is_bot


def test_fork_and_deleted_fork_pull_requests() -> None:
    payload = load_payload("pull_request.synchronize")
    payload["pull_request"]["head"]["repo"] = dict(payload["pull_request"]["head"]["repo"], full_name="evil/fork")
    ev = parse_event("pull_request", payload)
    assert isinstance(ev, PullRequestEvent) and ev.is_fork and ev.head_repo == "evil/fork"
    payload["pull_request"]["head"]["repo"] = None
    gone = parse_event("pull_request", payload)
    assert isinstance(gone, PullRequestEvent) and gone.is_fork and gone.head_repo is None


# ----------------------------------------------------------------------------- validation against the schemas
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    docs = [json.loads(p.read_text()) for p in SCHEMAS.rglob("*.schema.json")]
    registry: Registry = Registry().with_resources(
        [(d["$id"], Resource.from_contents(d, default_specification=DRAFT7)) for d in docs])
    return registry, {d["$id"]: d for d in docs}


@pytest.mark.parametrize("schema_id, payload", [
    ("issue_comment$created", pr_comment_payload("/eval cmmlu")),
    ("issue_comment$created", pr_comment_payload("/train tiny", login="tunebot[bot]", user_type="Bot")),
    ("issue_comment$edited", load_payload("issue_comment.edited", issue__pull_request={
        "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1",
        "html_url": "https://github.com/Codertocat/Hello-World/pull/1",
        "diff_url": "https://github.com/Codertocat/Hello-World/pull/1.diff",
        "patch_url": "https://github.com/Codertocat/Hello-World/pull/1.patch", "merged_at": None})),
    ("pull_request$opened", load_payload("pull_request.opened")),
    ("pull_request$synchronize", load_payload("pull_request.synchronize")),
    ("ping$event", load_payload("ping.with-app_id")),
    ("installation$created", load_payload("installation.created")),
])
def test_test_payloads_match_the_shipped_schemas(schema_id: str, payload: dict[str, Any]) -> None:
    registry, by_id = _registry()
    errors = list(jsonschema.Draft7Validator(by_id[schema_id], registry=registry).iter_errors(payload))
    assert errors == [], [e.message for e in errors[:3]]


def test_a_broken_test_payload_fails_the_schema() -> None:
    registry, by_id = _registry()
    payload = pr_comment_payload("/eval cmmlu")
    payload["comment"]["id"] = "not-an-int"
    assert list(jsonschema.Draft7Validator(by_id["issue_comment$created"], registry=registry).iter_errors(payload))


# ----------------------------------------------------------------------------- malformed payloads
@pytest.mark.parametrize("payload, message", [
    ([1, 2], "payload must be a JSON object"),
    ({"action": "created"}, "missing field repository"),
])
def test_malformed_payloads_have_clear_errors(payload: Any, message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        parse_event("issue_comment", payload)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["comment"].pop("id"), "missing field comment.id"),
    (lambda p: p["comment"].__setitem__("id", "7"), "non-integer field comment.id"),
    (lambda p: p["comment"]["user"].pop("login"), "missing field comment.user.login"),
    (lambda p: p["issue"].__setitem__("number", True), "non-integer field issue.number"),
    (lambda p: p["repository"].__setitem__("full_name", "noslash"), "not owner/name"),
    (lambda p: p["installation"].__setitem__("id", None), "missing field installation.id"),
])
def test_malformed_issue_comment_fields_name_the_path(mutate: Any, message: str) -> None:
    payload = pr_comment_payload("/train x")
    mutate(payload)
    with pytest.raises(WebhookError, match=message):
        parse_event("issue_comment", payload)
