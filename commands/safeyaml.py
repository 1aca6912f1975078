"""Bounded YAML reading for files that come from a repository (policy, training configs): data plus line numbers.

`yaml.safe_load` alone builds no objects, but it still expands aliases without limit ("billion laughs") and forgets
where things were. Here the document is composed into nodes (aliases stay shared, so composing is cheap), then
walked with a budget on nodes and depth, recording the line of every key so that errors can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import yaml

MAX_CHARS = 64 * 1024  # a policy or training config is a page of YAML; anything bigger is a mistake
MAX_NODES = 5_000  # counts aliased nodes each time they are used: this is what stops alias bombs
MAX_DEPTH = 20

Path: TypeAlias = tuple[str | int, ...]
_MERGE = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """The text is not YAML we accept; `line` is 1-based (None when no line applies)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Document:
    """Plain data (dicts, lists, scalars) and the line where each path starts."""

    data: Any
    lines: dict[Path, int]

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def load(text: str) -> Document:
    """Parse one YAML document safely; YamlError says where and why it is not acceptable."""
    if len(text) > MAX_CHARS:
        raise YamlError(None, f"the file is {len(text):,} characters; the limit is {MAX_CHARS:,}")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlError(line, f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML parse error is marked; kept for safety
        raise YamlError(None, f"not valid YAML: {exc}") from None
    if node is None:
        return Document(None, {})
    walker = _Walker()
    data = walker.walk(node, (), 0)
    return Document(data, walker.lines)


class _Walker:
    def __init__(self) -> None:
        self.nodes = 0
        self.lines: dict[Path, int] = {}
        self._constructor = yaml.SafeLoader("")

    def walk(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        line = node.start_mark.line + 1
        if self.nodes > MAX_NODES:
            raise YamlError(line, f"the document expands to more than {MAX_NODES:,} values (alias bomb?)")
        if depth > MAX_DEPTH:
            raise YamlError(line, f"nesting deeper than {MAX_DEPTH} levels (a recursive alias?)")
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise YamlError(line, f"cannot read this value: {getattr(exc, 'problem', None) or exc}") from None
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        raise YamlError(line, "unsupported YAML node")  # pragma: no cover - compose yields only the three kinds

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE:
                merged.update(self._merge_sources(value_node, path, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(key_line, "keys must be plain words, not lists or mappings")
            key = str(key_node.value)
            if key in first_line:
                raise YamlError(key_line, f"duplicate key `{key}` (first at line {first_line[key]})")
            first_line[key] = key_line
            self.lines[(*path, key)] = key_line
            out[key] = self.walk(value_node, (*path, key), depth + 1)
        for key, value in merged.items():
            out.setdefault(key, value)
        return out

    def _merge_sources(self, value_node: yaml.Node, path: Path, depth: int) -> dict[str, Any]:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        result: dict[str, Any] = {}
        for src in sources:
            data = self.walk(src, path, depth + 1)
            if not isinstance(data, dict):
                raise YamlError(src.start_mark.line + 1, "`<<` merges mappings only")
            for key, value in data.items():
                result.setdefault(key, value)
        return result
