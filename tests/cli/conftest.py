"""Fixtures of the CLI tests: ``aum`` in this process (CliRunner) and as a real subprocess."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from loguru import logger

from aury_tasks.cli import main

ROOT = Path(__file__).resolve().parents[2]
#: The example modules shipped with the project.
EXAMPLE_MODULES = ROOT / "modules"


@pytest.fixture(autouse=True)
def _isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test in an empty directory and undo what ``aum`` did to this process.

    ``aum`` imports task modules (which then register with the next TaskManager only if imported
    again), puts their parent on ``sys.path`` and configures logging. Task modules a test of
    another directory imported (the API tests' ``producer``) are dropped before the test too, so
    that ``aum`` imports them afresh into its own TaskManager.
    """
    monkeypatch.chdir(tmp_path)
    task_roots = (str(tmp_path), str(ROOT / "modules"), str(ROOT / "tests" / "fixtures"))
    _forget_task_modules(set(sys.modules), task_roots, namespaces=False)
    path, modules = sys.path[:], set(sys.modules)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    _forget_task_modules(set(sys.modules) - modules, task_roots, namespaces=True)
    sys.path[:] = path
    logger.remove()
    logger.add(sys.stderr)
    root.handlers[:] = handlers
    root.setLevel(level)


def _forget_task_modules(names: set[str], task_roots: tuple[str, ...], *, namespaces: bool) -> None:
    """Drop from ``sys.modules`` those of ``names`` loaded from ``task_roots`` (and, with
    ``namespaces``, the namespace packages of a modules directory, which have no file)."""
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None)
        if (file is None and namespaces) or (file is not None and file.startswith(task_roots)):
            sys.modules.pop(name, None)


Invoke = Callable[..., Result]


@pytest.fixture
def invoke() -> Invoke:
    """Run ``aum ARGS`` with CliRunner; what it printed is shown if the test fails.

    ``invoke("send", "add", env={"TASK_BROKER_URL": ...})``: ``result.stdout`` and
    ``result.stderr`` are kept apart.
    """
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(main, list(args), env=env, prog_name="aum")
        print(f"$ aum {' '.join(args)}  -> exit {result.exit_code}")
        print(f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            print("".join(traceback.format_exception(*result.exc_info)))
        return result

    return run


RunAum = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_aum(tmp_path: Path) -> RunAum:
    """Run ``python -m aury_tasks.cli ARGS`` in a subprocess, in ``tmp_path`` unless ``cwd`` says.

    The environment is this one without TASK_* variables, plus ``env``.
    """

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_")}
        full_env.update({"TASK_DATA_DIR": str(tmp_path / ".aum"), **(env or {})})
        completed = subprocess.run(
            [sys.executable, "-m", "aury_tasks.cli", *args],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        print(f"$ python -m aury_tasks.cli {' '.join(args)}  -> exit {completed.returncode}")
        print(f"--- stdout ---\n{completed.stdout}--- stderr ---\n{completed.stderr}")
        return completed

    return run
