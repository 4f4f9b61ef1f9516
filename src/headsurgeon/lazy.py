"""Packages whose public names are imported on first use.

``import headsurgeon.surgery.config`` runs ``headsurgeon/surgery/__init__.py`` first; when that
file imports the whole package eagerly, reading two presets costs the import of torch,
transformers and accelerate (3 s of CPU here). The CLI builds every command's options (help
texts with the presets' defaults) on each call, so each call, ``--help`` and one-line errors
included, would pay it. A package that calls :func:`lazy_package` instead imports a public name's
submodule only when the name is first used (PEP 562).

One quirk is handled here: importing submodule ``operate`` makes the import system set the
package attribute ``operate`` to that *module*, shadowing the public *function* of the same
name. :class:`_LazyPackage` keeps the public name (as an eager ``from .operate import operate``
in ``__init__`` would).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


class _LazyPackage(types.ModuleType):
    def __getattr__(self, name: str):
        where = self.__dict__["_lazy_exports"].get(name)
        if where is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where, self.__name__), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value) -> None:
        where = self.__dict__.get("_lazy_exports", {}).get(name)
        if isinstance(value, types.ModuleType) and where is not None and value.__name__ == importlib.util.resolve_name(where, self.__name__):
            value = getattr(value, name)  # the submodule just imported: the package's name is its public object
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(self.__dict__) | set(self.__dict__["_lazy_exports"]))


def lazy_package(name: str, exports: dict[str, str]) -> None:
    """Make package ``name`` import each of ``exports`` (public name -> relative module) on first use."""
    module = sys.modules[name]
    module.__dict__["_lazy_exports"] = dict(exports)
    module.__dict__["__all__"] = sorted(exports)
    module.__class__ = _LazyPackage
