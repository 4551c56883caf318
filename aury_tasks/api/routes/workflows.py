"""``/api/v1/workflows``: send a chain, group or chord of registered tasks; read its tree."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ...tasks.manager import TaskManager
from ...workflows import Canvas, chain, chord, group
from ...workflows.tree import load_tree
from ..auth import authorize
from ..deps import Manager
from ..schemas import SendWorkflow, Step

router = APIRouter(prefix="/api/v1/workflows", tags=["workflows"], dependencies=[Depends(authorize)])


@router.post("", status_code=201, summary="Send a workflow")
def send_workflow(body: SendWorkflow, tm: Manager) -> dict[str, Any]:
    """Send the workflow; answers its id and kind (``chain``, ``group``, ``chord`` or ``task``)."""
    handle = canvas_of(tm, body.workflow).send()
    return {"id": handle.id, "kind": handle.kind}


@router.get("/{workflow_id}", summary="A workflow's tree")
def get_workflow(workflow_id: str, tm: Manager) -> dict[str, Any]:
    """The workflow's status and the tree of its steps, each task with its status."""
    handle = tm.workflow(workflow_id)  # 404 for an unknown id
    return {"kind": handle.kind, **load_tree(tm, workflow_id).to_dict()}


def canvas_of(tm: TaskManager, step: Step) -> Canvas:
    """The canvas a step describes, every task looked up in the registry."""
    if step.task is not None:
        task = tm.get_task(step.task)
        signature = (task.si if step.immutable else task.s)(*step.args, **step.kwargs)
        return signature.set(queue_name=step.queue) if step.queue else signature
    if step.chain is not None:
        return chain(*(canvas_of(tm, member) for member in step.chain))
    if step.group is not None:
        return group(*(canvas_of(tm, member) for member in step.group), member_failure=step.member_failure)
    assert step.chord is not None and step.callback is not None
    header = [canvas_of(tm, member) for member in step.chord]
    return chord(header, canvas_of(tm, step.callback), member_failure=step.member_failure)
