"""The architecture holds: the layer contract and the no-cycle contract of pyproject.toml.

The contracts are import-linter's (``lint-imports``, also run by ``.ci/run``); these tests run the
same check from the suite, and make sure that it sees imports made inside functions.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import grimp

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept() -> None:
    # Given the contracts in pyproject.toml
    # When import-linter checks the package
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # Then both are kept
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_imports_inside_functions_are_counted() -> None:
    # Given the package's import graph as import-linter builds it
    graph = grimp.build_graph("aury_tasks", exclude_type_checking_imports=True)
    # When a module imports another only inside a function (the TaskManager loads pydantic's
    # settings only when it has none, so that a worker process never does)
    details = graph.get_import_details(
        importer="aury_tasks.tasks.manager", imported="aury_tasks.config.settings"
    )
    # Then the import is in the graph the contracts are checked on
    assert details, "a function-level import is missing from the graph"


def test_no_module_sits_flat_in_the_package() -> None:
    # Given the package's files
    flat = sorted(path.name for path in (ROOT / "aury_tasks").glob("*.py"))
    # Then only __init__.py is outside a concept package
    assert flat == ["__init__.py"]


#: The sizes a newcomer can read in one go (issue 22): a module, and one function in it.
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def test_no_module_is_over_its_size() -> None:
    # Given every module of the package
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / "aury_tasks").rglob("*.py")
    }
    # Then none is longer than a module should be
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_no_function_is_over_its_size() -> None:
    # Given every function and method of the package, nested ones included
    too_long = {}
    for path in (ROOT / "aury_tasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    # Then none is longer than a function should be (docstring included)
    assert too_long == {}
