"""The verbs tunebot understands: one module per verb (or family) registers its spec here, Prow style."""

from __future__ import annotations

from . import compare, evaluate, misc, plan, runs, train  # noqa: F401  (importing registers the verbs)
from .base import REGISTRY, Context, RawCommand, VerbSpec, all_specs, get_spec

__all__ = ["REGISTRY", "Context", "RawCommand", "VerbSpec", "all_specs", "get_spec"]
