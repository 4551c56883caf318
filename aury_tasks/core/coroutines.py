"""Running a coroutine from synchronous code: an async task called inline, an eager workflow step."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable
from typing import TypeVar

R = TypeVar("R")


def run_coroutine_sync(awaitable: Awaitable[R]) -> R:
    """Run ``awaitable`` to completion from synchronous code, even inside a running event loop."""

    async def _await() -> R:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _await()).result()
