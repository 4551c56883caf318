"""Workflows: signatures, chain, group, chord and batch, with results (Celery's canvas on Dramatiq).

>>> from aury_tasks import chain, chord, group
>>> chain(fetch.s(url), parse.s(), store.s()).send().get_result(timeout=60)
"""

from __future__ import annotations

from .canvas import (
    Canvas,
    Chain,
    Chord,
    Group,
    MemberFailure,
    Signature,
    TaskChain,
    batch,
    chain,
    chord,
    group,
)
from .handle import GroupHandle, WorkflowHandle
from .tree import TreeNode, WorkflowTree, load_tree

__all__ = [
    "Canvas",
    "Chain",
    "Chord",
    "Group",
    "GroupHandle",
    "MemberFailure",
    "Signature",
    "TaskChain",
    "TreeNode",
    "WorkflowHandle",
    "WorkflowTree",
    "batch",
    "chain",
    "chord",
    "group",
    "load_tree",
]
