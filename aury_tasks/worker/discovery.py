"""Find and import task modules: ``<modules_dir>/<name>/tasks/`` (a package) or ``tasks.py``."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError, DiscoveryError


@dataclass(frozen=True)
class TaskModule:
    """A task module found under the modules directory."""

    #: The feature module's directory name, e.g. ``emails``.
    name: str
    #: The import path, e.g. ``modules.emails.tasks``.
    import_path: str
    #: The file or package directory it was found at.
    path: Path


def find_task_modules(modules_dir: str | Path) -> list[TaskModule]:
    """List the task modules under ``modules_dir``, sorted by name.

    Raises:
      ConfigError: when ``modules_dir`` is not a directory.
    """
    root = Path(modules_dir)
    if not root.is_dir():
        raise ConfigError(f"modules directory {str(root)!r} does not exist (TASK_MODULES_DIR / --modules)")
    root = root.resolve()
    found = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith((".", "_")) or not child.name.isidentifier():
            continue
        package, single = child / "tasks" / "__init__.py", child / "tasks.py"
        if package.is_file() or single.is_file():
            found.append(
                TaskModule(
                    name=child.name,
                    import_path=f"{root.name}.{child.name}.tasks",
                    path=package.parent if package.is_file() else single,
                )
            )
    return found


def import_task_modules(modules_dir: str | Path) -> list[TaskModule]:
    """Import every task module under ``modules_dir`` (its parent goes on ``sys.path``).

    Returns:
      list[TaskModule]: the modules imported.

    Raises:
      DiscoveryError: naming the first module that failed to import and its error.
    """
    modules = find_task_modules(modules_dir)
    parent = str(Path(modules_dir).resolve().parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    for module in modules:
        try:
            importlib.import_module(module.import_path)
        except Exception as exc:
            raise DiscoveryError(
                f"task module {module.import_path} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
    return modules
