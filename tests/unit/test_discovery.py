"""Discovery: ``<name>/tasks/__init__.py`` and ``<name>/tasks.py`` are found and imported."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from aury_tasks import ConfigError, DiscoveryError, TaskManager
from aury_tasks.worker.discovery import find_task_modules, import_task_modules

pytestmark = pytest.mark.usefixtures("forget_task_modules")

TASK_SOURCE = """
from aury_tasks import TaskManager

tm = TaskManager.get_instance()


@tm.conditional_task(queue_name="{queue}")
def {function}() -> str:
    return "{function}"
"""


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def modules_dir(tmp_path: Path) -> Path:
    """A modules directory with a uniquely named root, so imports of one test never meet another's.

    ``billing/tasks/`` is a package, ``emails/tasks.py`` a file, and the rest are no task modules.
    """
    root = tmp_path / f"modules_{uuid.uuid4().hex[:8]}"
    write(root / "billing" / "tasks" / "__init__.py", TASK_SOURCE.format(queue="billing", function="charge"))
    write(root / "billing" / "__init__.py")
    write(root / "emails" / "tasks.py", TASK_SOURCE.format(queue="emails", function="welcome"))
    write(root / "no_tasks" / "models.py", "raise RuntimeError('never imported')\n")
    write(root / "tasks_dir_without_init" / "tasks" / "helpers.py", "raise RuntimeError('never imported')\n")
    write(root / "_private" / "tasks.py", "raise RuntimeError('never imported')\n")
    write(root / ".hidden" / "tasks.py", "raise RuntimeError('never imported')\n")
    write(root / "not-an-identifier" / "tasks.py", "raise RuntimeError('never imported')\n")
    write(root / "tasks.py", "raise RuntimeError('a file at the top is no module')\n")
    return root


def test_finds_task_packages_and_task_files(modules_dir: Path) -> None:
    # Given a modules directory with a tasks package, a tasks.py and directories without tasks
    # When it is searched
    found = find_task_modules(modules_dir)

    # Then only the two task modules are found, sorted, with their import paths
    assert [(m.name, m.import_path) for m in found] == [
        ("billing", f"{modules_dir.name}.billing.tasks"),
        ("emails", f"{modules_dir.name}.emails.tasks"),
    ]
    assert found[0].path == modules_dir / "billing" / "tasks"
    assert found[1].path == modules_dir / "emails" / "tasks.py"


def test_importing_registers_their_tasks(modules_dir: Path) -> None:
    # Given a modules directory
    # When its task modules are imported
    modules = import_task_modules(modules_dir)

    # Then their tasks are registered with the default manager, under their module's name
    assert [m.name for m in modules] == ["billing", "emails"]
    tasks = TaskManager.get_instance().tasks
    assert sorted(tasks) == [
        f"{modules_dir.name}.billing.tasks.charge",
        f"{modules_dir.name}.emails.tasks.welcome",
    ]
    assert tasks[f"{modules_dir.name}.emails.tasks.welcome"].queue_name == "emails"
    assert TaskManager.get_instance().get_task("charge")() == "charge"


def test_a_relative_modules_dir_works(modules_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the working directory holding the modules directory
    monkeypatch.chdir(modules_dir.parent)

    # When it is named relatively
    modules = import_task_modules(modules_dir.name)

    # Then the modules are found and imported all the same
    assert [m.import_path for m in modules] == [
        f"{modules_dir.name}.billing.tasks",
        f"{modules_dir.name}.emails.tasks",
    ]


def test_an_empty_modules_dir_has_no_task_modules(tmp_path: Path) -> None:
    empty = tmp_path / "empty_modules"
    empty.mkdir()

    assert find_task_modules(empty) == []
    assert import_task_modules(empty) == []


def test_a_missing_modules_dir_is_a_config_error(tmp_path: Path) -> None:
    # Given a path that does not exist
    # When / Then it cannot be searched, and the error says which setting names it
    with pytest.raises(ConfigError, match=r"modules directory '.*nowhere' does not exist \(TASK_MODULES_DIR"):
        find_task_modules(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import a_dependency_that_is_not_installed\n", "ModuleNotFoundError: No module named"),
        ("raise ImportError('cannot import name X from y')\n", "ImportError: cannot import name X from y"),
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('settings missing')\n", "RuntimeError: settings missing"),
    ],
)
def test_a_broken_module_raises_a_discovery_error_naming_it(
    modules_dir: Path, source: str, error: str
) -> None:
    # Given a task module that fails to import, after a good one
    write(modules_dir / "reports" / "tasks.py", source)

    # When the task modules are imported
    with pytest.raises(DiscoveryError) as caught:
        import_task_modules(modules_dir)

    # Then the error names the module and its error, on one line, with exit code 3
    message = str(caught.value)
    assert message.startswith(f"task module {modules_dir.name}.reports.tasks failed to import: ")
    assert error in message
    assert "\n" not in message
    assert caught.value.exit_code == 3
    assert isinstance(caught.value, ImportError)
    assert caught.value.__cause__ is not None
