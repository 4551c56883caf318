"""What every ``aum`` command shares: settings, error handling and table output."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..config.logging import setup_logging
from ..config.settings import TaskSettings
from ..core.errors import AuryTasksError
from ..tasks.manager import TaskManager
from ..worker.discovery import import_task_modules


class AumError(click.ClickException):
    """A ``click`` error that exits with the code of the aury-tasks error behind it."""

    def __init__(self, error: AuryTasksError) -> None:
        super().__init__(error.message)
        self.exit_code = error.exit_code  # type: ignore[misc]  # click reads it per instance


class AumGroup(click.Group):
    """A click group that turns :class:`AuryTasksError` into one line and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuryTasksError as error:
            raise AumError(error) from None


@dataclass
class AumContext:
    """State shared by the commands of one ``aum`` run (``ctx.obj``)."""

    env_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: TaskSettings | None = None

    @property
    def settings(self) -> TaskSettings:
        """The settings, read on first use (so ``--help`` works with a broken ``.env``)."""
        if self._settings is None:
            extra: dict[str, Any] = {"_env_file": self.env_file} if self.env_file else {}
            self._settings = TaskSettings.load(**extra, **self.overrides)
        return self._settings

    def task_manager(self) -> TaskManager:
        """The default TaskManager, on these settings (so ``--env-file`` reaches the broker).

        Call it before importing task modules: their task defaults come from these settings.
        """
        manager = TaskManager.get_instance()
        if not manager.is_initialized:
            manager.configure(settings=self.settings)
        return manager

    def with_task_modules(self, modules_dir: str | None, *, logs: bool = True) -> TaskManager:
        """The TaskManager once the task modules (of ``--modules``, else TASK_MODULES_DIR) are imported.

        ``logs``: configure logging first (commands that print only tables leave it).
        """
        if modules_dir is not None:
            self.overrides["modules_dir"] = modules_dir
        settings = self.settings
        if logs:
            self.setup_logging()
        manager = self.task_manager()
        import_task_modules(settings.modules_dir)
        return manager

    def setup_logging(self) -> None:
        """Configure loguru from ``TASK_LOG_LEVEL`` and ``TASK_LOG_JSON``."""
        setup_logging(self.settings.log_level, json=self.settings.log_json)


pass_context = click.make_pass_decorator(AumContext, ensure=True)

#: ``--modules DIR``: where the task modules are, for the commands that import them.
modules_option = click.option(
    "--modules",
    "modules_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory of task modules.  [default: TASK_MODULES_DIR]",
)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned table: left-aligned text, right-aligned numbers."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) if rows else False
               for i in range(len(headers))]  # fmt: skip
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if numeric[i] else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    click.echo(click.style(line(cells[0]), bold=sys.stdout.isatty()))
    for row in cells[1:]:
        click.echo(line(row))
