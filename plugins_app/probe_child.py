"""The isolated probe process: import, __init__ and validate() one plugin. Never imports Django.

Run as `python -P -c 'from plugins_app.probe_child import run; run()' NAME FOLDER ENTRYPOINT SOURCE`
(probe.py): `-m` would import runpy first, milliseconds of every probe; `-P` keeps the working
directory, which a plugin may change, off sys.path (the project root comes from PYTHONPATH).
Progress and the outcome are written as JSON lines to the original stdout; the plugin's own
prints go to stderr. For a ForgeSyte plugin the outcome also carries its tools and class
attributes ("facts"), read here, where plugin code may run.
"""

from __future__ import annotations

# Imported before any plugin code runs: a plugin that puts its own folder first on sys.path
# (or imports a module of its own named `token`, `json`...) must not break the probe's report.
import json
import os
import sys
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

MAX_TRACEBACK = 20_000


def main(argv: list[str]) -> int:
    """Probe the plugin that argv[1:5] describe (name, folder or "", entrypoint, source); always
    exits 0 when the plugin lets it."""
    name, folder, entrypoint, source = argv[1:5]
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the plugin prints must not corrupt the result channel

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    from plugins_app.loader import call_validate, describe_plugin, instantiate, load_plugin_class

    stage = "import"
    try:
        emit({"stage": stage})
        cls = load_plugin_class(
            name=name, folder=folder or None, entrypoint=entrypoint, source=source
        )
        stage = "init"
        emit({"stage": stage})
        instance = instantiate(cls)
        stage = "validate"
        emit({"stage": stage})
        call_validate(instance)
        stage = "describe"
        emit({"stage": stage})
        facts = describe_plugin(instance)
    except BaseException as exc:  # every failure is reported, SystemExit included
        emit(
            {
                "ok": False,
                "stage": stage,
                "exc_type": type(exc).__name__,
                "exc_module": type(exc).__module__,
                "message": str(exc),
                "traceback": traceback.format_exc()[-MAX_TRACEBACK:],
            }
        )
        return 0
    emit({"ok": True} if facts is None else {"ok": True, "facts": facts})
    return 0


def run() -> None:
    """The probe process's entry point: `main`, then an exit without interpreter teardown
    (plugin threads must not hang the probe)."""
    os._exit(main(sys.argv))


if __name__ == "__main__":
    run()
