"""Signs and delivers webhook payloads exactly like GitHub does, and loads the octokit example payloads."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.paths import WEBHOOKS

HOOK_ID = "380052596"
APP_TARGET_ID = "29310"  # the app id of the octokit App examples (ping.with-app_id, installation.created)


def load_payload(name: str, **overrides: Any) -> dict[str, Any]:
    """An octokit example payload (`issue_comment.created` -> issue_comment.created.json) with top-level overrides.

    Keys with a double underscore address nested fields: `comment__body="/train x"` sets payload["comment"]["body"].
    A value of None for a nested override removes nothing; use `del` on the result to drop fields.
    """
    path = WEBHOOKS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no octokit payload {name!r} in {WEBHOOKS}")
    payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for key, value in overrides.items():
        parts = key.split("__")
        target: dict[str, Any] = payload
        for part in parts[:-1]:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                target[part] = nxt
            target = nxt
        target[parts[-1]] = copy.deepcopy(value)
    return payload


def pull_request_payload(action: str, *, repo: str, number: int, head_sha: str,
                         login: str = "Codertocat") -> dict[str, Any]:
    """A `pull_request` delivery (octokit's example for `action`) about PR `number` of `repo` at `head_sha`."""
    payload = load_payload(f"pull_request.{action}", number=number)
    payload["repository"]["full_name"] = repo
    payload["pull_request"].update(number=number)
    payload["pull_request"]["head"]["sha"] = head_sha
    payload["pull_request"]["user"]["login"] = login
    payload["sender"]["login"] = login
    return payload


def pr_comment_payload(body: str, *, number: int = 1, login: str = "Codertocat", user_type: str = "User",
                       association: str = "OWNER", installation_id: int | None = 1,
                       comment_id: int = 492700400, action: str = "created") -> dict[str, Any]:
    """An `issue_comment` delivery on a pull request (octokit's examples are all on plain issues)."""
    name = "issue_comment.created.with-installation" if action == "created" else f"issue_comment.{action}"
    payload = load_payload(name)
    repo = payload["repository"]["full_name"]
    issue = payload["issue"]
    issue["number"] = number
    issue["pull_request"] = {
        "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
        "html_url": f"https://github.com/{repo}/pull/{number}",
        "diff_url": f"https://github.com/{repo}/pull/{number}.diff",
        "patch_url": f"https://github.com/{repo}/pull/{number}.patch",
        "merged_at": None,
    }
    comment = payload["comment"]
    comment["id"] = comment_id
    comment["body"] = body
    comment["user"]["login"] = login
    comment["user"]["type"] = user_type
    comment["author_association"] = association
    comment["html_url"] = f"https://github.com/{repo}/pull/{number}#issuecomment-{comment_id}"
    if installation_id is None:
        payload.pop("installation", None)
    else:
        payload["installation"] = {"id": installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    return payload


def sign(secret: bytes | str, body: bytes) -> tuple[str, str]:
    """(X-Hub-Signature-256, X-Hub-Signature) for a raw body, as GitHub computes them."""
    key = secret.encode() if isinstance(secret, str) else secret
    sha256 = hmac.new(key, body, hashlib.sha256).hexdigest()
    sha1 = hmac.new(key, body, hashlib.sha1).hexdigest()
    return f"sha256={sha256}", f"sha1={sha1}"


def delivery_headers(event: str, body: bytes, secret: bytes | str | None, delivery_id: str | None = None,
                     *, target_type: str = "integration", target_id: str = APP_TARGET_ID) -> dict[str, str]:
    """The headers a real GitHub App delivery carries (webhooks/README.md), signed over the exact body bytes."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/ede37db",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": HOOK_ID,
        "X-GitHub-Hook-Installation-Target-Type": target_type,
        "X-GitHub-Hook-Installation-Target-ID": target_id,
    }
    if secret is not None:
        sig256, sig1 = sign(secret, body)
        headers["X-Hub-Signature-256"] = sig256
        headers["X-Hub-Signature"] = sig1
    return headers


@dataclass(frozen=True)
class DeliveryResult:
    """What the receiver answered."""

    status: int
    text: str
    delivery_id: str


async def deliver(url: str, event: str, payload: dict[str, Any] | bytes, secret: bytes | str | None,
                  delivery_id: str | None = None, *, session: aiohttp.ClientSession | None = None,
                  timeout_s: float = 10.0) -> DeliveryResult:
    """POST one webhook delivery like GitHub: compact JSON body, signed, 10 s timeout (github.com's limit)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    headers = delivery_headers(event, body, secret, delivery_id)
    own = session is None
    sess = session or aiohttp.ClientSession()
    try:
        async with sess.post(url, data=body, headers=headers,
                             timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            return DeliveryResult(resp.status, await resp.text(), headers["X-GitHub-Delivery"])
    finally:
        if own:
            await sess.close()
