"""Handles of a sent workflow: its result, its tree of steps, and cancel."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import TaskRecordNotFound
from ..core.instances import task_managers
from ..core.status import TaskStatus
from ..ledger.records import Progress
from ..redis.scripts import run_pipelined
from .spec import Node, tasks
from .state import WorkflowState
from .tree import WorkflowTree, load_tree

if TYPE_CHECKING:
    from ..tasks.manager import TaskManager


class _Unset:
    pass


_UNSET: Any = _Unset()


@dataclass
class WorkflowHandle:
    """A sent chain, group or chord: follow it with its id like a task.

    >>> handle = chain(fetch.s(url), parse.s()).send()
    >>> handle.get_result(timeout=60)      # the last step's result
    >>> print(handle.tree().render())       # each step's status
    """

    #: The workflow's id (``aum status ID`` shows its tree).
    id: str
    #: ``chain``, ``group``, ``chord`` or ``task``.
    kind: str
    _manager: TaskManager | None = field(default=None, repr=False, compare=False)
    _eager_result: Any = field(default=_UNSET, repr=False, compare=False)

    @property
    def manager(self) -> TaskManager:
        """The manager whose ledger holds the workflow."""
        if self._manager is None:
            self._manager = task_managers.get()
        return self._manager

    @property
    def eager(self) -> bool:
        """Whether the workflow already ran inline (``TASK_RUN_MODE=eager``)."""
        return self._eager_result is not _UNSET

    def status(self) -> TaskStatus:
        """``pending`` until the workflow ends, then ``success``, ``failure`` or ``cancelled``."""
        if self.eager:
            return TaskStatus.SUCCESS
        return self.manager.task_status(self.id)

    def get_result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end and return its result (the last step's).

        Raises:
          TaskFailed: with the error of the step that stopped it (``TaskCancelled`` when cancelled).
          TimeoutError: when ``timeout`` passes first.
        """
        if self.eager:
            return self._eager_result
        return self.manager.get_result(self.id, timeout=timeout)

    async def result_async(self, timeout: float | None = None) -> Any:
        """:meth:`get_result`, awaiting on the running event loop."""
        if self.eager:
            return self._eager_result
        return await self.manager.get_result_async(self.id, timeout=timeout)

    def tree(self) -> WorkflowTree:
        """The workflow's steps with their statuses now."""
        return load_tree(self.manager, self.id)

    def task_ids(self) -> list[str]:
        """The ids of every task in the workflow, in order."""
        return [task["id"] for task in tasks(self._root())]

    def cancel(self) -> bool:
        """Cancel every step not yet finished; steps never started are marked ``cancelled``.

        Returns:
          bool: ``False`` when the workflow had already ended.
        """
        if self.eager:
            return False
        store = self.manager.store
        root = self._root()
        ended = not WorkflowState(store.client, store.keys, store.ttl_ms).cancel(self.id)
        now = time.time()
        pipe = store.client.pipeline(transaction=False)
        for task in tasks(root):
            pipe.hget(store.keys.task_record(task["id"]), "final")
        finals = pipe.execute()
        writes = [
            store.transition_write(task["id"], TaskStatus.CANCELLED, attempt=0, cancel=True, finished_at=now,
                                   queue_name=task["queue"], task_name=task["task"],
                                   reason="its workflow was cancelled")
            for task, final in zip(tasks(root), finals, strict=True)
            if final != "1"
        ]  # fmt: skip
        for start in range(0, len(writes), 500):
            run_pipelined(store.client, writes[start : start + 500])
        return not ended

    def _root(self) -> Node:
        store = self.manager.store
        root = WorkflowState(store.client, store.keys, store.ttl_ms).tree(self.id)
        if root is None:
            raise TaskRecordNotFound(f"no workflow with id {self.id} (never sent, or its record expired)")
        return root


@dataclass
class GroupHandle(WorkflowHandle):
    """A sent group (or batch): results in order, how many members are done, aggregated progress."""

    def get_results(self, timeout: float | None = None) -> list[Any]:
        """Wait for every member and return their results, in the order of the group."""
        return list(self.get_result(timeout=timeout))

    def completed(self) -> int:
        """How many members have finished."""
        if self.eager:
            return len(self._eager_result)
        return self._counts()[0]

    def progress(self) -> tuple[int, int]:
        """``(done, total)`` members."""
        if self.eager:
            return len(self._eager_result), len(self._eager_result)
        return self._counts()

    def percent(self) -> float:
        """Progress from 0 to 100: finished members count whole, running ones by the progress they report.

        For a :func:`~aury_tasks.workflows.batch`, members are weighed by the size of their chunk.
        """
        if self.eager:
            return 100.0
        root = self._root()
        members = root["members"]
        if not members:
            return 100.0
        weights = [_weight(member) for member in members]
        store = self.manager.store
        keys = store.keys
        pipe = store.client.pipeline(transaction=False)
        pipe.hmget(keys.group_state(self.id), [f"r:{index}" for index in range(len(members))])
        for member in members:
            pipe.hget(keys.task_record(_first_task(member)["id"]), "progress")
        filled, *reports = pipe.execute()
        done = 0.0
        for weight, slot, report in zip(weights, filled, reports, strict=True):
            if slot is not None:
                done += weight
            elif report:
                done += weight * min(Progress.from_json(report).percent, 100.0) / 100
        return 100.0 * done / sum(weights)

    def _counts(self) -> tuple[int, int]:
        store = self.manager.store
        return WorkflowState(store.client, store.keys, store.ttl_ms).group_counts(self.id)


def _first_task(node: Node) -> Node:
    return next(tasks(node))


def _weight(member: Node) -> float:
    """A batch chunk weighs as many items as it holds; any other member weighs 1."""
    if member["k"] == "task" and member["imm"] and member["args"] and isinstance(member["args"][0], list):
        return float(max(1, len(member["args"][0])))
    return 1.0
