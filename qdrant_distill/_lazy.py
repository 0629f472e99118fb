"""Lazy public faces: a package's ``__init__`` names what it offers and the module that defines each name; the module
is imported on first use, so importing a face costs nothing (no torch, no qdrant-client)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["face"]


def face(package: str, names: Mapping[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: each of ``names`` comes from its module (relative to the
    package, e.g. ``".recipe"``) on first access and is then bound in ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
