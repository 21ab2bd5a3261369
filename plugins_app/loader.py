"""Import a plugin's class from its folder or package. Never imports Django.

Only the probe child process and execution_app.runner.ToolRunner may call this module.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the probe child imports this module: nothing it does not need at run time
    from typing import Any

PACKAGE_ROOT = "warden_plugins"
FORGESYTE_SOURCE = "forgesyte"


class EntrypointError(Exception):
    """The manifest's entrypoint does not name a class in the plugin's module."""


def _plugin_package(name: str, folder: str, fresh: bool) -> str:
    """Register `warden_plugins.<name>` as a package whose path is the plugin folder.

    Each plugin gets its own namespace, so two plugins' `plugin.py` never collide and a plugin
    may import its sibling modules relatively (`from . import helpers`).
    """
    if PACKAGE_ROOT not in sys.modules:
        root = types.ModuleType(PACKAGE_ROOT)
        root.__path__ = []
        sys.modules[PACKAGE_ROOT] = root
    package_name = f"{PACKAGE_ROOT}.{name}"
    package = sys.modules.get(package_name)
    if fresh or package is None or list(getattr(package, "__path__", [])) != [folder]:
        for key in [
            k for k in sys.modules if k == package_name or k.startswith(package_name + ".")
        ]:
            del sys.modules[key]
        package = types.ModuleType(package_name)
        package.__path__ = [folder]
        package.__file__ = os.path.join(folder, "__init__.py")
        package.__package__ = package_name
        sys.modules[package_name] = package
    return package_name


def load_plugin_class(
    *, name: str, folder: str | None, entrypoint: str, source: str, fresh: bool = False
) -> type[Any]:
    """Import the plugin module and return its class; `fresh` re-imports a folder plugin.

    For a ForgeSyte plugin (`source` "forgesyte") the class returned is a ForgeSyteAdapter
    subclass wrapping the plugin's class, with Warden's `run(tool, args)` and `validate()`.
    Raises whatever the plugin's import raises, EntrypointError if the entrypoint's module or
    class is missing, HostModuleImportError if a ForgeSyte plugin needs ForgeSyte's `app`.
    """
    module_name, _, class_name = entrypoint.partition(":")
    if source == "directory" and folder:
        qualified = f"{_plugin_package(name, folder, fresh)}.{module_name}"
    else:
        qualified = module_name
    try:
        module = importlib.import_module(qualified)
    except ImportError as exc:
        host_error = None
        if source == FORGESYTE_SOURCE:
            from plugins_app.forgesyte.adapter import host_import_error

            host_error = host_import_error(exc, entrypoint)
        if host_error is not None:
            raise host_error from exc
        if not isinstance(exc, ModuleNotFoundError):
            raise
        # Only the entrypoint module itself (or a parent of it) missing is a manifest error;
        # a module the plugin's own code imports stays the plugin's ImportError.
        if exc.name is None or not (qualified + ".").startswith(exc.name + "."):
            raise
        where = f"in plugin folder {folder}" if source == "directory" and folder else "installed"
        raise EntrypointError(
            f"entrypoint '{entrypoint}': no module '{module_name}' {where}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise EntrypointError(
            f"entrypoint '{entrypoint}': module '{module_name}' has no class '{class_name}'"
        )
    if source == FORGESYTE_SOURCE:
        from plugins_app.forgesyte.adapter import adapter_class

        return adapter_class(cls)
    if not callable(getattr(cls, "run", None)):
        raise EntrypointError(
            f"entrypoint '{entrypoint}': class '{class_name}' has no run() method"
        )
    return cls


def instantiate(cls: type[Any]) -> Any:
    """Create the plugin instance (its `__init__` takes no arguments)."""
    return cls()


def call_validate(instance: Any) -> None:
    """Call the optional `validate()` hook."""
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()


def describe_plugin(instance: Any) -> dict[str, Any] | None:
    """A ForgeSyte plugin's class attributes and tools as JSON-safe facts; None for others."""
    # Loaded only for ForgeSyte plugins (it is slow to import): absent, the instance is not one.
    adapter = sys.modules.get("plugins_app.forgesyte.adapter")
    if adapter is None or not isinstance(instance, adapter.ForgeSyteAdapter):
        return None
    facts: dict[str, Any] = instance.describe()
    return facts
