"""A workflow as a tree of steps with their statuses: what ``aum status WORKFLOW_ID`` prints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..core.errors import TaskRecordNotFound
from ..core.status import TaskStatus
from .spec import Node, children, kind, tasks

if TYPE_CHECKING:
    from ..tasks.manager import TaskManager

#: Statuses of a task that has not begun (the workflow is ``started`` once one has).
_NOT_STARTED = frozenset({TaskStatus.PENDING.value, TaskStatus.SCHEDULED.value, "not sent"})
#: Record fields shown for each task of the tree.
_FIELDS = ("status", "started_at", "finished_at", "error_type", "error_message", "attempt")


@dataclass
class TreeNode:
    """One node of a workflow: a task with its status, or a chain / group / chord of nodes."""

    kind: str
    id: str
    #: The task's registered name (tasks only).
    task_name: str = ""
    #: The task's status, or for a chain / group / chord a summary of its children's.
    status: str = ""
    duration: float | None = None
    error: str = ""
    attempt: int = 1
    children: list[TreeNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the node and its children."""
        data: dict[str, Any] = {"kind": self.kind, "id": self.id, "status": self.status}
        if self.kind == "task":
            data.update(task_name=self.task_name, duration=self.duration, error=self.error or None,
                        attempt=self.attempt)  # fmt: skip
        else:
            data["children"] = [child.to_dict() for child in self.children]
        return data


@dataclass
class WorkflowTree:
    """A workflow's record status and its tree of steps."""

    id: str
    #: The workflow's status: ``pending``, ``started`` once a step has begun, then how it ended.
    status: str
    root: TreeNode
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``aum status --json``, the REST API)."""
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error or None,
            "root": self.root.to_dict(),
        }

    def render(self, *, short_ids: bool = False) -> list[str]:
        """The tree as text lines, one per node, drawn with box characters."""
        lines = [
            f"workflow {self.id}  {self.root.kind}  {self.status}"
            + (f"  ({self.error})" if self.error else "")
        ]
        width = max((len(task.task_name) for task in _task_nodes(self.root)), default=0)
        container = self.root if self.root.kind != "task" else TreeNode("chain", "", children=[self.root])
        _render_children(container, "", lines, width, short_ids)
        return lines


def load_tree(manager: TaskManager, workflow_id: str) -> WorkflowTree:
    """Read a workflow's tree and every task's status (one round trip for all the tasks).

    Raises:
      TaskRecordNotFound: when ``workflow_id`` is not a workflow the ledger still holds.
    """
    store = manager.store
    client, keys = store.client, store.keys
    status, error_type, error_message, text = cast(
        "list[str | None]",  # the ledger's client decodes responses
        client.hmget(keys.task_record(workflow_id), ["status", "error_type", "error_message", "workflow"]),
    )
    if not text:
        raise TaskRecordNotFound(f"no workflow with id {workflow_id} (never sent, or its record expired)")
    root: Node = json.loads(text)
    pipe = client.pipeline(transaction=False)
    task_nodes = list(tasks(root))
    for task in task_nodes:
        pipe.hmget(keys.task_record(task["id"]), list(_FIELDS))
    found = dict(zip((task["id"] for task in task_nodes), pipe.execute(), strict=True))
    error = f"{error_type}: {error_message}" if error_type else ""
    tree = _node(root, found)
    if status == TaskStatus.PENDING.value and any(
        task.status not in _NOT_STARTED for task in _task_nodes(tree)
    ):  # the workflow's record only changes when it ends
        status = TaskStatus.STARTED.value
    return WorkflowTree(workflow_id, str(status), tree, error)


def _node(node: Node, found: dict[str, list[Any]]) -> TreeNode:
    if node["k"] == "task":
        status, started, finished, error_type, error_message, attempt = found[node["id"]]
        duration = float(finished) - float(started) if started and finished else None
        return TreeNode("task", node["id"], task_name=node["task"], status=status or "not sent",
                        duration=duration, error=f"{error_type}: {error_message}" if error_type else "",
                        attempt=int(attempt or 1))  # fmt: skip
    nodes = [_node(child, found) for child in children(node)]
    return TreeNode(kind(node), node.get("id", ""), status=_summary(nodes), children=nodes)


def _summary(nodes: list[TreeNode]) -> str:
    """``3/10 success, 1 started`` style summary of a composite node's tasks."""
    counts: dict[str, int] = {}
    total = 0
    for task in (leaf for child in nodes for leaf in _task_nodes(child)):
        counts[task.status] = counts.get(task.status, 0) + 1
        total += 1
    if not total:
        return "empty"
    return ", ".join(f"{count}/{total} {status}" for status, count in sorted(counts.items()))


def _task_nodes(node: TreeNode) -> list[TreeNode]:
    if node.kind == "task":
        return [node]
    return [leaf for child in node.children for leaf in _task_nodes(child)]


def _render_children(node: TreeNode, prefix: str, lines: list[str], width: int, short_ids: bool) -> None:
    for index, child in enumerate(node.children):
        last = index == len(node.children) - 1
        branch, extension = ("└─ ", "   ") if last else ("├─ ", "│  ")
        if child.kind == "task":
            task_id = child.id[:8] if short_ids else child.id
            duration = f"{child.duration:.2f}s" if child.duration is not None else ""
            attempt = f"attempt {child.attempt}" if child.attempt > 1 else ""
            line = f"{prefix}{branch}{child.task_name:<{width}}  {child.status:<10} {task_id}"
            extras = "  ".join(part for part in (duration, attempt, child.error[:100]) if part)
            lines.append(f"{line}  {extras}".rstrip())
        else:
            lines.append(f"{prefix}{branch}{child.kind} ({len(child.children)})  {child.status}")
            _render_children(child, prefix + extension, lines, width, short_ids)
