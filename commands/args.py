"""Typed, allowlisted arguments: each key a verb accepts, its type and range, and how its text becomes a value.

Nothing a user types reaches a command line unchecked: every value is parsed into an int, a finite float, a bool,
one of a fixed set of words, or a name that a verb then looks up in the catalog or the repository's policy.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .values import ArgValue, quote_user

ArgKind = Literal["int", "float", "bool", "choice", "name", "names", "run", "ref", "revision"]

_INT = re.compile(r"^[+-]?\d{1,15}$")
_FLOAT = re.compile(r"^[+-]?(?:\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})(?:[eE][+-]?\d{1,3})?$")
# Names of presets, packs, datasets and subsets: what the catalog uses, and nothing a shell would interpret.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}$")
# Run ids: exactly what commands.jobspec.validate_job allows.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Git refs and SHAs as /compare accepts them (a subset of git-check-ref-format: no `..`, no leading `-`).
REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")
# A model's hub revision: a full commit SHA, a tag or a branch name. Never a ref outside the branches and tags:
# `refs/pr/7` is a hub pull request that anyone can open, so its weights (and code) were never reviewed.
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = ("true", "yes", "on", "1")


def revision_problem(text: str) -> str | None:
    """Why `text` is not an acceptable model revision (None when it is a commit SHA, tag or branch name)."""
    if _COMMIT.match(text):
        return None
    if text.lower().startswith("refs/"):
        hint = " (a pull request on the hub: anyone can open one, and its files were never reviewed)" \
            if text.lower().startswith("refs/pr/") else ""
        return (f"`revision` takes a commit SHA, a tag or a branch name of the model's hub repository, not the ref "
                f"{quote_user(text)}{hint}")
    if not REF.match(text) or ".." in text or "//" in text or text.endswith((".lock", "/", ".")):
        return f"{quote_user(text)} is not a commit SHA, tag or branch name"
    return None

_FALSE = ("false", "no", "off", "0")


class ArgError(ValueError):
    """A value or key the user must fix; the message is written for them."""


@dataclass(frozen=True)
class ArgSpec:
    """One key a verb accepts (or a positional slot, when `positional`)."""

    name: str
    kind: ArgKind
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    example: str = ""
    only: tuple[int, ...] = ()  # for ints that take a few values only (quant_bits: 4 or 8)

    def describe(self) -> str:
        """`lora_rank (1–256)`, `tuner (lora|qlora|full)`: how the key appears in error messages and help."""
        return f"{self.name} ({self.constraint()})" if self.constraint() else self.name

    def constraint(self) -> str:
        if self.only:
            return "|".join(str(v) for v in self.only)
        if self.kind in ("int", "float") and self.low is not None and self.high is not None:
            return f"{_num(self.low, self.kind)}–{_num(self.high, self.kind)}"
        if self.kind == "choice":
            return "|".join(self.choices)
        if self.kind == "bool":
            return "true|false"
        return ""

    def parse(self, text: str) -> ArgValue:
        """The typed value of `text`, or ArgError saying what is wrong and what is allowed."""
        if text == "":
            raise ArgError(f"`{self.name}` needs a value, e.g. `{self.name}={self.example or '…'}`")
        if self.kind == "int":
            return self._int(text)
        if self.kind == "float":
            return self._float(text)
        if self.kind == "bool":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ArgError(f"`{self.name}` is true or false, not {quote_user(text)}")
        if self.kind == "choice":
            low = text.lower()
            if low in self.choices:
                return low
            raise ArgError(f"`{self.name}` must be one of {', '.join(self.choices)}, not {quote_user(text)}"
                           + did_you_mean(low, self.choices))
        if self.kind == "run":
            if RUN_ID.match(text):
                return text
            raise ArgError(f"{quote_user(text)} is not a run id "
                           "(a letter or digit, then letters, digits, `-`, `_`, `.`)")
        if self.kind == "ref":
            if text.lower().startswith("run:") and RUN_ID.match(text[4:]):
                return text
            if REF.match(text) and ".." not in text and not text.endswith((".lock", "/", ".")):
                return text
            raise ArgError(f"{quote_user(text)} is not a branch, tag, commit or run id")
        if self.kind == "revision":
            problem = revision_problem(text)
            if problem is not None:
                raise ArgError(problem)
            return text
        if self.kind == "names":
            return split_names(text, self.name)
        if not NAME.match(text):
            raise ArgError(f"{quote_user(text)} is not a valid value for `{self.name}`")
        return text

    def _int(self, text: str) -> int:
        if not _INT.match(text):
            raise ArgError(f"`{self.name}` must be a whole number{self._range()}, not {quote_user(text)}")
        value = int(text)
        self._check_range(value)
        return value

    def _float(self, text: str) -> float:
        if not _FLOAT.match(text):
            raise ArgError(f"`{self.name}` must be a number{self._range()}, not {quote_user(text)}")
        value = float(text)
        if not math.isfinite(value):  # pragma: no cover - the regex admits no inf/nan, this is belt and braces
            raise ArgError(f"`{self.name}` must be a finite number")
        self._check_range(value)
        return value

    def _range(self) -> str:
        return f" ({self.constraint()})" if self.constraint() else ""

    def _check_range(self, value: float) -> None:
        if self.only:
            if value not in self.only:
                raise ArgError(f"`{self.name}` must be one of {', '.join(map(str, self.only))}, got {value}")
            return
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ArgError(
                f"`{self.name}` must be between {_num(self.low, self.kind)} and {_num(self.high, self.kind)}, "
                f"got {quote_user(str(value))}"
            )


def _num(value: float | None, kind: str) -> str:
    if value is None:
        return "?"
    if kind == "int":
        return f"{int(value):,}".replace(",", "_") if abs(value) >= 100_000 else str(int(value))
    return f"{value:g}"


def split_names(text: str, key: str) -> tuple[str, ...]:
    """`cmmlu,ceval` → ("cmmlu", "ceval"); each part must be a plain name; duplicates are dropped."""
    parts = [p.strip() for p in text.split(",")]
    out: list[str] = []
    for part in parts:
        if not part:
            continue
        if not NAME.match(part):
            raise ArgError(f"{quote_user(part)} is not a valid value for `{key}`")
        if part not in out:
            out.append(part)
    if not out:
        raise ArgError(f"`{key}` needs at least one name")
    return tuple(out)


def did_you_mean(word: str, candidates: Sequence[str], prefix: str = "; did you mean ", cutoff: float = 0.6) -> str:
    match = difflib.get_close_matches(word.lower(), [c.lower() for c in candidates], n=1, cutoff=cutoff)
    if not match:
        return ""
    original = next(c for c in candidates if c.lower() == match[0])
    return f"{prefix}`{original}`?"


def normalise_key(key: str) -> tuple[str, bool]:
    """Lower-case, `-` → `_`, leading dashes dropped. Returns (key, had leading dashes: an autocorrect artefact)."""
    dashed = key.startswith("-")
    return key.lstrip("-").lower().replace("-", "_"), dashed


# --- the hyper-parameters /train accepts (and declarative configs) ----------------------------------------------------

HYPER_ARGS: tuple[ArgSpec, ...] = (
    ArgSpec("lora_rank", "int", "LoRA rank r", 1, 256, aliases=("rank", "r"), example="16"),
    ArgSpec("lora_alpha", "int", "LoRA alpha (scaling = alpha / rank)", 1, 1024, aliases=("alpha",), example="32"),
    ArgSpec("lora_dropout", "float", "dropout on the LoRA layers", 0.0, 0.5, example="0.05"),
    ArgSpec("learning_rate", "float", "peak learning rate", 1e-7, 1e-1, aliases=("lr",), example="1e-4"),
    ArgSpec("num_train_epochs", "float", "passes over the data", 0.01, 100, aliases=("epochs",), example="3"),
    ArgSpec("max_steps", "int", "stop after this many optimizer steps (overrides epochs)", 1, 1_000_000,
            aliases=("steps",), example="200"),
    ArgSpec("per_device_train_batch_size", "int", "batch size per GPU", 1, 512,
            aliases=("batch_size", "bs"), example="4"),
    ArgSpec("gradient_accumulation_steps", "int", "micro-batches per optimizer step", 1, 1024,
            aliases=("grad_accum",), example="8"),
    ArgSpec("max_length", "int", "longest training sequence in tokens", 32, 131_072, example="2048"),
    ArgSpec("warmup_ratio", "float", "fraction of steps spent warming up", 0.0, 0.5, example="0.03"),
    ArgSpec("logging_steps", "int", "report loss every N steps", 1, 10_000, example="5"),
    ArgSpec("save_steps", "int", "checkpoint every N steps", 1, 1_000_000, example="500"),
    ArgSpec("seed", "int", "random seed", 0, 2**31 - 1, example="42"),
    ArgSpec("torch_dtype", "choice", "weights dtype", choices=("bfloat16", "float16", "float32"), example="bfloat16"),
    ArgSpec("quant_bits", "int", "QLoRA quantisation bits (qlora only)", 4, 8, example="4", only=(4, 8)),
)
HYPER_KEYS: frozenset[str] = frozenset(a.name for a in HYPER_ARGS)
