"""``aum tasks``: an aligned table of the discovered tasks; bad settings and modules exit cleanly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import EXAMPLE_MODULES, ROOT, Invoke, RunAum

HEADERS = ["NAME", "QUEUE", "RETRIES", "TIMEOUT", "KIND", "MODULE"]
EXAMPLE_ROWS = [
    ["modules.emails.tasks.send_password_reset", "emails", "3", "60s", "sync", "modules.emails.tasks"],
    ["modules.emails.tasks.send_welcome_email", "emails", "3", "60s", "async", "modules.emails.tasks"],
    ["modules.reports.tasks.build_report", "reports", "2", "300s", "sync", "modules.reports.tasks"],
    ["modules.reports.tasks.export_report", "reports", "0", "30s", "async", "modules.reports.tasks"],
    ["modules.reports.tasks.refresh_todays_report", "reports", "2", "300s", "sync", "modules.reports.tasks"],
    ["modules.reports.tasks.summarize_week", "reports", "2", "60s", "sync", "modules.reports.tasks"],
]


def assert_aligned_table(output: str, rows: list[list[str]]) -> None:
    """The output is the header line then ``rows``, each cell in its header's column.

    Text columns start where their header starts; the numeric RETRIES column ends where its
    header ends.
    """
    header, *lines = output.splitlines()
    assert header.split() == HEADERS
    starts = {name: header.index(name) for name in HEADERS}
    assert [line.split() for line in lines] == rows
    for line, row in zip(lines, rows, strict=True):
        for name, cell in zip(HEADERS, row, strict=True):
            if name == "RETRIES":
                end = starts[name] + len(name)
                assert line[end - len(cell) : end] == cell, f"{cell!r} not right-aligned under {name}"
            else:
                start = starts[name]
                assert line[start : start + len(cell)] == cell, f"{cell!r} not under {name}:\n{output}"
                assert start == 0 or line[start - 1] == " "
    assert all(line == line.rstrip() for line in [header, *lines])


def test_lists_the_example_modules_in_an_aligned_table(invoke: Invoke) -> None:
    # Given the example modules
    # When their tasks are listed
    result = invoke("tasks", "--modules", str(EXAMPLE_MODULES))

    # Then a table sorted by queue and name lists them, columns aligned
    assert result.exit_code == 0
    assert_aligned_table(result.stdout, EXAMPLE_ROWS)
    assert result.stderr == ""


def test_lists_from_the_default_modules_dir_in_a_subprocess(run_aum: RunAum) -> None:
    # Given the project directory, whose modules/ holds the examples
    # When the real aum lists the tasks there, without --modules
    completed = run_aum("tasks", cwd=ROOT)

    # Then it prints the same aligned table
    assert completed.returncode == 0
    assert_aligned_table(completed.stdout, EXAMPLE_ROWS)


def test_filters_by_queue(invoke: Invoke) -> None:
    result = invoke("tasks", "--modules", str(EXAMPLE_MODULES), "-q", "reports")

    assert result.exit_code == 0
    assert_aligned_table(result.stdout, [row for row in EXAMPLE_ROWS if row[1] == "reports"])


def test_does_not_contact_the_broker(invoke: Invoke, tmp_path: Path) -> None:
    # Given an unreachable broker and no embedded server
    env = {"TASK_BROKER_URL": "redis://127.0.0.1:1/0", "TASK_DATA_DIR": str(tmp_path / "data")}

    # When the tasks are listed
    result = invoke("tasks", "--modules", str(EXAMPLE_MODULES), env=env)

    # Then it works, and no embedded server was started
    assert result.exit_code == 0
    assert not (tmp_path / "data").exists()


def test_an_empty_modules_dir_says_so(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "modules").mkdir()

    result = invoke("tasks")

    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "no tasks found under modules/\n"


def test_settings_from_env_file_give_the_task_defaults(invoke: Invoke, tmp_path: Path) -> None:
    # Given a task module whose task names no queue or retries, and an env file that sets them
    (tmp_path / "mods" / "jobs").mkdir(parents=True)
    (tmp_path / "mods" / "jobs" / "tasks.py").write_text(
        "from aury_tasks import TaskManager\n\n"
        "@TaskManager.get_instance().conditional_task\n"
        "def cleanup() -> None: ...\n"
    )
    (tmp_path / "custom.env").write_text("TASK_QUEUE_NAME=maintenance\nTASK_MAX_RETRIES=9\nTASK_TIMEOUT=42\n")

    # When the tasks are listed with --env-file
    result = invoke("--env-file", "custom.env", "tasks", "--modules", "mods")

    # Then the task's defaults come from that file
    assert result.exit_code == 0
    assert_aligned_table(
        result.stdout, [["mods.jobs.tasks.cleanup", "maintenance", "9", "42s", "sync", "mods.jobs.tasks"]]
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASK_TIMEOUT", "abc"),
        ("TASK_QUEUE_NAME", "bad name"),
        ("TASK_RUN_MODE", "nope"),
        ("TASK_KEY_PREFIX", "shop:*"),
        ("TASK_KEY_PREFIX", "shop:"),
        ("TASK_KEY_PREFIX", "my shop"),
    ],
)
def test_a_bad_setting_exits_2_naming_it(invoke: Invoke, variable: str, value: str) -> None:
    # Given a wrong setting
    # When the tasks are listed
    result = invoke("tasks", "--modules", str(EXAMPLE_MODULES), env={variable: value})

    # Then aum exits 2 with one line naming the variable
    assert result.exit_code == 2
    assert result.stdout == ""
    assert re.fullmatch(rf"Error: invalid setting {variable}: expected [^\n]+\n", result.stderr)


def test_a_bad_setting_in_a_subprocess_is_one_line_on_stderr(run_aum: RunAum) -> None:
    # Given a wrong setting and a password in another one
    env = {"TASK_MAX_WORKERS": "0", "TASK_BROKER_URL": "redis://:hunter2@cache:6379/0"}

    # When the real aum lists the tasks
    completed = run_aum("tasks", "--modules", str(EXAMPLE_MODULES), env=env)

    # Then it exits 2, stderr is exactly one line naming the variable, and no traceback
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1
    assert completed.stderr.startswith("Error: invalid setting TASK_MAX_WORKERS: expected a whole number")
    assert "Traceback" not in completed.stderr
    assert "hunter2" not in completed.stderr


def test_a_bad_url_in_dotenv_exits_2_without_its_password(run_aum: RunAum, tmp_path: Path) -> None:
    # Given a .env with a broker URL of an unknown scheme holding a password
    (tmp_path / ".env").write_text("TASK_BROKER_URL=ftp://admin:hunter2@files.example.com/\n")

    # When the real aum lists the tasks
    completed = run_aum("tasks", "--modules", str(EXAMPLE_MODULES))

    # Then the one error line names the variable with the password masked
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        "Error: invalid setting TASK_BROKER_URL: expected a URL starting with redis://, rediss://, unix://, "
        "redis+sentinel://, rediss+sentinel://, amqp://, amqps://, memory://, "
        "got 'ftp://admin:***@files.example.com/'"
    ]


def test_a_broken_module_exits_3_naming_it(invoke: Invoke, tmp_path: Path) -> None:
    # Given a modules directory with a good module and one whose import fails
    (tmp_path / "mods" / "fine").mkdir(parents=True)
    (tmp_path / "mods" / "fine" / "tasks.py").write_text("")
    (tmp_path / "mods" / "shaky" / "tasks").mkdir(parents=True)
    (tmp_path / "mods" / "shaky" / "tasks" / "__init__.py").write_text("import not_installed_anywhere\n")

    # When the tasks are listed
    result = invoke("tasks", "--modules", "mods")

    # Then aum exits 3, naming the module and the import error on one line
    assert result.exit_code == 3
    assert result.stderr == (
        "Error: task module mods.shaky.tasks failed to import: "
        "ModuleNotFoundError: No module named 'not_installed_anywhere'\n"
    )


def test_a_broken_module_in_a_subprocess_exits_3_without_traceback(run_aum: RunAum, tmp_path: Path) -> None:
    # Given a module that raises ImportError
    (tmp_path / "mods" / "payments").mkdir(parents=True)
    (tmp_path / "mods" / "payments" / "tasks.py").write_text("raise ImportError('stripe SDK too old')\n")

    # When the real aum lists the tasks
    completed = run_aum("tasks", "--modules", "mods")

    # Then it exits 3 with one line naming the module
    assert completed.returncode == 3
    assert completed.stderr.splitlines() == [
        "Error: task module mods.payments.tasks failed to import: ImportError: stripe SDK too old"
    ]


def test_a_missing_modules_dir_exits_with_one_line(invoke: Invoke) -> None:
    result = invoke("tasks", "--modules", "nowhere")

    assert result.exit_code == 2
    assert result.stderr.startswith("Error: modules directory 'nowhere' does not exist")
    assert result.stderr.count("\n") == 1
