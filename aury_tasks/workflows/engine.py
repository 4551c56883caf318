"""How a workflow moves: start a node, and carry a step's result (or its error) to what comes next.

Every task of a workflow is an ordinary message whose options carry its continuation (see
:mod:`aury_tasks.workflows.spec`); the worker's :class:`~aury_tasks.workflows.middleware.WorkflowSteps`
middleware calls :func:`advance` when the task succeeds and :func:`fail` when it ends otherwise,
before the message is acknowledged. A worker killed in between leaves the message to be
redelivered, and everything here is safe to do twice: a step already started is not started
again (its pre-assigned task id has a record), a group slot is filled once, a workflow record
ends once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dramatiq

from ..core.encoding import NOT_JSON, StrictJSONEncoder, unserializable_argument
from ..core.errors import LedgerUnavailable, PayloadTooLarge, SerializationError
from ..core.run_mode import RunMode
from ..core.status import TaskStatus
from ..redis.scripts import run_pipelined
from .canvas import Canvas, Group
from .eager import run_eagerly
from .handle import GroupHandle, WorkflowHandle
from .spec import Frame, Node, build, kind, rest_of_chain, tasks
from .state import JoinOutcome, StepError, WorkflowState

if TYPE_CHECKING:
    from ..tasks.manager import TaskManager

#: The message option holding a step's workflow id and continuation.
WORKFLOW_OPTION = "aury_wf"


class _Nothing:
    """No previous result: the first steps of a workflow get only their own arguments."""


NOTHING: Any = _Nothing()


@dataclass
class Launch:
    """What starting a node needs: groups to create, messages to send, results to carry on at once."""

    workflow_id: str
    groups: list[tuple[Node, list[Frame]]] = field(default_factory=list)
    messages: list[dramatiq.Message[Any]] = field(default_factory=list)
    #: Empty groups: their (empty) result goes straight on.
    immediate: list[list[Frame]] = field(default_factory=list)

    def start(self, node: Node, previous: Any, frames: list[Frame]) -> None:
        """Plan ``node`` to run with ``previous`` (or :data:`NOTHING`), then ``frames``."""
        if node["k"] == "task":
            self.messages.append(self._message(node, previous, frames))
        elif node["k"] == "chain":
            steps = node["steps"]
            later = [{"then": rest_of_chain(steps[1:])}] if len(steps) > 1 else []
            self.start(steps[0], previous, later + frames)
        else:
            self.groups.append((node, frames))
            if not node["members"]:
                self.immediate.append(frames)
            for index, member in enumerate(node["members"]):
                self.start(member, previous, [{"join": node["id"], "i": index}])

    def _message(self, node: Node, previous: Any, frames: list[Frame]) -> dramatiq.Message[Any]:
        args = list(node["args"])
        if previous is not NOTHING and not node["imm"]:
            args.append(previous)
        options: dict[str, Any] = {WORKFLOW_OPTION: {"wf": self.workflow_id, "next": frames}}
        if node.get("prio"):
            options["priority"] = options["broker_priority"] = node["prio"]
        return dramatiq.Message(queue_name=node["queue"], actor_name=node["task"], args=tuple(args),
                                kwargs=node["kwargs"], options=options, message_id=node["id"])  # fmt: skip


def send_workflow(canvas: Canvas) -> WorkflowHandle:
    """Start ``canvas`` as a workflow (what ``.send()`` does); in eager mode run it inline."""
    manager = canvas.manager()
    root = build(canvas)
    handle_type = GroupHandle if isinstance(canvas, Group) else WorkflowHandle
    if manager.run_mode is RunMode.EAGER:
        return handle_type(id=root["id"], kind=kind(root), _manager=manager,
                           _eager_result=run_eagerly(manager, root))  # fmt: skip
    _check_json(root)
    state = workflow_state(manager)
    state.create(root["id"], root)
    launch = Launch(root["id"])
    launch.start(root, NOTHING, [])
    execute(manager, launch)
    return handle_type(id=root["id"], kind=kind(root), _manager=manager)


def execute(manager: TaskManager, launch: Launch) -> None:
    """Create the launch's groups, send its messages in batched round trips, carry on empty groups."""
    state = workflow_state(manager)
    state.create_groups(launch.workflow_id, launch.groups)
    manager.send_messages(launch.messages)
    state.mark_started([node["id"] for node, _ in launch.groups])
    for frames in launch.immediate:
        advance(manager, launch.workflow_id, [], frames, member_id=launch.workflow_id)


def advance(
    manager: TaskManager, workflow_id: str, result: Any, frames: list[Frame], *, member_id: str
) -> None:
    """Carry ``result`` (of step ``member_id``) through ``frames``: start what comes next."""
    state = workflow_state(manager)
    if not frames:
        state.succeed(workflow_id, result)
        return
    frame, rest = frames[0], frames[1:]
    if "join" in frame:
        outcome = state.join(frame["join"], frame["i"], member_id, value=result)
        if outcome.action == "fire":  # else others still run, or the group failed or fired before
            carry_fired(manager, frame["join"], outcome, member_id=member_id)
        return
    node = frame["then"]
    if state.entry_done(node):
        return  # this step ran before (a redelivery): what follows was started then
    if state.is_over(workflow_id):  # failed or cancelled meanwhile: this never runs
        ended = StepError(member_id, "", TaskStatus.CANCELLED.value, "Cancelled", "its workflow has ended")
        _not_started(manager, workflow_id, node, "its workflow has ended", ended, rest)
        return
    launch = Launch(workflow_id)
    launch.start(node, result, rest)
    try:
        execute(manager, launch)
    except (PayloadTooLarge, SerializationError) as exc:  # refused before anything was sent
        refused = StepError(member_id, "", TaskStatus.FAILURE.value, type(exc).__name__, str(exc))
        _not_started(manager, workflow_id, node, f"it could not be sent: {exc}", refused, rest)


def _not_started(
    manager: TaskManager, workflow_id: str, node: Node, why: str, error: StepError, frames: list[Frame]
) -> None:
    """``node`` will not run (``why``): cancel its tasks and fail what it is part of with ``error``."""
    _cancel_never_run(manager, node, why)
    fail(manager, workflow_id, error, frames)


def carry_fired(manager: TaskManager, group_id: str, outcome: JoinOutcome, *, member_id: str) -> None:
    """Start what follows a group that fired (its list of results), then settle what it owed."""
    advance(manager, outcome.workflow_id, outcome.results, outcome.frames, member_id=member_id)
    workflow_state(manager).settle(group_id)


def fail(manager: TaskManager, workflow_id: str, error: StepError, frames: list[Frame]) -> None:
    """A step ended without a result: cancel what would have followed and fail upwards."""
    state = workflow_state(manager)
    while True:
        if not frames:
            state.fail(workflow_id, error)
            return
        frame, frames = frames[0], frames[1:]
        if "then" in frame:
            _cancel_never_run(manager, frame["then"], f"step {error.task_id} ended {error.status}")
            continue
        outcome = state.join(frame["join"], frame["i"], error.task_id, error=error)
        if outcome.action == "fire":  # member_failure="include": the group goes on
            carry_fired(manager, frame["join"], outcome, member_id=error.task_id)
            return
        if outcome.action != "fail":
            return  # the group failed before, or still waits for others ("include")
        frames = outcome.frames


def _cancel_never_run(manager: TaskManager, node: Node, why: str) -> None:
    """Mark every task of ``node`` ``cancelled`` (a task that has a record already keeps it)."""
    store = manager.store
    now = time.time()
    writes = [
        store.transition_write(task["id"], TaskStatus.CANCELLED, attempt=0, queue_name=task["queue"],
                               task_name=task["task"], finished_at=now, reason=f"not run: {why}")
        for task in tasks(node)
    ]  # fmt: skip
    for start in range(0, len(writes), 500):
        run_pipelined(store.client, writes[start : start + 500])


def workflow_state(manager: TaskManager) -> WorkflowState:
    """The workflow state on the manager's ledger.

    Raises:
      LedgerUnavailable: when task state is not kept (workflows need it).
    """
    try:
        store = manager.store
    except LedgerUnavailable:
        raise LedgerUnavailable("workflows need task state: keep it in Redis (TASK_TRACK_STATE, "
                                "a Redis broker or TASK_RESULT_BACKEND_URL)") from None  # fmt: skip
    return WorkflowState(store.client, store.keys, store.ttl_ms)


def _check_json(root: Node) -> None:
    encoder = StrictJSONEncoder()
    try:
        encoder.encode(root)
    except NOT_JSON:
        for task in tasks(root):
            error = unserializable_argument(task["task"], task["args"], task["kwargs"])
            if error is not None:
                raise error from None
        raise SerializationError("the workflow's arguments are not JSON-serializable") from None


def dumps(value: Any) -> str:
    """Strict JSON of a step's result (raises for ``NaN``, sets …)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
