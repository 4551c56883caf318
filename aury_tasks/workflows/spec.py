"""A workflow as JSON: the tree of its steps, each task with its id assigned before anything runs.

Nodes (plain dicts, stored with the workflow and carried in messages):

* ``{"k": "task", "id", "task", "queue", "args", "kwargs", "imm", "prio"}``: one task;
* ``{"k": "chain", "id", "steps": [node, …], "chord": bool}``: steps in order (a chord is a chain
  of its group and its callback);
* ``{"k": "group", "id", "members": [node, …], "policy": "fail" | "include"}``.

A message's continuation is a list of frames, worked through when its task ends:
``{"then": node}`` starts ``node`` with the result, ``{"join": group_id, "i": index}`` hands the
result to a group (whose own continuation is kept with the group, not in 10,000 messages).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from ..core.errors import TaskOptionError
from .canvas import Canvas, Chain, Chord, Group, Signature

Node = dict[str, Any]
Frame = dict[str, Any]


def build(canvas: Canvas) -> Node:
    """The JSON tree of ``canvas``, with a fresh id for every task, chain and group."""
    if isinstance(canvas, Signature):
        task = canvas.task
        return {
            "k": "task",
            "id": str(uuid.uuid4()),
            "task": task.name,
            "queue": canvas.queue_name or task.queue_name,
            "args": list(canvas.args),
            "kwargs": dict(canvas.kwargs),
            "imm": canvas.immutable,
            "prio": task.priority if canvas.priority is None else canvas.priority,
        }
    if isinstance(canvas, Chain):
        return {"k": "chain", "id": str(uuid.uuid4()), "steps": [build(step) for step in canvas.steps]}
    if isinstance(canvas, Group):
        return {
            "k": "group",
            "id": str(uuid.uuid4()),
            "members": [build(member) for member in canvas.members],
            "policy": canvas.member_failure,
        }
    if isinstance(canvas, Chord):
        if canvas.body is None:
            raise TaskOptionError("a chord needs a callback: chord(header, callback.s())")
        return {"k": "chain", "id": str(uuid.uuid4()), "chord": True,
                "steps": [build(canvas.header), build(canvas.body)]}  # fmt: skip
    raise TaskOptionError(f"not a workflow step: {canvas!r}")


def kind(node: Node) -> str:
    """``task``, ``chain``, ``group`` or ``chord``."""
    return "chord" if node.get("chord") else str(node["k"])


def tasks(node: Node) -> Iterator[Node]:
    """Every task node in ``node``, in order."""
    if node["k"] == "task":
        yield node
    else:
        for child in node.get("steps") or node.get("members") or ():
            yield from tasks(child)


def children(node: Node) -> list[Node]:
    """The steps of a chain or the members of a group (none for a task)."""
    return list(node.get("steps") or node.get("members") or ())


def rest_of_chain(steps: list[Node]) -> Node:
    """A chain node of the steps left (no id: it is a continuation, not something shown)."""
    return steps[0] if len(steps) == 1 else {"k": "chain", "steps": steps}


def groups(node: Node) -> Iterator[Node]:
    """Every group node in ``node``."""
    if node["k"] == "group":
        yield node
    for child in children(node):
        yield from groups(child)
