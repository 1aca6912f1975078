"""Declarative training configs (`configs/**.yaml` in a repository): a file that means exactly one `/train` line.

The file is translated into the words of a `/train` command and validated by the same code, so a config and its
equivalent comment plan identical jobs with identical result keys. Errors point at the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from .args import HYPER_KEYS, ArgError, did_you_mean
from .catalog import Catalog
from .decision import Command
from .grammar import Word
from .plan import ConfigError, PlanError, PlannedJob, PRFacts, plan
from .policy import Policy
from .safeyaml import Document, YamlError, load
from .verbs.base import Context, RawCommand
from .verbs.train import SPEC as TRAIN

MARKER = "tunebot"
MARKER_VALUE = "train"
_MARKED = re.compile(r"^tunebot\s*:", re.MULTILINE)
# file key -> /train argument name
_TOP: dict[str, str] = {
    "model": "model",
    "tuner": "tuner",
    "preset": "preset",
    "datasets": "dataset",
    "dataset": "dataset",
    "benchmarks": "eval",
    "max_samples": "max_samples",
    "hub": "hub",
    "revision": "revision",
}
_ALLOWED = (MARKER, *_TOP, "hyper", "description")


def _text(value: Any, path: str, line: int | None, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise ConfigError(path, line, f"`{key}` must be a word, a number or a list of names, not {type(value).__name__}")


def config_to_command(text: str, path: str, *, catalog: Catalog, policy: Policy) -> Command | None:
    """The `/train` command a config file means; None when the file is not a tunebot training config."""
    try:
        doc = load(text)
    except YamlError as exc:
        # Broken YAML is reported only when it was meant for tunebot; other tools' files are not ours to judge.
        if _MARKED.search(text):
            raise ConfigError(path, exc.line, exc.message) from None
        return None
    data = doc.data
    if not isinstance(data, dict) or MARKER not in data:
        return None
    if data[MARKER] != MARKER_VALUE:
        raise ConfigError(path, doc.line((MARKER,)), f"`{MARKER}:` must be `{MARKER_VALUE}`")
    words: list[Word] = []
    for key, value in data.items():
        line = doc.line((key,))
        if key not in _ALLOWED:
            raise ConfigError(path, line, f"unknown setting `{key}`{did_you_mean(key, list(_ALLOWED))}; allowed: "
                                          f"{', '.join(_ALLOWED)}")
        if key in (MARKER, "description"):
            continue
        if key == "hyper":
            words.extend(_hyper_words(value, doc, path))
            continue
        name = _TOP[key]
        if any(w.key == name for w in words):
            raise ConfigError(path, line, f"`{key}` is given twice (`dataset` and `datasets` mean the same)")
        words.append(_word(name, _text(value, path, line, key), path, line))
    if not any(w.key == "model" for w in words):
        raise ConfigError(path, 1, "a training config needs `model: <preset>`")
    ctx = Context(catalog=catalog, policy=policy)
    try:
        args = TRAIN.validate(RawCommand("train", tuple(words), path, 0), ctx)
    except ArgError as exc:
        raise ConfigError(path, _line_for(str(exc), doc), str(exc)) from None
    return Command(verb="train", args=args, line=path, lineno=0)


def _hyper_words(value: Any, doc: Document, path: str) -> list[Word]:
    if not isinstance(value, dict):
        raise ConfigError(path, doc.line(("hyper",)), "`hyper` is a mapping of hyper-parameters, e.g. lora_rank: 16")
    words: list[Word] = []
    for key, item in value.items():
        line = doc.line(("hyper", key))
        spec = TRAIN.key(str(key).lower())
        if spec is None or spec.name not in HYPER_KEYS:
            names = sorted(HYPER_KEYS)
            raise ConfigError(path, line, f"unknown hyper-parameter `{key}`{did_you_mean(str(key), names)}; "
                                          f"allowed: {', '.join(names)}")
        words.append(_word(spec.name, _text(item, path, line, str(key)), path, line))
    return words


def _word(name: str, text: str, path: str, line: int | None) -> Word:
    spec = TRAIN.key(name)
    assert spec is not None
    if spec.kind not in ("name", "names"):  # names are resolved (catalog, policy) by the verb; types checked here
        try:
            spec.parse(text)
        except ArgError as exc:
            raise ConfigError(path, line, str(exc)) from None
    return Word(f"{name}={text}", name, text)


def _line_for(message: str, doc: Document) -> int | None:
    """The line of the most specific setting a message names (messages quote keys and values in backticks)."""
    quoted = set(message.split("`")[1::2])
    best: tuple[int, int] | None = None  # (path depth, line)
    for path, line in doc.lines.items():
        if not path:
            continue
        leaf = str(path[-1])
        value = _value_at(doc.data, path)
        named = leaf in quoted or _TOP.get(leaf) in quoted or (isinstance(value, str) and value in quoted)
        if named and (best is None or len(path) > best[0]):
            best = (len(path), line)
    return best[1] if best else None


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
            continue
        if isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def plan_config_file(
    text: str,
    path: str,
    pr: PRFacts,
    policy: Policy,
    catalog: Catalog,
    run_ids: Iterator[str] | Iterable[str],
) -> list[PlannedJob]:
    """The jobs a declarative training config plans: exactly those of its equivalent `/train` line.

    [] when the file is not a tunebot training config (no `tunebot: train` marker); ConfigError when it is but is
    wrong (with the line).
    """
    command = config_to_command(text, path, catalog=catalog, policy=policy)
    if command is None:
        return []
    try:
        return plan(command, pr, policy, catalog, run_ids)
    except PlanError as exc:
        raise ConfigError(path, None, str(exc)) from None
