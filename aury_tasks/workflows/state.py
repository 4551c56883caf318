"""Workflow state in Redis: the workflow's record and each group's results, joined atomically.

A workflow has a record in the ledger like a task (``task:<workflow id>``, not indexed and not
counted in statistics), so ``get_result``, ``aum status`` and cancel work on its id; its field
``workflow`` holds the tree (:mod:`aury_tasks.workflows.spec`). Each group has a hash
(:meth:`~aury_tasks.core.keys.KeySpace.group_state`) with its size, its continuation and one slot per member.

The join is one Lua call: a member's result fills its slot only once (a redelivered member
changes nothing), the member that fills the last slot *fires* the group, and only that member
may fire it again (its worker died before the continuation was sent: the continuation's own
start is idempotent). So a chord's callback is started exactly once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import redis

from ..core.keys import KeySpace
from ..core.status import TaskStatus
from ..ledger.records import TaskRecord
from ..redis.scripts import Write, load_script
from .spec import Frame, Node, kind

#: How a workflow's record names its kind in ``task_name`` (``workflow:chain``, ``workflow:group`` …).
WORKFLOW_PREFIX = "workflow:"

#: A member's result (or error) handed to its group, which it may fire
#: (``aury_tasks/redis/lua/join_group.lua``).
JOIN = load_script("join_group")
#: Take over owed continuations fired before a cutoff (``aury_tasks/redis/lua/claim_owed.lua``).
CLAIM_OWED = load_script("claim_owed")
#: End a workflow record, unless it has ended (``aury_tasks/redis/lua/end_workflow.lua``).
END_WORKFLOW = load_script("end_workflow")


@dataclass(frozen=True)
class StepError:
    """Why a step did not give a result: the error a failed workflow (or chord) ends with."""

    task_id: str
    task_name: str
    #: ``failure``, ``cancelled``, ``expired`` or ``dead``.
    status: str
    type: str
    message: str

    def as_entry(self) -> dict[str, Any]:
        """What ``member_failure="include"`` puts in a failed member's place."""
        return {"error": {"task_id": self.task_id, "type": self.type, "message": self.message,
                          "status": self.status}}  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StepError:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class JoinOutcome:
    """What a member's join did: nothing more to do, the group fired, or the group failed."""

    #: ``wait``, ``stopped``, ``missing``, ``fire`` or ``fail``.
    action: str
    #: The group's continuation, when it fired or failed.
    frames: list[Frame]
    #: The members' results in order, when it fired.
    results: list[Any]
    #: The workflow the group belongs to, when it fired.
    workflow_id: str = ""

    @classmethod
    def from_reply(cls, reply: Any) -> JoinOutcome:
        """Read the reply of the :data:`JOIN` script."""
        action = _text(reply[0])
        if action == "fire":
            results = [json.loads(item) for item in reply[3:]]
            return cls(action, json.loads(reply[1]), results, _text(reply[2]))
        if action == "fail":
            return cls(action, json.loads(reply[1]), [])
        return cls(action, [], [])


class WorkflowState:
    """Reads and writes of workflow records and group states on the ledger's Redis."""

    def __init__(self, client: redis.Redis, keys: KeySpace, ttl_ms: int) -> None:
        self.client = client
        #: The ledger's keys (a workflow's record is a task record; its groups sit beside them).
        self.keys = keys
        self.ttl_ms = ttl_ms

    def create(self, workflow_id: str, root: Node) -> None:
        """Write the workflow's record (``pending``) with its tree."""
        record = self.keys.task_record(workflow_id)
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(record, mapping={
            "status": TaskStatus.PENDING.value, "final": "0", "phase": "1", "attempt": "1",
            "task_name": f"{WORKFLOW_PREFIX}{kind(root)}", "queue_name": "", "enqueued_at": repr(now),
            "workflow": json.dumps(root, separators=(",", ":")),
        })  # fmt: skip
        pipe.pexpire(record, self.ttl_ms)
        pipe.execute()

    def tree(self, workflow_id: str) -> Node | None:
        """The tree of a workflow, or ``None`` when ``workflow_id`` is not a workflow."""
        text = self.client.hget(self.keys.task_record(workflow_id), "workflow")
        return json.loads(text) if text else None

    def is_over(self, workflow_id: str) -> bool:
        """Whether the workflow has ended (succeeded, failed or was cancelled)."""
        return self.client.hget(self.keys.task_record(workflow_id), "final") == "1"

    def succeed(self, workflow_id: str, result: Any) -> bool:
        """End the workflow with ``result`` (a no-op once it has ended)."""
        return self._end(workflow_id, TaskStatus.SUCCESS,
                         result=json.dumps(result, separators=(",", ":"), allow_nan=False))  # fmt: skip

    def fail(self, workflow_id: str, error: StepError) -> bool:
        """End the workflow with the error of the step that stopped it."""
        status = TaskStatus.CANCELLED if error.status == TaskStatus.CANCELLED.value else TaskStatus.FAILURE
        return self._end(workflow_id, status, error_type=error.type, error_message=error.message,
                         reason=f"step {error.task_id} ({error.task_name}) ended {error.status}")  # fmt: skip

    def cancel(self, workflow_id: str) -> bool:
        """End the workflow as ``cancelled`` (its steps are cancelled by the caller)."""
        return self._end(workflow_id, TaskStatus.CANCELLED, reason="cancelled by request")

    def _end(self, workflow_id: str, status: TaskStatus, **fields: str) -> bool:
        pairs: list[Any] = ["finished_at", repr(time.time())]
        for name, value in fields.items():
            pairs += [name, value]
        return bool(END_WORKFLOW(self.client, [self.keys.task_record(workflow_id)], [
            workflow_id, self.keys.task_events(workflow_id), status.value, self.ttl_ms, *pairs,
        ]))  # fmt: skip

    # Groups

    def create_groups(self, workflow_id: str, groups: list[tuple[Node, list[Frame]]]) -> None:
        """Write each group's size, failure policy and continuation (kept if already written)."""
        if not groups:
            return
        pipe = self.client.pipeline(transaction=False)
        for node, frames in groups:
            key = self.keys.group_state(node["id"])
            pipe.hsetnx(key, "wf", workflow_id)
            pipe.hsetnx(key, "total", len(node["members"]))
            pipe.hsetnx(key, "done", 0)
            pipe.hsetnx(key, "policy", node.get("policy", "fail"))
            pipe.hsetnx(key, "frames", json.dumps(frames, separators=(",", ":")))
            pipe.pexpire(key, self.ttl_ms)
        pipe.execute()

    def mark_started(self, group_ids: list[str]) -> None:
        """Note that every member of these groups was sent (a re-run of the step before skips them)."""
        if group_ids:
            pipe = self.client.pipeline(transaction=False)
            for group_id in group_ids:
                pipe.hset(self.keys.group_state(group_id), "started", 1)
            pipe.execute()

    def join(self, group_id: str, index: int, member_id: str, *, value: Any = None,
             error: StepError | None = None) -> JoinOutcome:  # fmt: skip
        """Hand a member's result (or its error) to its group."""
        return JoinOutcome.from_reply(
            join_write(self.keys, group_id, index, member_id, value=value, error=error).run(self.client)
        )

    def settle(self, group_id: str) -> None:
        """The continuation of fired ``group_id`` was started: nothing is owed any more."""
        self.client.zrem(self.keys.workflow_owed(), group_id)

    def claim_owed(self, older_than: float, limit: int = 100) -> list[str]:
        """Take over the groups fired more than ``older_than`` seconds ago and still owed."""
        now = int(time.time() * 1000)
        return [_text(item) for item in CLAIM_OWED(
            self.client, [self.keys.workflow_owed()], [now - int(older_than * 1000), now, limit]
        )]  # fmt: skip

    def fired(self, group_id: str) -> tuple[JoinOutcome, str] | None:
        """How a group fired (its continuation and results) and the member that fired it, or ``None``."""
        total, fired, frames, workflow_id = cast(
            "list[str | None]",  # the ledger's client decodes responses
            self.client.hmget(self.keys.group_state(group_id), ["total", "fired", "frames", "wf"]),
        )
        if not fired or total is None or frames is None:  # (frames are written with total)
            return None
        outcome = JoinOutcome("fire", json.loads(frames), self.group_results(group_id), workflow_id or "")
        return outcome, fired

    def group_counts(self, group_id: str) -> tuple[int, int]:
        """``(done, total)`` of a group."""
        done, total = self.client.hmget(self.keys.group_state(group_id), ["done", "total"])
        return int(done or 0), int(total or 0)

    def group_results(self, group_id: str) -> list[Any]:
        """The results of the members that have finished, ``None`` for the others, in order."""
        total = int(self.client.hget(self.keys.group_state(group_id), "total") or 0)
        if not total:
            return []
        raw = self.client.hmget(self.keys.group_state(group_id), [f"r:{i}" for i in range(total)])
        return [json.loads(item) if item is not None else None for item in raw]

    def entry_done(self, node: Node) -> bool:
        """Whether ``node`` was started already (its first task has a record, or its group was sent)."""
        while node["k"] == "chain":
            node = node["steps"][0]
        if node["k"] == "task":
            return bool(self.client.exists(self.keys.task_record(node["id"])))
        return self.client.hget(self.keys.group_state(node["id"]), "started") is not None


def join_write(
    keys: KeySpace,
    group_id: str,
    index: int,
    member_id: str,
    *,
    value: Any = None,
    error: StepError | None = None,
) -> Write:
    """The :data:`JOIN` call handing a member's result (or error) to its group, to send or to ride."""
    text = json.dumps(value if error is None else error.as_entry(), separators=(",", ":"))
    return Write(JOIN, [keys.group_state(group_id), keys.workflow_owed()], [
        index, text, member_id, "ok" if error is None else "error", error.to_json() if error else "",
        int(time.time() * 1000), group_id,
    ])  # fmt: skip


def is_workflow(record: TaskRecord) -> bool:
    """Whether ``record`` is a workflow's (not a task's)."""
    return record.task_name.startswith(WORKFLOW_PREFIX)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
