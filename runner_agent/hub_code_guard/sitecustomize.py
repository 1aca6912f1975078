"""Refuses hub code (`trust_remote_code`) in every Python process of a tool the agent starts for a job that may not
run it: ms-swift and EvalScope both load checkpoints with `trust_remote_code=True` hard-coded (ms-swift's
`ModelLoader.default_trust_remote_code`, EvalScope's `evalscope/models/modelscope.py`), and ms-swift starts its
training in a child process, so no argument of ours reaches that decision.

This directory goes first on PYTHONPATH (runner_agent/hub_code.py), so Python imports this file at start-up in the
tool and in every child it starts. With TUNEBOT_HUB_CODE=forbid it makes transformers decide every
`trust_remote_code` question as False: a model whose config maps to Python files in its repository then fails to
load with transformers' own "contains custom code" error, before any of that code is imported. Models that
transformers implements itself load as before. It imports nothing heavy: the patch is applied when (and only if)
the process imports transformers.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

_TARGET = "transformers.dynamic_module_utils"


def _refusing(original: Any) -> Any:
    def resolve_trust_remote_code(trust_remote_code: Any, model_name: Any, has_local_code: Any,
                                  has_remote_code: Any, *args: Any, **kwargs: Any) -> Any:
        return original(False, model_name, has_local_code, has_remote_code, *args, **kwargs)

    resolve_trust_remote_code.__tunebot_guard__ = True  # type: ignore[attr-defined]
    return resolve_trust_remote_code


def _patch(module: ModuleType) -> None:
    original = getattr(module, "resolve_trust_remote_code", None)
    if original is None or getattr(original, "__tunebot_guard__", False):
        return
    guarded = _refusing(original)
    module.resolve_trust_remote_code = guarded  # type: ignore[attr-defined]
    # Modules that imported the name before this ran (none, normally: the finder patches at import time). Their
    # __dict__ only: getattr on transformers' lazy modules would import submodules in the middle of this import.
    for other in list(sys.modules.values()):
        namespace = getattr(other, "__dict__", None)
        if isinstance(namespace, dict) and namespace.get("resolve_trust_remote_code") is original:
            namespace["resolve_trust_remote_code"] = guarded


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Patches transformers' decision function right after its module runs, before anything imports the name."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


if os.environ.get("TUNEBOT_HUB_CODE") == "forbid":
    install()
