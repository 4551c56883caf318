"""Workflows in eager mode (``TASK_RUN_MODE=eager``): every step runs inline, in order."""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any

from ..core.coroutines import run_coroutine_sync
from .spec import Node
from .state import StepError

if TYPE_CHECKING:
    from ..tasks.manager import TaskManager


class _Nothing:
    pass


_NOTHING: Any = _Nothing()


def run_eagerly(manager: TaskManager, root: Node) -> Any:
    """Run the workflow ``root`` in this process and return its result; a failing step raises."""
    return _run(manager, root, _NOTHING)


def _run(manager: TaskManager, node: Node, previous: Any) -> Any:
    if node["k"] == "task":
        args = list(node["args"])
        if previous is not _NOTHING and not node["imm"]:
            args.append(previous)
        # Through JSON, as a worker would see them (tuples become lists).
        args, kwargs = json.loads(json.dumps([args, node["kwargs"]]))
        result = manager.get_task(node["task"]).fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = run_coroutine_sync(result)
        return json.loads(json.dumps(result))
    if node["k"] == "chain":
        result = previous
        for step in node["steps"]:
            result = _run(manager, step, result)
        return result
    results = []
    for member in node["members"]:
        try:
            results.append(_run(manager, member, previous))
        except Exception as exc:
            if node.get("policy") != "include":
                raise
            results.append(StepError(member.get("id", ""), member.get("task", ""), "failure",
                                     type(exc).__name__, str(exc)).as_entry())  # fmt: skip
    return results
