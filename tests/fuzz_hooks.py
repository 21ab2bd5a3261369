"""Schemathesis hooks for fuzzing a live Warden (SCHEMATHESIS_HOOKS=tests.fuzz_hooks).

The schema cannot name the installed plugins, so random analyze bodies would nearly all stop at
`PluginNotFound`. Most generated bodies are therefore also sent naming a real plugin and tool,
keeping every other generated field: validation, queueing, the worker, ToolRunner and the
result path all see fuzzed input. Only fast tools are used (timeouts, crashes and memory kills
are `make load`'s business)."""

from __future__ import annotations

import os
import threading
from typing import Any

import schemathesis
from hypothesis import strategies as st

ANALYZE = ("/v1/analyze-execution", "/v1/analyze-execution/async")
TARGETS: list[dict[str, str] | None] = [
    None,  # the body as generated
    {"plugin": "echo"},
    {"plugin": "echo", "tool": "echo"},
    *(
        {"plugin": "faulty", "tool": tool}
        for tool in (
            "ok",
            "image",
            "raise",
            "raise_nul",
            "invalid_input",
            "return_none",
            "return_list",
            "return_nonjson",
            "return_nul",
            "bad_output",
            "pid",
        )
    ),
]


@schemathesis.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Point most positive analyze cases at a real plugin and tool; leave negative cases (whose
    invalid part must stay invalid), cases of unknown mode and other operations alone."""
    meta = case.meta
    positive = meta is not None and not (
        meta.generation.mode.is_negative
        or any(component.mode.is_negative for component in meta.components.values())
    )
    # JSON bodies only: redirected multipart cases that looked positive here were then judged
    # "schema-violating request accepted" (their mode is not reliable at this point).
    json_body = (case.media_type or "").startswith("application/json")
    if case.operation.path not in ANALYZE or not json_body or not isinstance(case.body, dict):
        return st.just(case)
    if not positive:
        return st.just(case)

    def point(target: dict[str, str] | None) -> Any:
        if target is not None:
            case.body = {**case.body, **target}
        return case

    return st.sampled_from(TARGETS).map(point)


_lock = threading.Lock()


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Tally every response's status (WARDEN_FUZZ_STATS names the file): evidence independent of
    schemathesis's own checks."""
    path = os.environ.get("WARDEN_FUZZ_STATS")
    if path:
        line = f"{response.status_code} {case.operation.method.upper()} {case.operation.path}\n"
        with _lock, open(path, "a", encoding="utf-8") as stats:
            stats.write(line)
