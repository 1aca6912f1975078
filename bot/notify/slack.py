"""Slack client: post and update run messages through slack_sdk's AsyncWebClient, with bounded 429 handling, and
answer a person in a thread or through a slash command's response_url.

Slack answers errors as HTTP 200 `{ok: false, error}` and rate limits as HTTP 429 + `Retry-After`; both become
`SlackError` (with the Slack error code) once the bounded retries are spent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
DEFAULT_BASE_URL = "https://slack.com/api/"
# chat.postMessage truncates past 40,000 characters and answers msg_too_long; stay below it ourselves.
MAX_TEXT = 39_000
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")


class SlackError(Exception):
    """A Slack API call failed: `code` is Slack's error string (channel_not_found, invalid_auth, ratelimited...)."""

    def __init__(self, method: str, code: str, *, status: int = 200, retry_after: float | None = None) -> None:
        super().__init__(f"Slack {method} failed: {code}" + (f" (HTTP {status})" if status != 200 else ""))
        self.method = method
        self.code = code
        self.status = status
        self.retry_after = retry_after


def _retry_after(response: HttpResponse) -> float | None:
    for key, values in response.headers.items():
        if key.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0]))
            except ValueError:
                return None
    return None


class BoundedRateLimitHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (which honours Retry-After) with a cap on the wait and an injectable sleep.

    The stock handler sleeps `int(Retry-After) + random()` however long that is; a notifier must not stall a
    run's progress stream for minutes, so past `max_wait` it gives up and the caller sees `ratelimited`.
    """

    def __init__(self, max_retry_count: int = 2, *, max_wait: float = 30.0, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait
        self._sleep = sleep
        self.waits: list[float] = []

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response)
        return wait is None or wait <= self.max_wait

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        if response is None:
            raise error or RuntimeError("retry without a response")
        state.next_attempt_requested = True
        wait = _retry_after(response)
        duration = (1.0 if wait is None else wait) + random.random() * 0.25  # jitter, as slack_sdk does
        self.waits.append(duration)
        await self._sleep(duration)
        state.increment_current_attempt()


class SlackNotifier:
    """Posts and updates messages. One instance per workspace token; pass the app's shared aiohttp session."""

    def __init__(self, token: str, *, session: aiohttp.ClientSession | None = None,
                 base_url: str = DEFAULT_BASE_URL, timeout: int = 15, max_rate_limit_retries: int = 2,
                 max_rate_limit_wait: float = 30.0, sleep: Sleep = asyncio.sleep) -> None:
        if not token:
            raise ValueError("Slack token is empty (expected xoxb-...)")
        self.rate_limit_handler = BoundedRateLimitHandler(max_rate_limit_retries, max_wait=max_rate_limit_wait,
                                                          sleep=sleep)
        handlers: list[AsyncRetryHandler] = [self.rate_limit_handler]
        self.client = AsyncWebClient(token=token, base_url=base_url, session=session, timeout=timeout,
                                     retry_handlers=handlers)
        # chat.update needs the channel ID; remember the one Slack answered for each ts we posted.
        self._channel_of: dict[str, str] = {}

    async def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None) -> str:
        """chat.postMessage; returns the message `ts` (a string: it is the message id for update)."""
        data = await self._call("chat.postMessage", self.client.chat_postMessage, channel=channel,
                                text=_clip(text), blocks=blocks, thread_ts=thread_ts)
        ts = str(data["ts"])
        self._channel_of[ts] = str(data.get("channel") or channel)
        return ts

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """chat.update of a message we posted (a `#name` channel is mapped to the ID Slack gave us)."""
        channel_id = channel if _CHANNEL_ID.fullmatch(channel) else self._channel_of.get(ts, channel)
        await self._call("chat.update", self.client.chat_update, channel=channel_id, ts=ts, text=_clip(text),
                         blocks=blocks)

    async def post_ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        """chat.postEphemeral: a message only `user` sees (in the thread `thread_ts`, when given)."""
        await self._call("chat.postEphemeral", self.client.chat_postEphemeral, channel=channel, user=user,
                         text=_clip(text), thread_ts=thread_ts)

    def channel_id(self, ts: str) -> str | None:
        return self._channel_of.get(ts)

    async def _call(self, method: str, fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> dict[str, Any]:
        try:
            response = await fn(**{k: v for k, v in kwargs.items() if v is not None})
        except SlackApiError as exc:
            resp = exc.response
            status = int(getattr(resp, "status_code", 0) or 0)
            data = resp.data if isinstance(resp.data, dict) else {}
            code = str(data.get("error") or ("ratelimited" if status == 429 else f"http_{status}"))
            retry_after = None
            headers = getattr(resp, "headers", None) or {}
            for key, value in headers.items():
                if key.lower() == "retry-after":
                    try:
                        retry_after = float(value if isinstance(value, str) else value[0])
                    except (TypeError, ValueError, IndexError):
                        retry_after = None
            raise SlackError(method, code, status=status, retry_after=retry_after) from exc
        except (TimeoutError, SlackRequestError, aiohttp.ClientError) as exc:
            raise SlackError(method, f"request_failed: {exc}", status=0) from exc
        data = response.data
        if not isinstance(data, dict) or not data.get("ok"):
            raise SlackError(method, str((data or {}).get("error") if isinstance(data, dict) else "invalid_response"))
        if data.get("warning"):
            log.info("Slack %s warning: %s", method, data["warning"])
        return data


def _clip(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 30] + "\n… (truncated)"


# --- answers to the person who asked ----------------------------------------------------------------------------------

class Answer(Protocol):
    async def say(self, text: str) -> None:
        """Visible to the channel (in the thread)."""

    async def whisper(self, text: str) -> None:
        """Visible only to the person who asked."""


@dataclass(frozen=True)
class ThreadAnswer:
    """Replies in a channel thread; whispers are ephemeral messages in that thread."""

    slack: SlackNotifier
    channel: str
    thread_ts: str
    user: str

    async def say(self, text: str) -> None:
        await self.slack.post(self.channel, text, thread_ts=self.thread_ts)

    async def whisper(self, text: str) -> None:
        await self.slack.post_ephemeral(self.channel, self.user, text, thread_ts=self.thread_ts)


class ResponseUrlAnswer:
    """Answers through a slash command's response_url (ephemeral): where tunebot cannot post into the channel."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None) -> None:
        self.client = AsyncWebhookClient(url, session=session, timeout=15)

    async def say(self, text: str) -> None:
        resp = await self.client.send(text=text, response_type="ephemeral")
        if resp.status_code != 200:
            raise SlackError("response_url", resp.body or f"http_{resp.status_code}", status=resp.status_code)

    whisper = say  # only the person who asked ever sees a response_url answer
