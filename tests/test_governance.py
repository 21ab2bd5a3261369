"""Governance checks over the source tree's AST (CONTRACT.md §6); each checker is proven on a bad snippet."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.harness import ROOT

PACKAGES = ("project", "plugins_app", "execution_app")
RUNNER = "execution_app/runner.py"
PROBE_CHILD = "plugins_app/probe_child.py"
LOADER = "plugins_app/loader.py"
FORGESYTE_ADAPTER = "plugins_app/forgesyte/adapter.py"
LOADER_FUNCTIONS = frozenset(
    {"load_plugin_class", "instantiate", "call_validate", "describe_plugin"}
)
LOADER_CALLERS = frozenset({RUNNER, PROBE_CHILD})
HEAVY_MODULES = frozenset({"torch", "cv2"})
PLUGIN_MODULES = frozenset({"warden_plugins", "plugin_packages"})
WEB_FRAMEWORKS = frozenset({"django", "rest_framework", "drf_spectacular", "celery"})
# The loader imports the ForgeSyte adapter, so the adapter and its package must be Django-free too.
DJANGO_FREE = (PROBE_CHILD, LOADER, FORGESYTE_ADAPTER, "plugins_app/forgesyte/__init__.py")
# Project modules the Django-free ones may import: these packages' __init__, and these modules
# (with any name imported from them).
DJANGO_FREE_PACKAGES = frozenset({"plugins_app", "plugins_app.forgesyte"})
DJANGO_FREE_MODULES = ("plugins_app.loader", "plugins_app.forgesyte.adapter")

# `.run(` calls outside ToolRunner that are known not to call plugin code, as "file:line".
# `subprocess.run(...)` is recognised by its receiver and needs no entry here.
RUN_CALL_WHITELIST: frozenset[str] = frozenset()


def source_files() -> Iterator[tuple[str, ast.Module]]:
    """Yield (path relative to the repo root, parsed module) for every non-migration source file."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.relative_to(ROOT).parts:
                continue
            rel = path.relative_to(ROOT).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def parse(source: str) -> ast.Module:
    return ast.parse(source)


def _imported_modules(node: ast.AST, module_path: str = "") -> list[str]:
    """Return the absolute module names an Import/ImportFrom node imports (else [])."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module_path.removesuffix(".py").split("/")[: -node.level]
            base = ".".join([*package, base] if base else package)
        # `from x import y` may import the submodule x.y as well as a name from x.
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _module_level_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Walk the module without descending into function bodies (class bodies run at import)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                stack.append(child)


# --- checkers: each returns a list of "file:line message" violations -------------------------


def check_run_calls(rel: str, tree: ast.Module) -> list[str]:
    """Calls of `<x>.run(...)` outside ToolRunner, except `subprocess.run` and the whitelist."""
    if rel == RUNNER:
        return []
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "run":
            continue
        receiver = node.func.value
        if isinstance(receiver, ast.Name) and receiver.id == "subprocess":
            continue
        where = f"{rel}:{node.lineno}"
        if where not in RUN_CALL_WHITELIST:
            found.append(f"{where} calls .run() outside ToolRunner")
    return found


def check_loader_calls(rel: str, tree: ast.Module) -> list[str]:
    """Calls of the plugin loader functions outside ToolRunner and the probe child."""
    if rel in LOADER_CALLERS or rel == LOADER:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else None
        )
        if name in LOADER_FUNCTIONS:
            found.append(f"{rel}:{node.lineno} calls loader function {name}()")
    return found


def check_finally_finishes_job(tree: ast.Module) -> list[str]:
    """ToolRunner.execute must call job_finish inside a `finally` block."""
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ToolRunner"]
    if not classes:
        return ["no class ToolRunner"]
    methods = [n for n in classes[0].body if isinstance(n, ast.FunctionDef) and n.name == "execute"]
    if not methods:
        return ["ToolRunner has no execute()"]
    for node in ast.walk(methods[0]):
        if not isinstance(node, ast.Try) or not node.finalbody:
            continue
        for stmt in node.finalbody:
            for call in ast.walk(stmt):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "job_finish"
                ):
                    return []
    return ["ToolRunner.execute does not call job_finish in a finally block"]


def _offending(node: ast.AST, rel: str, bad: Callable[[str], bool]) -> str | None:
    """Return the first module the import node imports for which `bad` holds, else None."""
    return next((m for m in _imported_modules(node, rel) if bad(m)), None)


def check_heavy_imports(rel: str, tree: ast.Module) -> list[str]:
    """torch/cv2 imported at module level, or plugin code imported anywhere."""
    found: list[tuple[int, str]] = []
    for node in _module_level_nodes(tree):
        module = _offending(node, rel, lambda m: _top(m) in HEAVY_MODULES)
        if module:
            found.append((node.lineno, f"imports {module} at module level"))
    for node in ast.walk(tree):
        module = _offending(node, rel, lambda m: _top(m) in PLUGIN_MODULES)
        if module:
            found.append((node.lineno, f"imports plugin code {module}"))
    return [f"{rel}:{line} {message}" for line, message in sorted(found)]


def _django_free_import(module: str) -> bool:
    return module in DJANGO_FREE_PACKAGES or any(
        (module + ".").startswith(f"{allowed}.") for allowed in DJANGO_FREE_MODULES
    )


def check_django_free(rel: str, tree: ast.Module) -> list[str]:
    """Any import (at any depth) of Django & co., or of a project module not known Django-free."""
    found = []
    for node in ast.walk(tree):
        module = _offending(node, rel, lambda m: _top(m) in WEB_FRAMEWORKS)
        if module:
            found.append(f"{rel}:{node.lineno} imports {module}")
            continue
        module = _offending(node, rel, lambda m: _top(m) in PACKAGES and not _django_free_import(m))
        if module:
            found.append(f"{rel}:{node.lineno} imports project module {module}")
    return found


def check_services_skip_tasks(rel: str, tree: ast.Module) -> list[str]:
    """A services.py importing a tasks module."""
    if Path(rel).name != "services.py":
        return []
    found = []
    for node in ast.walk(tree):
        module = _offending(
            node, rel, lambda m: _top(m) in PACKAGES and m.rsplit(".", 1)[-1] == "tasks"
        )
        if module:
            found.append(f"{rel}:{node.lineno} imports {module}")
    return found


# --- the tree obeys the rules --------------------------------------------------------------


def test_it_finds_the_source_tree() -> None:
    files = dict(source_files())
    assert RUNNER in files
    assert LOADER in files
    assert PROBE_CHILD in files
    assert FORGESYTE_ADAPTER in files
    assert "plugins_app/services.py" in files
    assert "execution_app/services.py" in files
    assert not [rel for rel in files if "/migrations/" in rel]


def test_it_calls_plugin_run_only_from_tool_runner() -> None:
    violations = [v for rel, tree in source_files() for v in check_run_calls(rel, tree)]
    assert violations == []


def test_it_calls_the_loader_only_from_tool_runner_and_the_probe_child() -> None:
    violations = [v for rel, tree in source_files() for v in check_loader_calls(rel, tree)]
    assert violations == []


def test_it_finishes_the_job_in_tool_runners_finally_block() -> None:
    tree = ast.parse((ROOT / RUNNER).read_text(encoding="utf-8"))
    assert check_finally_finishes_job(tree) == []


def test_it_never_imports_torch_cv2_or_plugin_code_at_module_level() -> None:
    violations = [v for rel, tree in source_files() for v in check_heavy_imports(rel, tree)]
    assert violations == []


def test_it_keeps_the_probe_child_and_loader_free_of_django() -> None:
    files = dict(source_files())
    violations = [v for rel in DJANGO_FREE for v in check_django_free(rel, files[rel])]
    # The package __init__ runs on `import plugins_app.loader`, so it must be Django-free too.
    violations += check_django_free("plugins_app/__init__.py", files["plugins_app/__init__.py"])
    assert violations == []


def test_it_never_imports_tasks_from_services() -> None:
    violations = [v for rel, tree in source_files() for v in check_services_skip_tasks(rel, tree)]
    assert violations == []


# --- each checker reports a violation ---------------------------------------------------------


def test_it_reports_a_plugin_run_call_outside_tool_runner() -> None:
    tree = parse(
        "import subprocess\n"
        "subprocess.run(['true'])\n"
        "def f(instance):\n"
        "    return instance.run('tool', {})\n"
    )
    assert check_run_calls("execution_app/tasks.py", tree) == [
        "execution_app/tasks.py:4 calls .run() outside ToolRunner"
    ]
    assert check_run_calls(RUNNER, tree) == []


def test_it_reports_a_loader_call_outside_its_callers() -> None:
    tree = parse(
        "from plugins_app import loader\n"
        "from plugins_app.loader import instantiate\n"
        "cls = loader.load_plugin_class(name='x', folder=None, entrypoint='m:C', source='s')\n"
        "obj = instantiate(cls)\n"
        "loader.call_validate(obj)\n"
    )
    assert check_loader_calls("plugins_app/probe.py", tree) == [
        "plugins_app/probe.py:3 calls loader function load_plugin_class()",
        "plugins_app/probe.py:4 calls loader function instantiate()",
        "plugins_app/probe.py:5 calls loader function call_validate()",
    ]
    assert check_loader_calls(PROBE_CHILD, tree) == []
    assert check_loader_calls(RUNNER, tree) == []


def test_it_reports_job_finish_outside_the_finally_block() -> None:
    outside = parse(
        "class ToolRunner:\n"
        "    def execute(self, job):\n"
        "        try:\n"
        "            job_finish(job_id=job.pk)\n"
        "        except Exception:\n"
        "            job_finish(job_id=job.pk)\n"
        "        finally:\n"
        "            pass\n"
        "        job_finish(job_id=job.pk)\n"
    )
    inside = parse(
        "class ToolRunner:\n"
        "    def execute(self, job):\n"
        "        try:\n"
        "            pass\n"
        "        finally:\n"
        "            if job:\n"
        "                job_finish(job_id=job.pk)\n"
    )
    assert check_finally_finishes_job(outside) == [
        "ToolRunner.execute does not call job_finish in a finally block"
    ]
    assert check_finally_finishes_job(inside) == []
    assert check_finally_finishes_job(parse("class Other: pass\n")) == ["no class ToolRunner"]


def test_it_reports_module_level_torch_and_plugin_imports() -> None:
    tree = parse(
        "import torch.nn\n"
        "try:\n"
        "    from cv2 import imread\n"
        "except ImportError:\n"
        "    pass\n"
        "from warden_plugins.echo import plugin\n"
        "def lazy():\n"
        "    import torch\n"
        "    import warden_plugins.echo\n"
        "class Holder:\n"
        "    import cv2\n"
    )
    assert check_heavy_imports("plugins_app/x.py", tree) == [
        "plugins_app/x.py:1 imports torch.nn at module level",
        "plugins_app/x.py:3 imports cv2 at module level",
        "plugins_app/x.py:6 imports plugin code warden_plugins.echo",
        "plugins_app/x.py:9 imports plugin code warden_plugins.echo",
        "plugins_app/x.py:11 imports cv2 at module level",
    ]


def test_it_reports_django_imports_in_django_free_modules() -> None:
    tree = parse(
        "import json\n"
        "from plugins_app.loader import instantiate\n"
        "def main():\n"
        "    from django.conf import settings\n"
        "    import rest_framework\n"
        "    from plugins_app.models import PluginRecord\n"
        "    from . import probe\n"
        "    from plugins_app.forgesyte.adapter import ForgeSyteAdapter\n"
        "    from plugins_app.forgesyte import translate\n"
    )
    assert check_django_free(PROBE_CHILD, tree) == [
        "plugins_app/probe_child.py:4 imports django.conf",
        "plugins_app/probe_child.py:5 imports rest_framework",
        "plugins_app/probe_child.py:6 imports project module plugins_app.models",
        "plugins_app/probe_child.py:7 imports project module plugins_app.probe",
        "plugins_app/probe_child.py:9 imports project module plugins_app.forgesyte.translate",
    ]


def test_it_reports_tasks_imported_by_services() -> None:
    tree = parse(
        "from .models import Job\n"
        "from .tasks import job_dispatch\n"
        "from . import tasks\n"
        "import execution_app.tasks\n"
        "def f():\n"
        "    from execution_app.tasks import run_job\n"
    )
    assert check_services_skip_tasks("execution_app/services.py", tree) == [
        "execution_app/services.py:2 imports execution_app.tasks",
        "execution_app/services.py:3 imports execution_app.tasks",
        "execution_app/services.py:4 imports execution_app.tasks",
        "execution_app/services.py:6 imports execution_app.tasks",
    ]
    assert check_services_skip_tasks("execution_app/apis.py", tree) == []
