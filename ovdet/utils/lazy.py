"""Lazy package exports: ``from package import Name`` imports the defining module only then.

Packages whose names are read by light code (configs, the CLI's argument parsing) use this so
that importing the package, or a small ``config`` module inside it, does not import torch or the
model code behind it::

    __getattr__, __dir__ = lazy_exports(__name__, {"OpenVocabRCNN": ".ov_rcnn"})
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each public name to the
    module (relative to ``package``, e.g. ``".ov_rcnn"``) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
