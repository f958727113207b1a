"""A stage package's components, importable from the package without importing kfp until asked.

``from components.train import train_model`` should work, but ``components.train.core`` is
imported inside containers and by tests, and importing it runs ``components/train/__init__.py``
first: an eager ``from components.train.component import train_model`` there would import kfp
(and the wrapper module) everywhere. A module ``__getattr__`` (PEP 562) imports the wrapper
module on the first access of one of its names instead.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, module: str, names: list) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: ``names`` come from ``package.module``, imported on first use."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__
