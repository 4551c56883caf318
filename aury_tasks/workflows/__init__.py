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

__all__ = [  # noqa: RUF022 - grouped by topic, as the package's own
    # Building a workflow
    "Canvas",
    "Signature",
    "TaskChain",
    "Chain",
    "Group",
    "Chord",
    "chain",
    "group",
    "chord",
    "batch",
    # Following one
    "WorkflowHandle",
    "GroupHandle",
    "MemberFailure",
    # Reading its tree
    "WorkflowTree",
    "TreeNode",
    "load_tree",
]
