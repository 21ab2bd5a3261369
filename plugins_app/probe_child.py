"""The isolated probe process: import, __init__ and validate() one plugin. Never imports Django.

Run as `python -c 'from plugins_app.probe_child import run; run()' NAME FOLDER ENTRYPOINT SOURCE`
(probe.py; `-m` would import runpy first, milliseconds of every probe). Progress and the outcome
are written as JSON lines to the original stdout; the plugin's own prints go to stderr. For a
ForgeSyte plugin the outcome also carries its tools and class attributes ("facts"), read here,
where plugin code may run.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imports cost every probe: only what the probe needs at run time
    from typing import Any

MAX_TRACEBACK = 20_000


def main(argv: list[str]) -> int:
    """Probe the plugin that argv[1:5] describe (name, folder or "", entrypoint, source); always
    exits 0 when the plugin lets it."""
    name, folder, entrypoint, source = argv[1:5]
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the plugin prints must not corrupt the result channel

    def emit(message: dict[str, Any]) -> None:
        # json (and the `re` it imports) only when a message needs it: most probes send only
        # stages and {"ok": true}, and its import is a third of a bare probe's start-up.
        if set(message) == {"stage"}:
            text = f'{{"stage": "{message["stage"]}"}}'  # stages are fixed identifiers
        elif message == {"ok": True}:
            text = '{"ok": true}'
        else:
            import json

            text = json.dumps(message)
        out.write(text + "\n")
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
        import traceback

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
