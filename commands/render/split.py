"""Splits a long Markdown comment into parts that each fit GitHub's limit and stay well-formed on their own.

A cut never lands inside a code fence or a `<details>` block without closing it at the end of the part and
reopening it (same fence, same summary marked as continued) at the start of the next one. Parts keep the original
order, so whatever the text starts with (the headline) is always in the first part.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

GITHUB_COMMENT_LIMIT = 65536

_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_TAG = re.compile(r"<details(?=[\s>])[^>]*>|</details\s*>", re.IGNORECASE)
_SUMMARY = re.compile(r"<summary(?:\s[^>]*)?>(.*?)</summary\s*>", re.IGNORECASE)
_MAX_SUMMARY = 80
_MAX_INFO = 40


def measure(text: str) -> int:
    """Length as UTF-16 code units: never less than the character count GitHub checks, so always safe."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


@dataclass(frozen=True)
class Block:
    """An open construct at some point of the text: a code fence or a `<details>` element."""

    kind: Literal["fence", "details"]
    opener: str = ""  # a fence's opening line (info string shortened); a details block's plain summary text
    close: tuple[str, ...] = ()
    fence_char: str = ""
    fence_len: int = 0

    def reopen(self, continued: str) -> tuple[str, ...]:
        if self.kind == "fence":
            return (self.opener,)
        if not self.opener:
            return ("<details>", "")
        return (f"<details><summary>{self.opener}{continued}</summary>", "")


def _fence_block(indent: str, fence: str, info: str) -> Block:
    info = info.strip()[:_MAX_INFO]
    return Block("fence", f"{indent}{fence}{info}", (f"{indent}{fence}",), fence[0], len(fence))


def _details_block(summary: str | None) -> Block:
    plain = ""
    if summary is not None:
        # Reopened summaries are plain text: no tag from the original can unbalance the next part.
        plain = re.sub(r"<[^>]*>", "", summary).replace("<", "&lt;").replace(">", "&gt;").strip()
        if len(plain) > _MAX_SUMMARY:
            plain = plain[: _MAX_SUMMARY - 1] + "…"
    return Block("details", plain, ("", "</details>"))


def scan(stack: tuple[Block, ...], line: str, pending_summary: bool = False) -> tuple[tuple[Block, ...], bool]:
    """The open blocks after `line`, given those before it (and whether a `<details>` still awaits its summary).

    Fences follow CommonMark (up to 3 spaces of indent, ``` or ~~~, closed by the same character at least as long
    and nothing else on the line); `<details>` tags count only outside fences.
    """
    if stack and stack[-1].kind == "fence":
        top = stack[-1]
        stripped = line.strip()
        m = _FENCE_OPEN.match(line)
        if (m and stripped and set(stripped) == {top.fence_char} and len(stripped) >= top.fence_len
                and m.group(2)[0] == top.fence_char):
            return stack[:-1], False
        return stack, False
    m = _FENCE_OPEN.match(line)
    if m and not (m.group(2)[0] == "`" and "`" in m.group(3)):
        return (*stack, _fence_block(m.group(1), m.group(2), m.group(3))), False
    blocks = list(stack)
    if pending_summary and blocks and blocks[-1].kind == "details":
        sm = _SUMMARY.match(line.strip())
        if sm:
            blocks[-1] = _details_block(sm.group(1))
    pending = False
    for tag in _TAG.finditer(line):
        if tag.group(0).startswith("</"):
            if blocks and blocks[-1].kind == "details":
                blocks.pop()
            pending = False
        else:
            sm = _SUMMARY.search(line, tag.end())
            nxt = _TAG.search(line, tag.end())
            has_summary = sm is not None and (nxt is None or sm.start() < nxt.start())
            blocks.append(_details_block(sm.group(1) if sm and has_summary else None))
            pending = not has_summary
    return tuple(blocks), pending


def balanced(text: str) -> bool:
    """True when every fence and `<details>` opened in `text` is closed in it (what each part must satisfy)."""
    stack: tuple[Block, ...] = ()
    pending = False
    for line in text.split("\n"):
        stack, pending = scan(stack, line, pending)
    return not stack


def _closers(stack: Sequence[Block]) -> list[str]:
    lines: list[str] = []
    for block in reversed(stack):
        lines.extend(block.close)
    return lines


def _reopeners(stack: Sequence[Block], continued: str) -> list[str]:
    lines: list[str] = []
    for block in stack:
        lines.extend(block.reopen(continued))
    return lines


def _cost(lines: Sequence[str]) -> int:
    """Characters that `lines` add to a part, counting one newline before each."""
    return sum(measure(x) + 1 for x in lines)


_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")

TableHead = tuple[str, str] | None


def _table_after(head: TableHead, previous: str | None, line: str, in_fence: bool) -> TableHead:
    """The header (title row, delimiter row) of the Markdown table `line` belongs to, if any."""
    if in_fence:
        return None
    if previous is not None and "|" in previous and "|" in line and _TABLE_DELIMITER.match(line):
        return (previous, line)
    if head is not None and line.strip() and "|" in line:
        return head
    return None


def _split(text: str, limit: int, continued: str) -> list[str]:
    parts: list[str] = []
    stack: tuple[Block, ...] = ()
    pending = False
    table: TableHead = None
    previous: str | None = None
    body: list[str] = []
    # the state before each body line, to step back: (open blocks, summary pending, table header, previous line)
    before: list[tuple[tuple[Block, ...], bool, TableHead, str | None]] = []
    head: list[str] = []
    used = -1  # the first line of a part has no newline before it

    def finish() -> None:
        nonlocal body, before, head, used
        parts.append("\n".join([*head, *body, *_closers(stack)]))
        # A table cut in two gets its header again, or the rows after the cut would not render as a table.
        head = _reopeners(stack, continued)
        if table and _cost(table) <= limit // 4:
            head += list(table)
        body, before = [], []
        used = _cost(head) - 1
        if used + _cost(_closers(stack)) + 2 > limit:
            raise ValueError(f"limit {limit} is too small for the nesting of code fences and <details> blocks")

    def advance(line: str, after: tuple[Block, ...], after_pending: bool) -> None:
        nonlocal stack, pending, table, previous, used
        body.append(line)
        before.append((stack, pending, table, previous))
        used += measure(line) + 1
        in_fence = bool(stack and stack[-1].kind == "fence") or bool(after and after[-1].kind == "fence")
        table = _table_after(table, previous, line, in_fence)
        previous = line
        stack, pending = after, after_pending

    def step_back(next_line: str) -> list[str]:
        """Take back what must not end a part: a table's title row when its delimiter row comes next, and a block
        opened at the very end (opener, summary, blank lines), which would leave an empty `<details>` or fence.
        Returns the lines to process again."""
        nonlocal body, before, stack, pending, table, previous, used
        start = len(body)
        first_opener: int | None = None
        in_fence = bool(stack and stack[-1].kind == "fence")
        if not in_fence and body and "|" in body[-1] and "|" in next_line and _TABLE_DELIMITER.match(next_line):
            start -= 1
            first_opener = start
        while start > 0:
            state, was_pending, _, _ = before[start - 1]
            after = stack if start == len(body) else before[start][0]
            opens = len(after) > len(state)
            if not (opens or was_pending or not body[start - 1].strip()):
                break
            start -= 1
            if opens:
                first_opener = start
        if first_opener is None or first_opener == 0:
            return []
        moved = body[first_opener:]
        stack, pending, table, previous = before[first_opener]
        body, before = body[:first_opener], before[:first_opener]
        used = _cost(head) - 1 + _cost(body)
        return moved

    queue = text.split("\n")
    queue.reverse()
    while queue:
        line = queue.pop()
        after, after_pending = scan(stack, line, pending)
        need = used + measure(line) + 1 + _cost(_closers(after))
        if need <= limit:
            advance(line, after, after_pending)
            continue
        if body:
            queue.append(line)
            queue.extend(reversed(step_back(line)))
            finish()
            continue
        # A single line longer than a whole part: cut it where the part is full and carry on with the rest.
        room = limit - used - 1 - _cost(_closers(stack))
        cut = _fit(line, room)
        while cut > 1:
            piece_after, _piece_pending = scan(stack, line[:cut], pending)
            if used + measure(line[:cut]) + 1 + _cost(_closers(piece_after)) <= limit:
                break
            cut //= 2
        cut = max(cut, 1)
        piece_after, piece_pending = scan(stack, line[:cut], pending)
        advance(line[:cut], piece_after, piece_pending)
        queue.append(line[cut:])
        finish()
    parts.append("\n".join([*head, *body, *_closers(stack)]))
    return [p for p in parts if p.strip()] or [""]


def _fit(text: str, room: int) -> int:
    """How many characters of `text` fit into `room` UTF-16 units."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > room:
            return i
    return len(text)


def split_comment(
    text: str,
    limit: int = GITHUB_COMMENT_LIMIT,
    *,
    max_parts: int | None = None,
    omitted_note: str = "*({k} more parts omitted)*",
    continued: str = " (…)",
) -> list[str]:
    """Cut `text` into parts of at most `limit` characters (UTF-16 units), each with balanced fences and details.

    Cuts fall between lines where possible; an open fence or `<details>` is closed at the end of a part and
    reopened at the start of the next. With `max_parts`, later parts are dropped and the last kept part ends with
    `omitted_note` (its `{k}` is the number dropped): the beginning, where the headline is, always survives.
    A reopened `<details>` shows its summary followed by `continued`.
    """
    if limit < 64:
        raise ValueError(f"limit must be at least 64 characters, got {limit}")
    if max_parts is not None and max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    text = text.replace("\r\n", "\n")
    if measure(text) <= limit and balanced(text):
        return [text]
    parts = _split(text, limit, continued)
    if max_parts is None or len(parts) <= max_parts:
        return parts
    note_room = measure(omitted_note.format(k=len(parts))) + 2 + 8
    shorter = _split(text, limit - note_room, continued)
    kept = shorter[:max_parts]
    note = omitted_note.format(k=len(shorter) - len(kept))
    kept[-1] = f"{kept[-1]}\n\n{note}"
    return kept
