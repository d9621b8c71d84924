"""Lazy public names for packages.

``import napari_unet`` (napari does it at start-up) must not load torch, and the
napari docks read configurations without loading the engines behind them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, table: dict[str, str]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``table`` maps a name to its module.

    A name is imported from ``package.<module>`` on first use and cached in the
    package's namespace.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:  # noqa: N807 (module-level protocol)
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(f".{module}", package)
        # a name that is also its module's name (``segment``) is the module, which is
        # callable: the import system sets the package's attribute to the module anyway
        value = imported if name == module else getattr(imported, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
