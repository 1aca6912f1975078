"""The surface grammar: which lines of a comment are commands, and how a command line splits into words.

Markdown decides what a person meant as a command: quoted lines (`> /train`), fenced and indented code blocks,
inline code and HTML comments are text *about* commands, never commands. Autocorrect artefacts (smart quotes,
em dashes, full-width characters, zero-width spaces) are normalised here, once, so that every verb sees plain ASCII
punctuation; invisible direction controls are refused instead, because what the reader sees would differ from what
runs ("Trojan source").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .values import quote_user

MAX_LINE_CHARS = 2000  # a command line longer than this is a mistake or an attack; nobody types it

# Invisible characters that autocorrect, copy-paste from chat apps, or editors slip into text: dropped.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064"), None)
# Direction controls reorder what is displayed: refused, never silently dropped.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Punctuation that autocorrect or a CJK input method substitutes, mapped back to what the user typed.
_PUNCT = str.maketrans(
    {
        "\u2014": "--",  # em dash (macOS/iOS turn `--` into `—`)
        "\u2013": "--",  # en dash
        "\u2012": "-",
        "\u2010": "-",
        "\u2011": "-",
        "\u2212": "-",  # minus sign
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u3001": ",",  # ideographic comma
        "\u3002": ".",  # ideographic full stop
        "\t": " ",
    }
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_QUOTE = re.compile(r"^ {0,3}>")
_SLASH = re.compile(r"^/([A-Za-z][A-Za-z0-9_-]*)(?=$|\s)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class CommandLine:
    """A line that addresses the bot: the verb as typed (lower-cased), the rest of the line, and where it was."""

    verb: str
    rest: str
    line: str
    lineno: int
    mentioned: bool  # `@tunebot verb` rather than `/verb`: the user clearly meant the bot


@dataclass(frozen=True)
class Scan:
    commands: tuple[CommandLine, ...]
    skipped: tuple[str, ...]  # why command-looking lines were not taken (for the log)
    problems: tuple[tuple[int, str, str], ...]  # (lineno, line, message): command lines that cannot be read at all


def normalise(text: str) -> str:
    """Plain-ASCII punctuation for a command line: NFKC folds full-width forms (`＝`, `／`, `ｔｒａｉｎ`, U+3000)."""
    text = text.translate(_INVISIBLE)
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_PUNCT)
    return _CONTROL.sub(" ", text)


def _mention_re(bot_login: str) -> re.Pattern[str]:
    login = re.escape(bot_login.removesuffix("[bot]"))
    return re.compile(rf"^@{login}(?:\[bot\])?[,:]?(?:\s+|$)(.*)$", re.IGNORECASE | re.DOTALL)


def scan(text: str, bot_login: str = "tunebot") -> Scan:
    """Find the command lines of a comment; never raises."""
    mention = _mention_re(bot_login)
    commands: list[CommandLine] = []
    skipped: list[str] = []
    problems: list[tuple[int, str, str]] = []
    fence: str | None = None
    in_html_comment = False
    prev_blank = True
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for lineno, raw in enumerate(lines, start=1):
        if fence is not None:
            stripped = raw.strip()
            if stripped.startswith(fence) and set(stripped) <= set(fence[0]):
                fence = None
            elif _looks_like_command(raw, mention):
                skipped.append(f"line {lineno}: inside a code block")
            continue
        if in_html_comment:
            if "-->" in raw:
                in_html_comment = False
            elif _looks_like_command(raw, mention):
                skipped.append(f"line {lineno}: inside an HTML comment")
            continue
        m = _FENCE.match(raw)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            prev_blank = False
            continue
        if raw.lstrip().startswith("<!--"):
            if "-->" not in raw:
                in_html_comment = True
            elif _looks_like_command(raw.lstrip()[4:], mention):
                skipped.append(f"line {lineno}: inside an HTML comment")
            prev_blank = False
            continue
        if _QUOTE.match(raw):
            if _looks_like_command(raw.lstrip(" >"), mention):
                skipped.append(f"line {lineno}: quoted (`>`)")
            prev_blank = False
            continue
        expanded = raw.expandtabs(4)
        if prev_blank and expanded.startswith("    ") and expanded.strip():
            # An indented code block (it needs a blank line before it; otherwise it continues a paragraph).
            if _looks_like_command(raw, mention):
                skipped.append(f"line {lineno}: inside an indented code block")
            continue
        prev_blank = not raw.strip()
        found = _command_line(raw, lineno, mention)
        if found is None:
            continue
        if isinstance(found, str):
            problems.append((lineno, raw.strip(), found))
            continue
        commands.append(found)
    return Scan(tuple(commands), tuple(skipped), tuple(problems))


def _looks_like_command(raw: str, mention: re.Pattern[str]) -> bool:
    head = normalise(raw[:200]).strip()
    return bool(_SLASH.match(head) or mention.match(head))


def _command_line(raw: str, lineno: int, mention: re.Pattern[str]) -> CommandLine | str | None:
    """A CommandLine, a problem message (a command that cannot be read), or None (not a command)."""
    head = normalise(raw[:200]).strip()
    if not (_SLASH.match(head) or mention.match(head)):
        return None
    if len(raw) > MAX_LINE_CHARS:
        return f"this command line is {len(raw):,} characters long; the limit is {MAX_LINE_CHARS:,}"
    bidi = sorted({f"U+{ord(c):04X}" for c in raw if c in BIDI_CONTROLS})
    if bidi:
        return (
            f"this line contains invisible text-direction characters ({', '.join(bidi)}) that make what you see "
            "differ from what would run; please retype the command"
        )
    text = normalise(raw).strip()
    mentioned = False
    m = mention.match(text)
    if m:
        mentioned = True
        text = m.group(1).strip()
        if not text:
            return CommandLine("help", "", raw.strip(), lineno, True)
        if not text.startswith("/"):
            text = "/" + text
    s = _SLASH.match(text)
    if s is None:
        return f"{_q(text)} is not a command; commands look like `/train <model> key=value`"
    return CommandLine(s.group(1).lower(), s.group(2).strip(), raw.strip(), lineno, mentioned)


_q = quote_user


# --- words -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One argument as typed: a positional, or `key=value` (key as typed, before any normalising)."""

    text: str  # the token as it appeared (quotes removed)
    key: str | None
    value: str


class TokenError(ValueError):
    pass


_QUOTES = ('"', "'")


def _raw_tokens(rest: str) -> list[tuple[str, int | None]]:
    """Split at unquoted whitespace; quotes group and are removed. Returns (text, index of first unquoted '=')."""
    tokens: list[tuple[str, int | None]] = []
    buf: list[str] = []
    eq: int | None = None
    quote: str | None = None
    started = False
    for ch in rest:
        if quote is not None:
            if ch == quote:
                quote = None
            else:
                buf.append(ch)
            continue
        if ch in _QUOTES:
            quote = ch
            started = True
            continue
        if ch.isspace():
            if started:
                tokens.append(("".join(buf), eq))
                buf, eq, started = [], None, False
            continue
        if ch == "=" and eq is None:
            eq = len(buf)
        buf.append(ch)
        started = True
    if quote is not None:
        raise TokenError(f"a {quote} quote is never closed")
    if started:
        tokens.append(("".join(buf), eq))
    return tokens


def split_words(rest: str) -> list[Word]:
    """The words of a command line. `key = value` and `key= value` are read as `key=value`."""
    raw = _raw_tokens(rest)
    merged: list[tuple[str, int | None]] = []
    i = 0
    while i < len(raw):
        text, eq = raw[i]
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        if eq is None and nxt is not None and nxt[1] == 0:
            # `key =value` or `key = value`
            value = nxt[0][1:]
            step = 2
            if value == "" and i + 2 < len(raw) and raw[i + 2][1] is None:
                value = raw[i + 2][0]
                step = 3
            merged.append((f"{text}={value}", len(text)))
            i += step
            continue
        if eq is not None and eq == len(text) - 1 and nxt is not None and nxt[1] is None:
            merged.append((text + nxt[0], eq))  # `key= value`
            i += 2
            continue
        merged.append((text, eq))
        i += 1
    words: list[Word] = []
    for text, eq in merged:
        if eq is None:
            words.append(Word(text, None, text))
        else:
            words.append(Word(text, text[:eq], text[eq + 1 :]))
    return words
