"""The verb registry: each command module registers one VerbSpec (usage, help, keys, who may use it, validator).

Help, the command reference and parsing are all generated from these specs, so they cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..args import ArgError, ArgSpec, did_you_mean, normalise_key, split_names
from ..catalog import Catalog, DatasetEntry, ModelPreset
from ..grammar import Word
from ..policy import Policy
from ..values import ArgValue, quote_user, render_value

# Which policy permission a verb needs: the bot's authorizer maps this to a level (see commands.authz).
Gate = Literal["train", "eval", "approve", "read"]


@dataclass(frozen=True)
class RawCommand:
    """A command line split into words, before its verb checks them."""

    verb: str
    words: tuple[Word, ...]
    line: str
    lineno: int


@dataclass
class Context:
    """What validation may consult, and where it leaves notes for the user (how odd input was read)."""

    catalog: Catalog
    policy: Policy
    notes: list[str] = field(default_factory=list)


Validator = Callable[[RawCommand, Context], dict[str, ArgValue]]


@dataclass(frozen=True)
class VerbSpec:
    name: str
    usage: str
    summary: str
    summary_zh: str
    examples: tuple[str, ...]
    gate: Gate
    positional: tuple[str, ...]  # argument names rendered as positionals, in order
    keys: tuple[ArgSpec, ...]  # key=value arguments
    validate: Validator
    dispatches: bool = False  # starts GPU work (counts against the per-comment cap and quotas)
    parser_replies: bool = False  # answered by the parser itself (help text); the bot needs no handler for it
    aliases: tuple[str, ...] = ()
    details: str = ""

    def key(self, name: str) -> ArgSpec | None:
        for spec in self.keys:
            if name == spec.name or name in spec.aliases:
                return spec
        return None

    def allowed_keys(self) -> str:
        return ", ".join(k.describe() for k in self.keys)


REGISTRY: dict[str, VerbSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: VerbSpec) -> VerbSpec:
    if spec.name in REGISTRY:  # pragma: no cover - a programming error caught at import
        raise RuntimeError(f"verb {spec.name} registered twice")
    REGISTRY[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        _ALIASES[alias] = spec.name
    return spec


def get_spec(verb: str) -> VerbSpec | None:
    name = _ALIASES.get(verb.lower().replace("_", "-"))
    return REGISTRY.get(name) if name else None


def render_command(verb: str, args: Mapping[str, ArgValue]) -> str:
    """Canonical text that parses back to an equal command (the verb's spec says which args are positional)."""
    spec = get_spec(verb)
    parts = [f"/{verb}"]
    keyed = dict(args)
    for name in spec.positional if spec is not None else ():
        if name not in keyed:
            continue
        value = keyed.pop(name)
        parts.extend(render_value(v) for v in (value if isinstance(value, tuple) else (value,)))
    parts.extend(f"{k}={render_value(v)}" for k, v in sorted(keyed.items()))
    return " ".join(parts)


# The order help and the command reference list the verbs in: the everyday ones first.
ORDER = ("train", "eval", "compare", "plan", "status", "cancel", "resume", "retry", "leaderboard", "ok-to-train",
         "approve", "help")


def all_specs() -> list[VerbSpec]:
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(REGISTRY.values(), key=lambda s: (rank.get(s.name, len(ORDER)), s.name))


# --- helpers the verb modules share ----------------------------------------------------------------------------------


def split_args(raw: RawCommand, spec: VerbSpec, ctx: Context) -> tuple[list[str], dict[str, tuple[ArgSpec, str]]]:
    """Positionals and `key=value` pairs, keys resolved to their canonical names; unknown or repeated keys fail."""
    positionals: list[str] = []
    keyed: dict[str, tuple[ArgSpec, str]] = {}
    for word in raw.words:
        if word.key is None:
            if word.text.startswith("-") and len(word.text) > 1:
                bare, _ = normalise_key(word.text)
                known = spec.key(bare)
                hint = f"write `{known.name}=…`" if known else "write settings as `key=value`"
                raise ArgError(f"{quote_user(word.text)}: command-line flags are not supported; {hint}")
            positionals.append(word.value)
            continue
        name, dashed = normalise_key(word.key)
        if not name:
            raise ArgError(f"{quote_user(word.text)} has no key before `=`")
        arg = spec.key(name)
        if arg is None:
            hint = did_you_mean(name, [k.name for k in spec.keys], prefix=" (did you mean ")
            raise ArgError(f"unknown key {quote_user(word.key)}{hint + ')' if hint else ''}; "
                           f"allowed: {spec.allowed_keys() or 'none'}")
        if arg.name in keyed:
            raise ArgError(f"`{arg.name}` is given twice")
        if dashed or name != arg.name:
            ctx.notes.append(f"read {quote_user(word.text)} as `{arg.name}={word.value}`")
        keyed[arg.name] = (arg, word.value)
    return positionals, keyed


def parse_keys(keyed: dict[str, tuple[ArgSpec, str]], skip: tuple[str, ...] = ()) -> dict[str, ArgValue]:
    return {name: arg.parse(text) for name, (arg, text) in keyed.items() if name not in skip}


def names_of(keyed: dict[str, tuple[ArgSpec, str]], key: str) -> tuple[str, ...]:
    arg, text = keyed[key]
    return split_names(text, arg.name)


def lookup(text: str, names: list[str], what: str) -> str:
    """The catalog name `text` means (case-insensitive), or ArgError listing what exists."""
    for name in names:
        if name.lower() == text.lower():
            return name
    raise ArgError(f"unknown {what} {quote_user(text)}{did_you_mean(text, names)}; known: {', '.join(sorted(names))}")


def resolve_model(text: str, ctx: Context) -> tuple[str, str | None]:
    """(preset name, hub implied by the text or None). A hub id counts only if a preset lists it: no free-form ids."""
    presets = ctx.catalog.models
    name: str | None = None
    hub: str | None = None
    for preset in presets.values():
        if preset.name.lower() == text.lower():
            name = preset.name
            break
        if preset.source != "builtin" and preset.modelscope_id.lower() == text.lower():
            name, hub = preset.name, "modelscope"
            break
        if preset.hf_id and preset.hf_id.lower() == text.lower():
            name, hub = preset.name, "huggingface"
            break
    if name is None:
        names = list(presets)
        raise ArgError(f"unknown model {quote_user(text)}{did_you_mean(text, names)}; "
                       f"known: {', '.join(allowed_models(ctx))}")
    if not ctx.policy.model_allowed(name):
        raise ArgError(f"model `{name}` is not allowed in this repository; allowed: {', '.join(allowed_models(ctx))} "
                       "(`models.allowed` in .tunebot.yml)")
    problem = ctx.policy.remote_code_problem(presets[name])
    if problem is not None:
        raise ArgError(problem)
    return name, hub


def allowed_models(ctx: Context) -> list[str]:
    return [m for m in ctx.catalog.models if ctx.policy.model_allowed(m)]


def check_hub(preset: ModelPreset, hub: str | None) -> None:
    if hub == "huggingface" and preset.source != "builtin" and not preset.hf_id:
        raise ArgError(f"model `{preset.name}` has no Hugging Face id; use `hub=modelscope`")


def resolve_benchmarks(texts: list[str], ctx: Context) -> tuple[str, ...]:
    out: list[str] = []
    for text in texts:
        for part in split_names(text, "benchmark"):
            name = lookup(part, list(ctx.catalog.benchmarks), "benchmark")
            if name not in out:
                out.append(name)
    return tuple(sorted(out))  # order carries no meaning: equal commands must compare equal


_LOCAL_EXT = (".jsonl", ".json", ".csv")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def resolve_datasets(names: tuple[str, ...], ctx: Context) -> tuple[str, ...]:
    """Registry names, allowlisted hub ids (mapped to their registry name), or files under the policy's dataset_dir.

    A repo-local file is written back with its full repository path (`data/x.jsonl`), so the canonical command is
    unambiguous. Anything else, including any path outside dataset_dir, is refused.
    """
    registry = ctx.policy.datasets(ctx.catalog)
    out: list[str] = []
    for text in names:
        canonical = _resolve_dataset(text, registry, ctx)
        if canonical not in out:
            out.append(canonical)
    return tuple(out)


def _resolve_dataset(text: str, registry: dict[str, DatasetEntry], ctx: Context) -> str:
    for name, entry in registry.items():
        if name.lower() == text.lower():
            return name
        if entry.source in ("modelscope", "huggingface") and entry.id.lower() == text.lower():
            return name
    base = ctx.policy.dataset_dir
    if text.lower().endswith(_LOCAL_EXT):
        path = text if "/" in text else f"{base}/{text}"
        segments = path.split("/")
        if not path.startswith(base + "/") or not all(_SEGMENT.match(s) for s in segments):
            raise ArgError(f"{quote_user(text)}: repository datasets must be files under `{base}/` "
                           f"(e.g. `dataset={base}/train.jsonl`); other paths are not allowed")
        return path
    raise ArgError(
        f"unknown dataset {quote_user(text)}{did_you_mean(text, list(registry))}; known: {', '.join(sorted(registry))}"
        f", or a file under `{base}/` ({', '.join(_LOCAL_EXT)})"
    )


def too_many(extra: list[str], verb: str, what: str) -> ArgError:
    return ArgError(f"unexpected {quote_user(' '.join(extra))}: `/{verb}` takes {what}; "
                    "write settings as `key=value`")


def default_datasets(preset: ModelPreset, catalog: Catalog, policy: Policy) -> tuple[str, ...]:
    """What /train trains on when no dataset is named: the policy's default, or built-in data for a built-in model."""
    if policy.default_datasets:
        return policy.default_datasets
    if preset.source == "builtin":
        return tuple(name for name, entry in catalog.datasets.items() if entry.source == "builtin")
    return ()


def check_seeds(args: dict[str, ArgValue], ctx: Context) -> None:
    """`seeds=N` within the repository's `seeds.max` (each seed is one more training per side: GPU time)."""
    seeds = args.get("seeds")
    if isinstance(seeds, int) and seeds > ctx.policy.seeds_max:
        raise ArgError(f"`seeds={seeds}` is more than this repository allows ({ctx.policy.seeds_max}, `seeds.max` in "
                       f".tunebot.yml): each seed is one more training on each side")
