"""Finding what a package's modules declare: a module dropped into the package is found, no list
names it."""

import importlib
import pkgutil
from types import ModuleType


def declared(package: ModuleType) -> list:
    """Every value at the top level of the package's modules (modules in name order), a list's or a
    tuple's members in its place."""
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            found += list(value) if type(value) in (list, tuple) else [value]
    return found
